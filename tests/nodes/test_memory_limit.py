"""A run that meets a memory limit ends with one clear out-of-memory message and exit code 5, in bounded time: no
hang, no allocator text, no traceback (a 1.0 GB address-space limit made `nodegraph run` hang or print raw
allocator errors)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from nodegraph.core.workflow_io import load, save

ROOT = Path(__file__).resolve().parents[2]
TXT2IMG = ROOT / "resources" / "workflows" / "txt2img.json"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="address-space limits (RLIMIT_AS) are Linux's")
def test_a_run_under_a_1_gb_address_space_limit_fails_clearly_with_exit_5(models, tmp_path):
    import resource

    workflow = load(TXT2IMG)
    workflow.set_input("ckpt", "ckpt_name", models.name("sd1"))
    workflow.set_input("latent", "width", 64)
    workflow.set_input("latent", "height", 64)
    workflow.set_input("sample", "steps", 2)
    path = tmp_path / "wf.json"
    save(workflow, path)

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (1_000_000_000, 1_000_000_000))

    env = {**os.environ, "PYTHONPATH": str(ROOT), "NODEGRAPH_HOME": str(tmp_path / "home")}
    done = subprocess.run([sys.executable, "-m", "nodegraph", "run", str(path), "--models-dir", str(models.root),
                           "--output-dir", str(tmp_path / "out"), "--device", "cpu"], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=240, preexec_fn=limit)
    assert done.returncode == 5, done.stderr[-2000:]
    assert "out of memory" in done.stderr and "Traceback" not in done.stderr and "internal error" not in done.stderr
    assert "mmap" not in done.stderr and "alloc" not in done.stderr.lower()
