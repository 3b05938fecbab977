"""The architecture's boundaries: the core, the engine and interop never import torch, diffusers, transformers or Qt."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN = ("torch", "diffusers", "transformers", "peft", "PySide6", "NodeGraphQt", "Qt")


def test_importing_core_and_engine_loads_no_heavy_or_gui_module():
    code = (
        "import json, sys\n"
        "import nodegraph.core, nodegraph.engine, nodegraph.packs\n"
        "nodegraph.packs.create_registry(user_packs=False)\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    loaded = json.loads(out.stdout)
    assert "nodegraph.core" in loaded and "nodegraph.engine" in loaded
    offenders = [name for name in loaded if name.split(".")[0] in FORBIDDEN]
    assert offenders == []


def test_core_and_engine_sources_have_no_forbidden_imports():
    offenders = []
    for package in ("core", "engine", "interop"):
        for path in sorted((ROOT / "nodegraph" / package).rglob("*.py")):
            for item in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                names = []
                if isinstance(item, ast.Import):
                    names = [alias.name for alias in item.names]
                elif isinstance(item, ast.ImportFrom) and item.module and item.level == 0:
                    names = [item.module]
                offenders += [f"{path.relative_to(ROOT)}: {n}" for n in names if n.split(".")[0] in FORBIDDEN]
    assert offenders == []
