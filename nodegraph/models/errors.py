"""Errors about model files. Each names the file and is shown to the user as one line, with no traceback."""

from __future__ import annotations

from pathlib import Path

from nodegraph.core.errors import NodeError


class ModelError(NodeError):
    """A model file cannot be used; the message names the file and says why."""

    def __init__(self, path: str | Path | None, message: str):
        self.path = Path(path) if path is not None else None
        super().__init__(f"{self.path.name if self.path else 'model'}: {message}")


class UnsafeModelError(ModelError):
    """A pickled file references code outside the allowlist; it was refused without running anything."""


class CorruptModelError(ModelError):
    """A file is truncated, has an impossible header, or is not a model file at all."""


class IncompleteModelError(ModelError):
    """A model lacks tensors it needs (e.g. a checkpoint with part of its VAE missing)."""


class IncompatibleModelError(ModelError):
    """An add-on (LoRA, embedding, VAE, hypernetwork) does not fit the model it is applied to."""


class ModelNotFoundError(ModelError):
    """A model name that no model folder holds."""
