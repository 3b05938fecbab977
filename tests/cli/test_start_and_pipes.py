"""The command's edges: mistyped commands, starting the app without a display, Ctrl+C in the app, closed pipes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NO_DISPLAY = 4
BROKEN_PIPE = 141


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    return {**env, "PYTHONPATH": str(ROOT), "NODEGRAPH_HOME": str(tmp_path / "home"), "HOME": str(tmp_path), **extra}


def _main_reporting_qt(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    """Run main(args) in a fresh interpreter; its stdout ends with whether PySide6 was imported."""
    code = ("import sys; from nodegraph.cli import main; rc = main(sys.argv[1:]); "
            "print('qt-imported' if 'PySide6' in sys.modules else 'no-qt'); sys.exit(rc)")
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=tmp_path,
                          env=_env(tmp_path, QT_QPA_PLATFORM="offscreen"), timeout=60)


@pytest.mark.parametrize(("args", "suggestion"), [(["rnu", "wf.json"], "'run'"), (["modles"], "'models'"),
                                                  (["--debug", "nodse"], "'nodes'")])
def test_mistyped_command_is_an_unknown_command_with_suggestions(tmp_path, args, suggestion):
    (tmp_path / "wf.json").write_text("{}")
    result = _main_reporting_qt(tmp_path, *args)
    assert result.returncode == 2, result.stderr
    assert "unknown command" in result.stderr and f"did you mean {suggestion}" in result.stderr
    assert result.stdout.strip() == "no-qt"
    assert "Traceback" not in result.stderr


def test_missing_file_is_not_opened(tmp_path):
    result = _main_reporting_qt(tmp_path, "missing.json")
    assert result.returncode == 2
    assert "neither a command nor an existing file: 'missing.json'" in result.stderr
    assert result.stdout.strip() == "no-qt"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the display check is for Linux")
@pytest.mark.parametrize("args", [[], ["gui"], ["wf.json"]])
def test_no_display_is_one_clear_line(tmp_path, args):
    (tmp_path / "wf.json").write_text("{}")
    result = subprocess.run([sys.executable, "-m", "nodegraph", *args], capture_output=True, text=True, cwd=tmp_path,
                            env=_env(tmp_path), timeout=60)
    assert result.returncode == NO_DISPLAY, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("nodegraph: no display:")
    assert "nodegraph run" in lines[0] and "QT_QPA_PLATFORM=offscreen" in lines[0]


@pytest.mark.parametrize("args", [["nodes"], ["nodes", "--json"], ["models"]])
def test_closed_stdout_ends_quietly(tmp_path, args):
    process = subprocess.Popen([sys.executable, "-m", "nodegraph", *args], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, cwd=tmp_path, env=_env(tmp_path))
    process.stdout.close()  # the reader is gone before the command writes (`| head` after its first line)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode in (0, BROKEN_PIPE), stderr
    assert "internal error" not in stderr and "Traceback" not in stderr and "Exception ignored" not in stderr
    assert "BrokenPipe" not in stderr


def _start_app(tmp_path: Path) -> subprocess.Popen:
    pytest.importorskip("PySide6")
    env = _env(tmp_path, QT_QPA_PLATFORM="offscreen", NODEGRAPH_REPORT_FIRST_PAINT="1")
    return subprocess.Popen([sys.executable, "-m", "nodegraph"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=tmp_path, env=env)


def _finish(process: subprocess.Popen) -> tuple[int, str]:
    try:
        _, stderr = process.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        _, stderr = process.communicate()
        pytest.fail(f"the app kept running after Ctrl+C: {stderr}")
    return process.returncode, stderr


def test_ctrl_c_closes_the_shown_window(tmp_path):
    process = _start_app(tmp_path)
    deadline = time.monotonic() + 60
    seen = ""
    while "first paint" not in seen and time.monotonic() < deadline:
        seen += process.stderr.readline()
    process.send_signal(signal.SIGINT)
    code, stderr = _finish(process)
    assert code in (0, 130), stderr
    assert "Traceback" not in seen + stderr and "KeyboardInterrupt" not in seen + stderr


@pytest.mark.parametrize("delay", [0.2, 0.4, 0.6])
def test_ctrl_c_while_starting_quits_without_traceback(tmp_path, delay):
    process = _start_app(tmp_path)
    time.sleep(delay)  # in the middle of the imports and Qt's start-up
    process.send_signal(signal.SIGINT)
    code, stderr = _finish(process)
    assert code in (0, 130), stderr
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr


def test_deferred_interrupt_is_held_not_raised():
    from nodegraph.gui import _interrupted, defer_interrupts, start_interrupted

    previous = signal.getsignal(signal.SIGINT)
    try:
        defer_interrupts()
        signal.raise_signal(signal.SIGINT)  # no KeyboardInterrupt here
        assert start_interrupted()
    finally:
        _interrupted.clear()
        signal.signal(signal.SIGINT, previous)
