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
import zlib
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
    file with a message naming them. Every refusal says in plain words what the file is and why it is refused
    (empty, zero-filled, truncated, a web page, a pickle feature model files never use); torch's own error text, which
    suggests the unsafe ``weights_only=False``, is never shown.
    """
    path = Path(path)
    torch = import_torch()
    if not path.is_file():
        raise CorruptModelError(path, "no such file")
    not_model = _not_a_checkpoint(path)
    if not_model:
        raise CorruptModelError(path, not_model)
    if _is_zip(path):
        protocol, pickled = _zip_pickle(path)
        if protocol >= 4:
            _refuse_new_protocol(path, protocol, pickled)
        try:
            found = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
        except Exception:
            raise CorruptModelError(path, "a damaged PyTorch checkpoint: its zip archive cannot be read "
                                          "(truncated or corrupt?)") from None
        refused = sorted(set(found) - _allowed_names())
        if refused:
            raise UnsafeModelError(path, "refused: the file references code that could run on loading ("
                                   + ", ".join(refused) + "); only plain tensors and known metadata are allowed")
    else:
        with path.open("rb") as handle:
            head = handle.read(2)
        if head[:1] != pickle.PROTO or len(head) < 2 or head[1] > pickle.HIGHEST_PROTOCOL:
            raise CorruptModelError(path, _NEITHER)  # torch.save's pickles always start with PROTO 2 or higher
        if head[1] >= 4:
            _refuse_new_protocol(path, head[1], path.read_bytes() if path.stat().st_size <= _SCAN_BYTES else None)
    try:
        with torch.serialization.safe_globals(_allowlist()), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            data = torch.load(str(path), map_location=device, weights_only=True)
    except pickle.UnpicklingError as error:
        reason = _unpickling_reason(error)
        if reason.startswith("not a PyTorch checkpoint"):
            raise CorruptModelError(path, reason) from None
        raise UnsafeModelError(path, f"refused by the safe loader: {reason}") from None
    except OSError as error:
        raise CorruptModelError(path, f"cannot read: {error.strerror or _damage_reason(error)}") from None
    except (RuntimeError, EOFError, ValueError, zipfile.BadZipFile, KeyError, IndexError, TypeError, AttributeError,
            struct.error, AssertionError) as error:  # AssertionError: torch's checks on a damaged data.pkl
        raise CorruptModelError(path, _damage_reason(error)) from None
    if not isinstance(data, dict):
        raise CorruptModelError(path, f"holds a {type(data).__name__}, not a dictionary of tensors")
    return data


_NEITHER = "not a PyTorch checkpoint: the file is neither a zip archive nor a pickle (damaged, or another kind of file)"
#: How much of a file the plain-words checks read (its start, and its end for the zero-fill check).
_PROBE_BYTES = 64 * 1024
#: Pickles up to this size are scanned whole for the globals they name when refused for their protocol.
_SCAN_BYTES = 64 * 1024**2


def _not_a_checkpoint(path: Path) -> str | None:
    """Why `path` is plainly not a PyTorch checkpoint (empty, zero-filled, a text file), or None."""
    try:
        size = path.stat().st_size
        with path.open("rb") as handle:
            head = handle.read(_PROBE_BYTES)
            handle.seek(max(size - _PROBE_BYTES, 0))
            tail = handle.read(_PROBE_BYTES)
    except OSError as error:
        return f"cannot read: {error.strerror or error}"
    if size == 0:
        return "not a PyTorch checkpoint: the file is empty (an interrupted download or copy?)"
    if not head.strip(b"\0") and not tail.strip(b"\0"):
        return "not a PyTorch checkpoint: the file is zero-filled (an interrupted download or a disk error?)"
    text = head.lstrip().lower()
    if text.startswith(b"version https://git-lfs"):
        return "not a PyTorch checkpoint: a Git LFS pointer (the real file was never downloaded)"
    if text.startswith((b"<!doctype", b"<html", b"<?xml", b"{")):
        return "not a PyTorch checkpoint: a text file (a web page or an error message saved instead of the model?)"
    if head.startswith(b"PK\x03\x04") and not _is_zip(path):
        return "truncated: a PyTorch checkpoint whose end is missing (an interrupted download?)"
    return None


def _is_zip(path: Path) -> bool:
    """``zipfile.is_zipfile``, which raises (instead of answering False) on some damaged end records."""
    try:
        return zipfile.is_zipfile(path)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, struct.error):  # e.g. "span multiple disks"
        return False


def _zip_pickle(path: Path) -> tuple[int, bytes | None]:
    """The pickle protocol of a zip checkpoint's ``data.pkl`` (0 when unknown) and, when small enough, its bytes."""
    try:
        with zipfile.ZipFile(path) as archive:
            info = next((i for i in archive.infolist() if i.filename.rsplit("/", 1)[-1] == "data.pkl"), None)
            if info is None:
                return 0, None
            with archive.open(info) as member:
                head = member.read(2)
                if head[:1] != pickle.PROTO or len(head) < 2:
                    return 0, None
                rest = member.read() if info.file_size <= _SCAN_BYTES else b""
                return head[1], (head + rest) if rest else None
    except (OSError, EOFError, zlib.error, zipfile.BadZipFile, RuntimeError, ValueError):  # a damaged record
        return 0, None


