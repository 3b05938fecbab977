"""Tiny model files in the real on-disk formats, written once per test session on first use."""

from __future__ import annotations

from pathlib import Path

import pytest

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
