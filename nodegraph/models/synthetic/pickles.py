"""Pickled model files as real ones look: Lightning ``.ckpt`` wrappers, AUTOMATIC1111 ``.pt`` files, and a malicious
pickle for the safety tests.

Real SD 1.x ``.ckpt`` files were written by PyTorch Lightning 1.4 with numpy 1.x: besides tensors they reference
``pytorch_lightning.callbacks.model_checkpoint.ModelCheckpoint`` (the class is a key of ``"callbacks"``) and numpy
scalars (``numpy.core.multiarray.scalar``). Neither Lightning nor an old numpy is needed to write such a file here: a
pickler subclass writes those global names for local stand-ins.
"""

from __future__ import annotations

import pickle
import types
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

LIGHTNING_CALLBACK = "pytorch_lightning.callbacks.model_checkpoint.ModelCheckpoint"


class LightningModelCheckpoint:
    """Stands in for Lightning's ``ModelCheckpoint`` class; pickled under the name :data:`LIGHTNING_CALLBACK`.

    Allowlist it for ``torch.load(weights_only=True)`` as ``(LightningModelCheckpoint, LIGHTNING_CALLBACK)``.
    """

    def __setstate__(self, state: Any) -> None:
        self.state = state


def numpy_scalar_function() -> Any:
    """numpy's ``multiarray.scalar`` (the function that rebuilds a pickled numpy scalar), whatever numpy's version."""
    core = getattr(np, "_core", None) or np.core
    return core.multiarray.scalar


def _spellings() -> list[tuple[Any, str, str]]:
    # (object, module, name) written instead of the object's own location
    return [(LightningModelCheckpoint, *LIGHTNING_CALLBACK.rsplit(".", 1)),
            (numpy_scalar_function(), "numpy.core.multiarray", "scalar")]


class _LegacyNamesPickler(pickle._Pickler):  # the pure-Python pickler lets save_global be overridden
    """Writes the global names of old Lightning/numpy for the stand-ins (protocol 2, as torch.save uses)."""

    def save_global(self, obj: Any, name: str | None = None) -> None:
        for known, module, qualname in _spellings():
            if obj is known:
                if self.proto >= 4:
                    raise pickle.PicklingError("legacy global names need pickle protocol 2 or 3")
                self.write(pickle.GLOBAL + f"{module}\n{qualname}\n".encode("ascii"))
                self.memoize(obj)
                return
        super().save_global(obj, name)


_PICKLE_MODULE = types.SimpleNamespace(__name__="pickle", Pickler=_LegacyNamesPickler, Unpickler=pickle.Unpickler,
                                       dump=pickle.dump, load=pickle.load)


def save_legacy_pickle(obj: Any, path: str | Path) -> Path:
    """``torch.save`` (zip format, protocol 2) writing old Lightning/numpy global names for the stand-ins."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(obj, path, pickle_module=_PICKLE_MODULE, pickle_protocol=2)
    return path


def lightning_checkpoint(state_dict: Mapping[str, torch.Tensor], *, global_step: int = 840000,
                         epoch: int = 6) -> dict[str, Any]:
    """A Lightning 1.4-style checkpoint around `state_dict`, with the callback class key and a numpy scalar."""
    callback_state = {
        "monitor": None,
        "best_model_score": np.float64(0.1234),
        "best_model_path": "",
        "current_score": None,
        "dirpath": "/logs/2022-08-01T00-00-00_txt2img/checkpoints",
    }
    return {"epoch": epoch, "global_step": global_step, "pytorch-lightning_version": "1.4.2",
            "state_dict": dict(state_dict), "callbacks": {LightningModelCheckpoint: callback_state}}


def ckpt_safe_globals() -> list[Any]:
    """Exactly the globals a file from :func:`lightning_checkpoint` needs under ``torch.load(weights_only=True)``."""
    scalar = numpy_scalar_function()
    return [(LightningModelCheckpoint, LIGHTNING_CALLBACK), (scalar, "numpy.core.multiarray.scalar"), np.dtype,
            type(np.dtype("float64"))]


class _Payload:
    """Unpickles to a call that creates the marker file: what an attacker's "model" does on an unsafe load."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (exec, (f"open({self.marker!r}, 'w').write('pickle code ran')",))


def write_malicious_pickle(path: str | Path, marker_path: str | Path) -> Path:
    """A ``.ckpt``-looking torch file whose pickle calls ``builtins.exec`` to create `marker_path` when unpickled.

    Only ever open it with ``torch.load(weights_only=True)``, which refuses the global without running it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    generator = torch.Generator().manual_seed(0)
    state = {"model.diffusion_model.input_blocks.0.0.weight": torch.randn(8, 4, 3, 3, generator=generator)}
    torch.save({"state_dict": state, "global_step": 1, "callbacks": _Payload(Path(marker_path))}, path)
    return path
