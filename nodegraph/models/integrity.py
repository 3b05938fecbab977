"""Checks on the numbers a model file brings in: floating-point tensors only, and no NaN or infinity.

A NaN in one weight spreads to the whole image, which then decodes to black and would be saved as a success; a
bool or integer tensor where weights belong is a damaged or foreign file. Both are refused where the file is read,
naming it, and the sampler checks its latents after each step (weights of a big checkpoint are not all scanned).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from nodegraph.models.errors import CorruptModelError
from nodegraph.models.offline import import_torch

#: How to fix a sampler that produced NaN/inf, for the user.
NAN_HINT = ("the model, a LoRA or an embedding holds NaN/inf weights, or half precision overflowed: try "
            "precision fp32 in the settings, another sampler, or leave out the add-ons one by one")


def require_finite_floats(path: str | Path, tensors: Mapping[str, Any], what: str = "weights") -> None:
    """Refuse `tensors` (an add-on file's, a few MB) holding a non-float tensor or a NaN/infinite value."""
    torch = import_torch()
    for name, tensor in tensors.items():
        if not isinstance(tensor, torch.Tensor) or tensor.dim() == 0 and name.endswith(("alpha", "on_input")):
            continue
        if not tensor.is_floating_point():
            raise CorruptModelError(path, f"its {what} must be floating-point numbers, but {_short(name)} holds "
                                          f"{str(tensor.dtype).removeprefix('torch.')} values: a damaged or foreign "
                                          "file")
        if not bool(torch.isfinite(tensor).all()):
            raise CorruptModelError(path, f"its {what} hold NaN or infinite values ({_short(name)}): the file is "
                                          "damaged (often a training run that diverged); it would give a black image")


def finite(tensor: Any) -> bool:
    """Whether every value of `tensor` is finite."""
    return bool(import_torch().isfinite(tensor).all())


def _short(name: str, limit: int = 80) -> str:
    return name if len(name) <= limit else name[: limit - 1] + "…"
