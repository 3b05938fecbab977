"""The cross-run output cache: node outputs kept under their signature, bounded by entry count and bytes (LRU)."""

from __future__ import annotations

import sys
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class CachedOutputs:
    """What a node produced: its output values by name, the files it wrote and what it reported as
    ``(node_id, level, text)`` (so a cached node still shows them)."""

    values: Mapping[str, Any]
    files: tuple[str, ...] = ()
    nbytes: int = field(default=0, compare=False)
    messages: tuple[tuple[str, str, str], ...] = ()


def estimate_nbytes(value: Any, _depth: int = 0) -> int:
    """A cheap estimate of the memory a value holds: arrays and tensors report ``nbytes``; containers are summed.

    Duck-typed so that the engine needs no torch or numpy import.
    """
    nbytes = getattr(value, "nbytes", None)
    if isinstance(nbytes, int):
        return nbytes
    size = sys.getsizeof(value, 64)
    if _depth < 4:
        if isinstance(value, Mapping):
            size += sum(estimate_nbytes(v, _depth + 1) for v in value.values())
        elif isinstance(value, (list, tuple, set, frozenset)):
            size += sum(estimate_nbytes(v, _depth + 1) for v in value)
    return size


class OutputCache:
    """Node outputs by signature, evicting the least recently used entries beyond the limits.

    Args:
        max_entries: how many node results to keep (0 disables caching across runs).
        max_bytes: the memory budget for cached values, as measured by `sizeof` (None: no byte limit).
        sizeof: how to measure a node's outputs.
    """

    def __init__(self, max_entries: int = 256, max_bytes: int | None = None,
                 sizeof: Callable[[Any], int] = estimate_nbytes):
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._sizeof = sizeof
        self._entries: OrderedDict[str, CachedOutputs] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, signature: str) -> CachedOutputs | None:
        """The entry for `signature` (marked as recently used), or None."""
        with self._lock:
            entry = self._entries.get(signature)
            if entry is not None:
                self._entries.move_to_end(signature)
            return entry

    def put(self, signature: str, values: Mapping[str, Any], files: tuple[str, ...] = (),
            messages: tuple[tuple[str, str, str], ...] = ()) -> None:
        """Store a node's outputs, then evict the oldest entries until the limits hold again."""
        nbytes = self._sizeof(dict(values))
        if self.max_entries <= 0 or (self.max_bytes is not None and nbytes > self.max_bytes):
            return
        with self._lock:
            old = self._entries.pop(signature, None)
            if old is not None:
                self._bytes -= old.nbytes
            self._entries[signature] = CachedOutputs(dict(values), tuple(files), nbytes, tuple(messages))
            self._bytes += nbytes
            while len(self._entries) > self.max_entries or (
                    self.max_bytes is not None and self._bytes > self.max_bytes):
                _, evicted = self._entries.popitem(last=False)
                self._bytes -= evicted.nbytes

    def clear(self) -> None:
        """Forget everything (e.g. when the user frees memory or model files change)."""
        with self._lock:
            self._entries.clear()
            self._bytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, signature: object) -> bool:
        return signature in self._entries

    @property
    def nbytes(self) -> int:
        """The estimated bytes held by cached values."""
        return self._bytes