def _refuse_new_protocol(path: Path, protocol: int, pickled: bytes | None) -> None:
    """Refuse a pickle of protocol 4 or 5, naming any global outside the allowlist it references.

    torch's weights-only unpickler reads protocol 2 and 3 only (what ``torch.save`` writes by default); its framing
    and short opcodes of protocol 4/5 are refused. The scan only parses opcodes (``pickletools``); nothing runs.
    """
    refused = sorted(set(_scan_globals(pickled)) - _allowed_names() - _torch_default_names()) if pickled else []
    if refused:
        raise UnsafeModelError(path, "refused: the file references code that could run on loading ("
                               + ", ".join(refused) + "); only plain tensors and known metadata are allowed")
    raise UnsafeModelError(path, f"refused: a pickle using a feature model files never use (protocol {protocol} "
                                 "framing, which the safe loader does not read; torch.save writes protocol 2). "
                                 "Re-save it with torch.save's default protocol, or as .safetensors")


def _torch_default_names() -> set[str]:
    """The globals torch's weights-only unpickler allows on its own (tensor rebuilds, storages, OrderedDict)."""
    try:
        from torch._weights_only_unpickler import _get_allowed_globals
    except ImportError:  # a torch without it: name every global rather than guess
        return set()
    return set(_get_allowed_globals())


def _scan_globals(pickled: bytes) -> list[str]:
    """The ``module.name`` globals that the pickles in `pickled` reference, found by parsing opcodes only."""
    import io
    import pickletools

    found: list[str] = []
    stream = io.BytesIO(pickled)
    for _ in range(5):  # torch's legacy format is several pickles in a row (magic, protocol, info, object, keys)
        strings: list[str] = []
        memo: dict[int, Any] = {}
        try:
            for opcode, arg, _pos in pickletools.genops(stream):
                if opcode.name in ("GLOBAL", "INST") and isinstance(arg, str):
                    found.append(arg.replace(" ", "."))
                elif opcode.name in ("SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE"):
                    strings.append(arg)
                elif opcode.name == "MEMOIZE" and strings:
                    memo[len(memo)] = strings[-1]
                elif opcode.name in ("BINPUT", "LONG_BINPUT", "PUT") and strings:
                    memo[int(arg)] = strings[-1]
                elif opcode.name in ("BINGET", "LONG_BINGET", "GET") and isinstance(memo.get(int(arg)), str):
                    strings.append(memo[int(arg)])
                elif opcode.name == "STACK_GLOBAL" and len(strings) >= 2:
                    found.append(f"{strings[-2]}.{strings[-1]}")
        except Exception:  # noqa: BLE001 (the end of the pickles, or a damaged one: the scan is best effort)
            break
    return found


def _unpickling_reason(error: BaseException) -> str:
    """The useful part of torch's weights-only error (its boilerplate suggests weights_only=False: never do that)."""
    import pickletools

    text = str(error)
    globals_found = re.findall(r"GLOBAL ([\w.]+)", text)
    if globals_found:
        return "the file references code that could run on loading (" + ", ".join(sorted(set(globals_found))) + ")"
    operand = re.search(r"Unsupported operand (\d+)", text)
    if operand:
        code = bytes([int(operand.group(1)) % 256])
        op = next((o for o in pickletools.opcodes if o.code.encode("latin-1") == code), None)
        if op is None:
            return _NEITHER
        return f"a pickle using a feature model files never use (the {op.name} instruction of protocol {op.proto})"
    return "not a plain tensor file: it holds values model files never contain"


def _damage_reason(error: BaseException) -> str:
    """A plain-words reason for a file torch could not read (never torch's text, which may suggest unsafe loading)."""
    text = str(error)
    if isinstance(error, EOFError) or "unexpected EOF" in text or "truncated" in text.lower():
        return "truncated: the file ends in the middle of its data (an interrupted download?)"
    if "Invalid magic number" in text:
        return "not a PyTorch checkpoint: a plain Python pickle, not a file written by torch.save"
    if "zip archive" in text or "PytorchStreamReader" in text or isinstance(error, zipfile.BadZipFile):
        return "a damaged PyTorch checkpoint: its zip archive cannot be read (truncated or corrupt?)"
    if "legacy .tar format" in text:
        return _NEITHER
    return "a damaged PyTorch checkpoint (truncated or corrupt?)"
