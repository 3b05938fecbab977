"""Benchmark: the installed app (PyInstaller bundle from a .deb or .tar.gz) against the same version run from a
virtual environment, side by side, interleaved, each start a fresh process with nothing from this shell's
environment (as packaging/smoke.sh runs it).

    python bench/installed_startup.py --installed /opt/nodegraph/nodegraph --venv .venv/bin/nodegraph [--repeat 5]

Three measurements: `nodegraph --version` (the process start itself), the desktop app's first window paint
(offscreen Qt; the app reports the moment through NODEGRAPH_REPORT_FIRST_PAINT, the clock starts just before the
launch), and `nodegraph demo` (torch import, the tiny checkpoint loaded, 20 sampler steps, a PNG saved). Each
program first runs the demo once untimed (it writes its demo checkpoint and fills the page cache), then the two
alternate in ABBA order. Prints a markdown table: min / median / max per program and the installed/venv ratio of
each side-by-side pair.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import tempfile
import time
from pathlib import Path


def clean_env(home: Path, **extra: str) -> dict[str, str]:
    """What the app sees: a home of its own and the system PATH, nothing else."""
    return {"HOME": str(home), "NODEGRAPH_HOME": str(home / "nodegraph"), "PATH": "/usr/bin:/bin", **extra}


def run_timed(command: list[str], env: dict[str, str], cwd: Path) -> float:
    began = time.perf_counter()
    subprocess.run(command, env=env, cwd=cwd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - began


def first_paint(program: str, home: Path, cwd: Path) -> float:
    env = clean_env(home, QT_QPA_PLATFORM="offscreen", NODEGRAPH_REPORT_FIRST_PAINT="1")
    launched = time.time()
    process = subprocess.Popen([program], env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               text=True)
    painted = None
    for line in process.stderr:
        if line.startswith("nodegraph: first paint at "):
            painted = float(line.rsplit(" ", 1)[1])
            break
    process.send_signal(signal.SIGTERM)
    process.communicate(timeout=60)
    if painted is None or process.returncode != 0:
        raise SystemExit(f"{program}: no first paint (exit {process.returncode})")
    return painted - launched


def measure(kind: str, program: str, home: Path, cwd: Path) -> float:
    if kind == "version":
        return run_timed([program, "--version"], clean_env(home), cwd)
    if kind == "paint":
        return first_paint(program, home, cwd)
    return run_timed([program, "demo", "--quiet"], clean_env(home), cwd)


def spread(values: list[float]) -> str:
    return f"{min(values):.3f} / {statistics.median(values):.3f} / {max(values):.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--installed", required=True, help="the installed program (/opt/nodegraph/nodegraph)")
    parser.add_argument("--venv", required=True, help="the venv's console script (.venv/bin/nodegraph)")
    parser.add_argument("--repeat", type=int, default=5, help="pairs per measurement (default 5)")
    args = parser.parse_args()
    programs = {"venv": str(Path(args.venv).resolve()), "installed": str(Path(args.installed).resolve())}
    scratch = Path(tempfile.mkdtemp(prefix="nodegraph-bench-"))
    cwd = scratch / "cwd"
    cwd.mkdir()
    homes = {name: scratch / name for name in programs}
    for name, program in programs.items():  # untimed: demo checkpoint written, libraries in the page cache
        measure("demo", program, homes[name], cwd)
    rows = [("`nodegraph --version`", "version"), ("desktop app: first window paint", "paint"),
            ("`nodegraph demo` (tiny model, 20 steps)", "demo")]
    print(f"| measurement (s, {args.repeat} pairs) | venv min / median / max | installed min / median / max "
          "| installed ÷ venv, per pair: min / median / max |")
    print("|---|---|---|---|")
    for label, kind in rows:
        times: dict[str, list[float]] = {name: [] for name in programs}
        for index in range(args.repeat):
            order = list(programs) if index % 2 == 0 else list(reversed(programs))  # ABBA
            for name in order:
                times[name].append(measure(kind, programs[name], homes[name], cwd))
        ratios = [b / a for a, b in zip(times["venv"], times["installed"], strict=True)]
        print(f"| {label} | {spread(times['venv'])} | {spread(times['installed'])} | "
              f"{min(ratios):.2f} / **{statistics.median(ratios):.2f}** / {max(ratios):.2f} |", flush=True)
    print(f"\n<!-- os: {os.uname().sysname} {os.uname().release}, scratch {scratch} -->")


if __name__ == "__main__":
    main()
