"""Fixtures for the pipeline tests: a models root laid out as ComfyUI's (checkpoints/, loras/, vae/, embeddings/)
holding tiny float32 files in the real formats, each written once per session on first use; the node registry and
a model manager shared by the tests; components loaded separately for diffusers' reference pipelines."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from nodegraph.models.offline import ensure_offline

ensure_offline()

from nodegraph.models.discovery import ModelFolders  # noqa: E402
from nodegraph.models.loader import LoadedCheckpoint, load_checkpoint  # noqa: E402
from nodegraph.models.manager import ModelManager  # noqa: E402
from nodegraph.models.synthetic import write_embedding, write_lora, write_vae  # noqa: E402
from nodegraph.packs import create_registry  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]

#: key → (file name in checkpoints/, family, seed). The SD 2.x file says "768-v" in its name: the v-prediction rule.
CHECKPOINTS = {
    "sd1": ("tiny-sd1.safetensors", "sd1", 0),
    "sd2-v": ("tiny-sd2-768-v.safetensors", "sd2-v", 1),
    "sdxl": ("tiny-sdxl-base.safetensors", "sdxl-base", 0),
}

#: key → (path under the models root, writer). Every file draws from its own seed.
ADDONS: dict[str, tuple[str, Callable[[Path], Path]]] = {
    "lora": ("loras/tiny-lora-sd1.safetensors", lambda p: write_lora(p, family="sd1", fmt="kohya", seed=10)),
    "lora-b": ("loras/tiny-lora-sd1-b.safetensors", lambda p: write_lora(p, family="sd1", fmt="kohya", seed=16)),
    "lora-sdxl": ("loras/tiny-lora-sdxl.safetensors", lambda p: write_lora(p, family="sdxl-base", fmt="kohya",
                                                                           seed=11)),
    "embedding": ("embeddings/tinyemb.safetensors",
                  lambda p: write_embedding(p, "safetensors", family="sd1", vectors=2, seed=21)),
    "embedding-b": ("embeddings/otheremb.safetensors",
                    lambda p: write_embedding(p, "safetensors", family="sd1", vectors=2, seed=27)),
    "vae": ("vae/tiny-vae.safetensors", lambda p: write_vae(p, "sd1", seed=1)),
}


class ModelsRoot:
    """The models root; ``files["sd1"]`` writes the file on first use and returns its path."""

    def __init__(self, root: Path, checkpoints):
        self.root = root
        self.checkpoints = checkpoints
        for kind in ("checkpoints", "loras", "vae", "embeddings"):
            (root / kind).mkdir(parents=True, exist_ok=True)
        self._paths: dict[str, Path] = {}

    def __getitem__(self, key: str) -> Path:
        if key not in self._paths:
            if key in CHECKPOINTS:
                name, family, seed = CHECKPOINTS[key]
                path = self.checkpoints.write(self.root / "checkpoints" / name, family, seed)
            else:
                relative, write = ADDONS[key]
                path = write(self.root / relative)
            self._paths[key] = path
        return self._paths[key]

    def name(self, key: str) -> str:
        """The model name a node input takes (the file name inside its kind's folder), writing the file if needed."""
        return self[key].name


@pytest.fixture(scope="session")
def models(tmp_path_factory, tiny_checkpoints) -> ModelsRoot:
    """The tiny model files, by key (see CHECKPOINTS and ADDONS); the float32 checkpoints are the session's shared
    ones (see ``tiny_checkpoints``), the same bytes ``write_checkpoint`` writes."""
    return ModelsRoot(tmp_path_factory.mktemp("models"), tiny_checkpoints)


@pytest.fixture(scope="session")
def node_registry():
    """The built-in nodes only, checked to load cleanly."""
    registry = create_registry(user_packs=False)
    assert not registry.problems, registry.problems
    return registry


@pytest.fixture(scope="session")
def manager(models) -> ModelManager:
    """One model manager (and model cache) for every graph run of the session, on the CPU (float32)."""
    return ModelManager(ModelFolders([models.root]), device="cpu")


@pytest.fixture(scope="session")
def components(models) -> Callable[..., LoadedCheckpoint]:
    """Checkpoint components loaded apart from the manager, for diffusers' pipelines. ``components("sd1")`` is
    shared (do not patch it); ``components("sd1", fresh=True)`` is a new copy a test may patch (LoRA, embedding)."""
    shared: dict[str, LoadedCheckpoint] = {}

    def get(key: str, fresh: bool = False) -> LoadedCheckpoint:
        if fresh:
            return load_checkpoint(models[key])
        if key not in shared:
            shared[key] = load_checkpoint(models[key])
        return shared[key]

    return get


def nodegraph_cli(*args: str, home: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run ``python -m nodegraph ARGS`` on the source tree with its own data folder."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NODEGRAPH_HOME": str(home)}
    return subprocess.run([sys.executable, "-m", "nodegraph", *args], capture_output=True, text=True, env=env,
                          timeout=timeout, cwd=ROOT)


@pytest.fixture(scope="session")
def cli() -> Callable[..., subprocess.CompletedProcess]:
    """:func:`nodegraph_cli`, as a fixture (test modules cannot import conftest under --import-mode=importlib)."""
    return nodegraph_cli
