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


def test_a_gpu_out_of_memory_inside_the_sampler_frees_the_models_and_the_next_run_works(models, node_registry,
                                                                                        tmp_path):
    """CUDA's OutOfMemoryError raised by the UNet mid-sampling (faked: this machine has no GPU) fails the sampler
    node with the out-of-memory message, the model manager drops the checkpoint, and the same graph runs next time."""
    import torch

    from nodegraph.engine import Executor, RunSettings
    from nodegraph.models.discovery import ModelFolders
    from nodegraph.models.manager import ModelManager

    workflow = load(TXT2IMG)
    workflow.set_input("ckpt", "ckpt_name", models.name("sd1"))
    for name, value in (("width", 64), ("height", 64)):
        workflow.set_input("latent", name, value)
    workflow.set_input("sample", "steps", 2)
    manager = ModelManager(ModelFolders([models.root]), device="cpu")
    settings = RunSettings(output_dir=tmp_path / "out", device="cpu", services={"models": manager})
    checkpoint = manager.checkpoint(manager.resolve("checkpoints", models.name("sd1")))

    def out_of_memory(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 MiB (GPU 0; 7.79 GiB total)")

    checkpoint.unet.forward = out_of_memory
    executor = Executor(node_registry)
    first = executor.run(workflow, settings=settings)
    assert (first.status, first.failed_node, first.out_of_memory) == ("failed", "sample", True)
    assert first.message.startswith("out of memory") and "GPU" in first.message and first.details == ""
    reloaded = manager.checkpoint(manager.resolve("checkpoints", models.name("sd1")))
    assert reloaded is not checkpoint  # freed: the next use loads it again, without the failing forward
    second = executor.run(workflow, settings=settings)
    assert second.status == "finished", second.message
    assert len(list((tmp_path / "out").glob("*.png"))) == 1
