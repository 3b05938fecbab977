"""Find the model file an AUTOMATIC1111 infotext means, by its hash and its name, in the user's model folders.

AUTOMATIC1111 writes these hashes (read from its ``modules/sd_models.py``, ``modules/hashes.py``, ``modules/sd_vae.py``,
``modules/textual_inversion/textual_inversion.py`` and ``extensions-builtin/Lora/network.py``):

- ``Model hash`` of 10 hex digits: the first 10 of the checkpoint file's SHA-256 (its "shorthash");
- ``Model hash`` of 8 hex digits (versions before early 2023): the first 8 of the SHA-256 of the 0x10000 bytes that
  start at byte offset 0x100000 of the file, so it needs no full read;
- ``VAE hash``: the first 10 hex digits of the VAE file's SHA-256;
- ``TI hashes``: the first 12 of the embedding file's SHA-256;
- ``Lora hashes``: the first 12 of the "addnet" hash for a ``.safetensors`` LoRA (the SHA-256 of everything after the
  safetensors header) or of the file's SHA-256 otherwise; a ``sshs_model_hash`` in the file's metadata wins.

Hashes are remembered per file version (resolved path, size, modification time) in the data folder, since hashing a
7 GB checkpoint takes seconds. Pure Python: hashlib and json only.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from nodegraph.core.errors import NodegraphError
from nodegraph.interop.result import ModelCatalog

#: File name endings of model files, dropped when a name from an infotext is compared with a file's stem.
MODEL_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth", ".bin", ".sft")
_OLD_HASH_OFFSET, _OLD_HASH_LENGTH = 0x100000, 0x10000
_BLOCK = 16 * 1024 * 1024


def cache_path() -> Path:
    """Where hashes are remembered: ``<data folder>/cache/a1111_hashes.json``."""
    from nodegraph.paths import app_home

    return app_home() / "cache" / "a1111_hashes.json"


def _digest(path: Path, start: int = 0, length: int | None = None) -> str:
    """The SHA-256 (hex) of `length` bytes of `path` from `start` (to the end when `length` is None)."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        handle.seek(start)
        left = length
        while left is None or left > 0:
            block = handle.read(_BLOCK if left is None else min(_BLOCK, left))
            if not block:
                break
            digest.update(block)
            if left is not None:
                left -= len(block)
    return digest.hexdigest()


def _safetensors_header(path: Path) -> tuple[int, dict]:
    """The header length and the parsed header of a safetensors file ((0, {}) when it is not one)."""
    try:
        with Path(path).open("rb") as handle:
            size = int.from_bytes(handle.read(8), "little")
            if not 0 < size < 100_000_000:
                return 0, {}
            header = json.loads(handle.read(size))
    except (OSError, ValueError):
        return 0, {}
    return (size, header) if isinstance(header, dict) else (0, {})


#: How many bytes one import may read to compute hashes it has not cached yet (a few checkpoints' worth): an
#: unknown hash in a folder of dozens of multi-gigabyte files must not keep the user waiting for minutes.
HASH_BUDGET = 8 * 1024 ** 3


class HashBudgetSpent(LookupError):
    """A file was not hashed because the import already read :data:`HASH_BUDGET` bytes for hashes."""


