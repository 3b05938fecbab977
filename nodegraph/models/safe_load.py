"""Reading model files safely: safetensors memory-mapped, pickles only through torch's weights-only unpickler.

There is no fallback to unsafe unpickling anywhere. A pickle that references any global outside a small allowlist
(what real Stable Diffusion files contain: Lightning's checkpoint callback, numpy scalars and dtypes, an old
embedding's ``nn.ParameterDict``) is refused with a message that names the globals, before anything is unpickled.
"""

from __future__ import annotations

import json
import pickle
import re
import struct
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nodegraph.models.errors import CorruptModelError, UnsafeModelError
from nodegraph.models.offline import import_torch

SAFETENSORS_SUFFIXES = (".safetensors", ".sft")
PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")
MODEL_SUFFIXES = SAFETENSORS_SUFFIXES + PICKLE_SUFFIXES

#: Real headers are well under a few MB even for the largest checkpoints; anything above this is not a model.
MAX_HEADER_BYTES = 100 * 1024 * 1024

_DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1,
                "F8_E4M3": 1, "F8_E5M2": 1, "U16": 2, "U32": 4, "U64": 8}


@dataclass(frozen=True)
class TensorEntry:
    """One tensor of a safetensors header: dtype name (``F16``…), shape, and its byte range in the data section."""

    dtype: str
    shape: tuple[int, ...]
    start: int
    end: int


@dataclass(frozen=True)
class SafetensorsHeader:
    """The parsed header of a safetensors file: tensors by name, the free-form metadata, and the file size."""

    tensors: dict[str, TensorEntry]
    metadata: dict[str, str] = field(default_factory=dict)
    file_bytes: int = 0


#: Identifying a pickled file means unpickling it whole; listings and pre-flight checks skip pickles above this size.
LARGE_PICKLE_BYTES = 256 * 1024**2


def is_large_pickle(path: Path) -> bool:
    """True for a pickled model file too big to unpickle just to say what it is (a multi-GB ``.ckpt``)."""
    return path.is_file() and path.suffix.lower() not in SAFETENSORS_SUFFIXES \
        and path.stat().st_size > LARGE_PICKLE_BYTES


