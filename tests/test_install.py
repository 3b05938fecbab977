"""A non-editable install into a fresh virtual environment finds the built-in nodes and the resources, and puts
no generic top-level package (such as `nodes`) into site-packages."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import platformdirs

ROOT = Path(__file__).resolve().parents[1]


def _run(*args: str, cwd: Path, env: dict | None = None) -> str:
    done = subprocess.run(list(args), cwd=cwd, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, f"{args} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def test_wheel_installs_into_a_fresh_venv_and_finds_nodes_and_resources(tmp_path):
    # Build the wheel from a copy of the tree, so the checkout is not touched (no build/ or egg-info left behind).
    source = tmp_path / "src"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(".venv", ".git", "build", "dist", "*.egg-info",
                                                                "__pycache__", "test-artifacts"))
    _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w",
         str(tmp_path / "dist"), str(source), cwd=tmp_path)
    wheel = next((tmp_path / "dist").glob("nodegraph-*.whl"))

    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    python = env_dir / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    _run(sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index", str(wheel),
         cwd=tmp_path)
    # The only runtime dependency comes from the test environment through a .pth file, so the test needs no index.
    site = Path(_run(str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])",
                     cwd=tmp_path).strip())
    (site / "deps.pth").write_text(str(Path(platformdirs.__file__).parent.parent) + "\n")

    installed = sorted(p.name for p in site.iterdir() if not p.name.endswith((".dist-info", ".pth")))
    assert "nodes" not in installed and "resources" not in installed
    assert "nodegraph" in installed
    source_packages = {p.parent.relative_to(ROOT).as_posix() for p in (ROOT / "nodegraph").rglob("__init__.py")}
    missing = [p for p in source_packages if not (site / p / "__init__.py").is_file()]
    assert missing == [], f"packages left out of the wheel (add them to pyproject.toml): {missing}"

    work = tmp_path / "elsewhere"  # not the checkout: the source tree must not be importable
    work.mkdir()
    env = {**os.environ, "NODEGRAPH_HOME": str(tmp_path / "home"), "PYTHONPATH": ""}
    probe = ("import json, nodegraph, nodegraph.paths as p; print(json.dumps([nodegraph.__file__, "
             "str(p.builtin_nodes_dir()), str(p.resources_dir()), (p.resources_dir() / 'README.md').is_file()]))")
    module_file, nodes_dir, resources_dir, has_readme = json.loads(_run(str(python), "-c", probe, cwd=work, env=env))
    assert Path(module_file).is_relative_to(site)
    assert Path(nodes_dir) == site / "nodegraph" / "nodes"
    assert Path(resources_dir) == site / "nodegraph" / "resources" and has_readme

    script = env_dir / ("Scripts/nodegraph.exe" if os.name == "nt" else "bin/nodegraph")
    listed = json.loads(_run(str(script), "nodes", "--json", cwd=work, env=env))
    builtin = {node["type"]: node for node in listed}
    assert {"PrimitiveInt", "PrimitiveFloat", "PrimitiveString", "PrimitiveBoolean"} <= set(builtin)
    assert builtin["PrimitiveInt"]["pack"] == "builtin"