class HashCache:
    """Hashes of model files by (resolved path, size, mtime_ns), kept in a JSON file; an edited file is re-hashed.

    Args:
        path: the JSON file (default: :func:`cache_path`).
        budget: the bytes it may read for hashes not cached yet; past it, :class:`HashBudgetSpent`.
    """

    def __init__(self, path: Path | None = None, budget: int = HASH_BUDGET):
        self.path = Path(path) if path is not None else cache_path()
        self.budget = budget  # bytes this cache may still read to compute new full hashes
        self.skipped = 0  # files left unhashed because the budget ran out
        self._data: dict[str, dict] | None = None
        self._dirty = False

    def _entries(self) -> dict[str, dict]:
        if self._data is None:
            try:
                data = json.loads(self.path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                data = {}
            self._data = data if isinstance(data, dict) else {}
        return self._data

    def hash(self, path: Path, scheme: str) -> str:
        """The file's hash by `scheme`: "old" (8 hex), "sha256", "addnet" or "sshs" (metadata; "" when absent)."""
        path = Path(path).resolve()
        stat = path.stat()
        entry = self._entries().get(str(path))
        version = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
        if not isinstance(entry, dict) or any(entry.get(key) != value for key, value in version.items()):
            entry = version
            self._entries()[str(path)] = entry
        if scheme not in entry:
            cost = _OLD_HASH_LENGTH if scheme in ("old", "sshs") else stat.st_size
            if cost > self.budget:
                self.skipped += 1
                raise HashBudgetSpent(f"{path.name} was not hashed: the import's hashing budget is spent")
            self.budget -= cost
            entry[scheme] = _compute(path, scheme)
            self._dirty = True
        return entry[scheme]

    def save(self) -> None:
        """Write the file if anything new was hashed (atomically; a failure to write is not an error)."""
        if not self._dirty or self._data is None:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            temporary = self.path.with_suffix(f".{os.getpid()}.tmp")
            temporary.write_text(json.dumps(self._data, indent=1, sort_keys=True), encoding="utf-8")
            temporary.replace(self.path)
            self._dirty = False
        except OSError:
            pass


def _compute(path: Path, scheme: str) -> str:
    if scheme == "old":
        return _digest(path, _OLD_HASH_OFFSET, _OLD_HASH_LENGTH)[:8]
    if scheme == "sha256":
        return _digest(path)
    header_size, header = _safetensors_header(path)
    if scheme == "sshs":
        metadata = header.get("__metadata__")
        return str(metadata.get("sshs_model_hash", "")).lower() if isinstance(metadata, dict) else ""
    if scheme == "addnet":
        return _digest(path, 8 + header_size) if header_size else _digest(path)
    raise ValueError(f"unknown hash scheme {scheme!r}")


def name_key(name: str) -> str:
    """A model name as AUTOMATIC1111 compares it: the file name without folder or model suffix, case-folded."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    for suffix in MODEL_SUFFIXES:
        if base.lower().endswith(suffix):
            base = base[: -len(suffix)]
            break
    return base.strip().casefold()


def _names_match(relative: str, wanted: str) -> bool:
    key = name_key(wanted)
    if name_key(relative) == key:
        return True
    # AUTOMATIC1111's older "Model" field is the path below the folder with separators turned into "_".
    flat = relative.replace("\\", "/")
    for suffix in MODEL_SUFFIXES:
        if flat.lower().endswith(suffix):
            flat = flat[: -len(suffix)]
            break
    return flat.replace("/", "_").casefold() == key


def _hash_matches(cache: HashCache, path: Path, kind: str, wanted: str) -> bool:
    """Whether the file at `path` has the AUTOMATIC1111 hash `wanted` for its `kind` (see the module docstring)."""
    if not path.is_file():
        return False  # a diffusers folder has no A1111 hash
    if kind == "checkpoints" and len(wanted) == 8:
        return cache.hash(path, "old") == wanted
    if kind == "loras" and path.suffix.lower() == ".safetensors":
        sshs = cache.hash(path, "sshs")
        if sshs and sshs.startswith(wanted):
            return True
        return cache.hash(path, "addnet").startswith(wanted)
    return cache.hash(path, "sha256").startswith(wanted)


@dataclass(frozen=True)
class ModelMatch:
    """Which file an infotext's model reference resolved to.

    Args:
        name: the model's name in the catalog (what a loader node takes), or None when nothing matched.
        how: "hash", "name" or "" (not found).
        warning: one line for the user when the match is doubtful or missing, else None.
    """

    name: str | None
    how: str
    warning: str | None = None


def find_model(catalog: ModelCatalog, kind: str, name: str | None = None, model_hash: str | None = None, *,
               cache: HashCache | None = None, label: str = "model") -> ModelMatch:
    """Find the `kind` file AUTOMATIC1111 called `name` with hash `model_hash` in `catalog`.

    A hash match wins (files whose name matches are hashed first, the others only when they do not match); then a
    name match, with a warning when the hash says it is another file; else nothing, with a warning. Files are only
    hashed when a hash was given, and each file once per version (`cache`).
    """
    wanted = (model_hash or "").strip().strip("[]").lower() or None
    if wanted and not all(c in "0123456789abcdef" for c in wanted):
        wanted = None
    try:
        names = list(catalog.list(kind))
    except (OSError, ValueError, NodegraphError):
        names = []
    by_name = [n for n in names if name and _names_match(n, name)]
    shown = f"{label} {name!r}" if name else f"{label} with hash {wanted}"
    if wanted:
        own_cache = cache is None
        cache = cache or HashCache()
        try:
            for candidate in by_name + [n for n in names if n not in by_name]:
                try:
                    if _hash_matches(cache, Path(catalog.resolve(kind, candidate)), kind, wanted):
                        if name and candidate not in by_name:
                            return ModelMatch(candidate, "hash", f"{shown} found by its hash {wanted} as {candidate}")
                        return ModelMatch(candidate, "hash")
                except (OSError, ValueError, LookupError, NodegraphError):
                    continue
        finally:
            if own_cache:
                cache.save()
        unhashed = (f"; {cache.skipped} large file(s) were not hashed to keep the import quick (their hashes are "
                    "computed once, then remembered)") if cache.skipped else ""
        if by_name:
            return ModelMatch(by_name[0], "name", f"{shown}: using {by_name[0]}, whose hash differs from {wanted} "
                                                  f"(another version of the file?){unhashed}")
        if unhashed:
            return ModelMatch(None, "", f"{shown} (hash {wanted}) not found in your model folders{unhashed}")
    elif by_name:
        return ModelMatch(by_name[0], "name")
    return ModelMatch(None, "", f"{shown}{f' (hash {wanted})' if wanted and name else ''} not found in your model "
                                f"folders")
