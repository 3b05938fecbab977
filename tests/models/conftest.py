"""Tiny model files in the real on-disk formats, written once per test session on first use; the add-on tests' tiny
checkpoints, LoRA files and fixed model inputs; a one-thread torch setting for modules that run many small models."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from nodegraph.models import synthetic
from nodegraph.models.synthetic import write_fixture_set


class ModelFiles:
    """Writes each fixture file the first time a test asks for it (the SDXL ones are a few hundred MB)."""

    def __init__(self, folder: Path):
        self.folder = folder
        self._paths: dict[str, Path] = {}

    def __getitem__(self, key: str) -> Path:
        if key not in self._paths:
            self._paths.update(write_fixture_set(self.folder, only=[key]))
        return self._paths[key]


@pytest.fixture(scope="session")
def model_files(tmp_path_factory) -> ModelFiles:
    """The tiny fixture set (ComfyUI layout: checkpoints/, loras/, vae/, embeddings/, hypernetworks/)."""
    return ModelFiles(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def one_thread():
    """The tiny models gain nothing from intra-op threads, and on a busy 2-core machine OpenMP's spinning threads
    make each forward pass up to 100x slower. Restored for the other test modules."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# --- the add-on tests (test_lora.py, test_embeddings.py, test_hypernetworks.py) ------------------------------------
@pytest.fixture(scope="session")
def folder(tmp_path_factory):
    """The add-on tests' folder: their checkpoints, LoRAs, embeddings and hypernetworks, and files they write."""
    return tmp_path_factory.mktemp("addons")


@pytest.fixture(scope="session")
def sd1_path(folder, tiny_checkpoints):
    """A tiny SD 1.x checkpoint (float32, seed 0)."""
    return tiny_checkpoints.write(folder / "tiny-sd1.safetensors", "sd1", seed=0)


@pytest.fixture(scope="session")
def sdxl_path(folder, tiny_checkpoints):
    """A tiny SDXL base checkpoint (float32, seed 0)."""
    return tiny_checkpoints.write(folder / "tiny-sdxl.safetensors", "sdxl-base", seed=0)


@pytest.fixture(scope="session")
def loras(folder):
    """LoRA-type files by (family, format, seed), written on first use."""

    class Files(dict):
        def __missing__(self, key):
            family, fmt, seed = key
            self[key] = synthetic.write_lora(folder / f"lora-{family}-{fmt}-{seed}.safetensors", family, fmt,
                                             seed=seed)
            return self[key]

    return Files()


@pytest.fixture(scope="session")
def inputs():
    """Fixed UNet inputs: SD 1.x latents, timestep and context, and SDXL's context and added conditions."""
    gen = torch.Generator().manual_seed(1234)
    return {"latents": torch.randn(1, 4, 8, 8, generator=gen), "timestep": torch.tensor(500),
            "context": torch.randn(1, 77, 768, generator=gen), "context_xl": torch.randn(1, 77, 2048, generator=gen),
            "text_embeds": torch.randn(1, 1280, generator=gen),
            "time_ids": torch.tensor([[64.0, 64.0, 0.0, 0.0, 64.0, 64.0]])}