def read_safetensors_header(path: str | Path) -> SafetensorsHeader:
    """Parse a safetensors header without loading any weight; every inconsistency is a CorruptModelError.

    Checks the header length against the file, each tensor's byte range against the data section (a truncated
    download is caught here), and the dtype sizes against the shapes.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        with path.open("rb") as handle:
            prefix = handle.read(8)
            if len(prefix) < 8:
                raise CorruptModelError(path, "not a safetensors file (too short)")
            (header_len,) = struct.unpack("<Q", prefix)
            if header_len > MAX_HEADER_BYTES:
                raise CorruptModelError(path, f"header of {header_len} bytes is oversized: not a safetensors file")
            if header_len > size - 8:
                raise CorruptModelError(path, f"truncated: the header needs {header_len} bytes, the file has "
                                              f"{size - 8}")
            raw = handle.read(header_len)
    except OSError as error:
        raise CorruptModelError(path, f"cannot read: {error.strerror or error}") from None
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise CorruptModelError(path, "the safetensors header is not valid JSON") from None
    if not isinstance(header, dict):
        raise CorruptModelError(path, "the safetensors header is not an object")
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict):
        raise CorruptModelError(path, "the safetensors metadata is not an object")
    data_bytes = size - 8 - header_len
    tensors: dict[str, TensorEntry] = {}
    for name, entry in header.items():
        try:
            dtype, shape, (start, end) = entry["dtype"], tuple(entry["shape"]), entry["data_offsets"]
            count = 1
            for dim in shape:
                count *= int(dim)
            expected = count * _DTYPE_BYTES[dtype]
        except (KeyError, TypeError, ValueError):
            raise CorruptModelError(path, f"bad header entry for tensor {name!r}") from None
        if not (isinstance(start, int) and isinstance(end, int) and 0 <= start <= end) or end - start != expected:
            raise CorruptModelError(path, f"tensor {name!r} has inconsistent offsets")
        if end > data_bytes:
            raise CorruptModelError(path, f"truncated: tensor {name!r} ends at byte {end} of the data, but the file "
                                          f"holds {data_bytes} data bytes (an interrupted download?)")
        tensors[name] = TensorEntry(dtype, shape, start, end)
    return SafetensorsHeader(tensors, {str(k): str(v) for k, v in metadata.items()}, size)


def load_state_dict(path: str | Path, device: str = "cpu") -> dict[str, Any]:
    """Load every tensor (and, for pickles, every allowed value) of a model file.

    Safetensors files are memory-mapped; pickles go through ``torch.load(weights_only=True)`` with the allowlist.
    A Lightning-style ``{"state_dict": …}`` wrapper is returned as is; see :func:`unwrap_state_dict`.
    """
    path = Path(path)
    if path.suffix.lower() in SAFETENSORS_SUFFIXES:
        return _load_safetensors(path, device)
    if path.suffix.lower() in PICKLE_SUFFIXES:
        return load_pickle(path, device)
    raise CorruptModelError(path, f"unsupported file type {path.suffix!r}; expected one of {', '.join(MODEL_SUFFIXES)}")


def _load_safetensors(path: Path, device: str) -> dict[str, Any]:
    read_safetensors_header(path)  # clear errors for truncated or bogus files before safetensors sees them
    from safetensors import SafetensorError, safe_open

    import_torch()
    try:
        with safe_open(str(path), framework="pt", device=device) as handle:
            return {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118 (not a dict)
    except (SafetensorError, OSError) as error:
        raise CorruptModelError(path, f"cannot read tensors: {error}") from None


def unwrap_state_dict(data: dict[str, Any]) -> dict[str, Any]:
    """The tensors of a checkpoint, looking inside the ``state_dict`` wrapper that training scripts add."""
    inner = data.get("state_dict")
    return inner if isinstance(inner, dict) else data


# --- pickles ------------------------------------------------------------------------------------------------------
class LightningModelCheckpointStandIn:
    """Takes the place of pytorch_lightning's ``ModelCheckpoint`` callback, pickled into many SD 1.x ``.ckpt`` files.

    Only its state (numbers and strings) is kept; no Lightning code exists or runs.
    """

    def __setstate__(self, state: Any) -> None:
        self.state = state


def _allowlist() -> list[Any]:
    import numpy

    torch = import_torch()
    core = getattr(numpy, "_core", None) or numpy.core
    scalar = core.multiarray.scalar
    allowed: list[Any] = [
        (LightningModelCheckpointStandIn, "pytorch_lightning.callbacks.model_checkpoint.ModelCheckpoint"),
        (LightningModelCheckpointStandIn, "lightning.pytorch.callbacks.model_checkpoint.ModelCheckpoint"),
        (scalar, "numpy.core.multiarray.scalar"),
        (scalar, "numpy._core.multiarray.scalar"),
        numpy.dtype,
        torch.nn.ParameterDict,
        torch.nn.modules.container.ParameterDict,
    ]
    allowed += [cls for cls in vars(numpy.dtypes).values() if isinstance(cls, type) and issubclass(cls, numpy.dtype)]
    return allowed


def _allowed_names() -> set[str]:
    names = set()
    for item in _allowlist():
        if isinstance(item, tuple):
            names.add(item[1])
        else:
            names.add(f"{item.__module__}.{item.__qualname__}")
    return names


def load_pickle(path: str | Path, device: str = "cpu") -> dict[str, Any]:
    """Load a ``.ckpt``/``.pt``/``.bin`` file with the weights-only unpickler and the allowlist; refuse anything else.

    The globals a file references are listed first without running anything; one outside the allowlist refuses the
    file with a message naming them.
    """
    path = Path(path)
    torch = import_torch()
    if not path.is_file():
        raise CorruptModelError(path, "no such file")
    if zipfile.is_zipfile(path):
        try:
            found = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
        except Exception as error:
            raise CorruptModelError(path, f"not a readable PyTorch file: {error}") from None
        refused = sorted(set(found) - _allowed_names())
        if refused:
            raise UnsafeModelError(path, "refused: the file references code that could run on loading ("
                                   + ", ".join(refused) + "); only plain tensors and known metadata are allowed")
    try:
        with torch.serialization.safe_globals(_allowlist()), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            data = torch.load(str(path), map_location=device, weights_only=True)
    except pickle.UnpicklingError as error:
        raise UnsafeModelError(path, f"refused by the safe loader: {_unpickling_reason(error)}") from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile) as error:
        raise CorruptModelError(path, f"cannot read (truncated or corrupt?): {_first_line(error)}") from None
    if not isinstance(data, dict):
        raise CorruptModelError(path, f"holds a {type(data).__name__}, not a dictionary of tensors")
    return data


def _unpickling_reason(error: BaseException) -> str:
    """The useful part of torch's weights-only error (its boilerplate suggests weights_only=False: never do that)."""
    text = str(error)
    globals_found = re.findall(r"GLOBAL ([\w.]+)", text)
    if globals_found:
        return "the file references code that could run on loading (" + ", ".join(sorted(set(globals_found))) + ")"
    detail = re.search(r"WeightsUnpickler error:\s*(.+)", text)
    return f"not a plain tensor file ({detail.group(1).strip()})" if detail else "not a plain tensor file"


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__
