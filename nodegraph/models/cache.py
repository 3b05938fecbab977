"""The model cache: loaded components shared by file identity, a RAM tier with LRU eviction under a budget, and a
device tier that moves modules to the GPU for use and offloads the least recently used ones back to the CPU.

A component in use is locked and never evicted or offloaded. Modelled on InvokeAI's two-tier cache (lock/unlock
around use), written for this project.
"""

from __future__ import annotations

import dataclasses
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nodegraph.models.devices import total_memory_bytes
from nodegraph.models.offline import import_torch


def file_key(path: str | Path, *extra: Hashable) -> tuple:
    """A cache key for a file: its resolved path, size and modification time (an edited file is a new key)."""
    path = Path(path).resolve()
    stat = path.stat()
    return (str(path), stat.st_size, stat.st_mtime_ns, *extra)


def module_nbytes(value: Any) -> int:
    """Bytes held by the parameters and buffers of a module, or of the modules inside a container object."""
    torch = import_torch()
    if isinstance(value, torch.nn.Module):
        tensors = list(value.parameters()) + list(value.buffers())
        return sum(t.numel() * t.element_size() for t in tensors)
    if isinstance(value, dict):
        return sum(module_nbytes(v) for v in value.values())
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return sum(module_nbytes(getattr(value, f.name)) for f in dataclasses.fields(value))
    return 0


@dataclass
class _Entry:
    value: Any
    nbytes: int
    locks: int = 0


class ModelCache:
    """Loaded models by key, within a RAM budget; modules moved to the compute device only while used.

    Args:
        ram_budget: bytes of loaded models kept in memory (default: half the machine's memory).
        device_budget: bytes of modules kept on the compute device between uses (default: no limit on CPU,
            the device's free memory at first use on a GPU, less a margin).
    """

    def __init__(self, ram_budget: int | None = None, device_budget: int | None = None):
        self.ram_budget = ram_budget if ram_budget is not None else total_memory_bytes() // 2
        self.device_budget = device_budget
        self._entries: OrderedDict[Hashable, _Entry] = OrderedDict()
        self._resident: OrderedDict[int, tuple[Any, int]] = OrderedDict()  # modules on the compute device
        self._module_locks: dict[int, int] = {}
        self._lock = threading.RLock()
        self.loads = 0

    # --- RAM tier ------------------------------------------------------------------------------------------------
    def get(self, key: Hashable, load: Callable[[], Any], nbytes: Callable[[Any], int] = module_nbytes) -> Any:
        """The value cached under `key`, loading it with `load()` the first time (then evicting LRU entries)."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                self._entries.move_to_end(key)
                return entry.value
        value = load()
        with self._lock:
            self.loads += 1
            self._entries[key] = _Entry(value, nbytes(value))
            self._evict(keep=key)
            return value

    @contextmanager
    def lock(self, key: Hashable) -> Iterator[Any]:
        """Hold the entry under `key` so no eviction drops it while it is in use; yields its value."""
        with self._lock:
            entry = self._entries[key]
            entry.locks += 1
        try:
            yield entry.value
        finally:
            with self._lock:
                entry.locks -= 1
                self._evict()

    def _evict(self, keep: Hashable | None = None) -> None:
        total = sum(entry.nbytes for entry in self._entries.values())
        for key in list(self._entries):
            if total <= self.ram_budget:
                break
            entry = self._entries[key]
            if key == keep or entry.locks > 0:
                continue
            total -= entry.nbytes
            del self._entries[key]

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    @property
    def ram_bytes(self) -> int:
        """Bytes held by cached entries."""
        return sum(entry.nbytes for entry in self._entries.values())

    def clear(self) -> None:
        """Drop every unlocked entry and offload idle modules; frees GPU memory where there is a GPU."""
        with self._lock:
            for key in [k for k, e in self._entries.items() if e.locks == 0]:
                del self._entries[key]
            for module_id in [m for m in self._resident if not self._module_locks.get(m)]:
                module, _ = self._resident.pop(module_id)
                module.to("cpu")
        torch = import_torch()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    # --- device tier ---------------------------------------------------------------------------------------------
    @contextmanager
    def use(self, device: Any, *modules: Any) -> Iterator[None]:
        """Move `modules` to `device` for the duration of the block, offloading idle modules to the CPU first when
        the device budget would be exceeded. The modules are locked: nothing offloads them while in use."""
        torch = import_torch()
        device = torch.device(device)
        with self._lock:
            for module in modules:
                self._module_locks[id(module)] = self._module_locks.get(id(module), 0) + 1
            if device.type != "cpu":
                needed = sum(module_nbytes(m) for m in modules if id(m) not in self._resident)
                self._make_room(device, needed)
                for module in modules:
                    module.to(device)
                    self._resident[id(module)] = (module, module_nbytes(module))
                    self._resident.move_to_end(id(module))
        try:
            yield
        finally:
            with self._lock:
                for module in modules:
                    self._module_locks[id(module)] -= 1
                    if not self._module_locks[id(module)]:
                        del self._module_locks[id(module)]

    def _make_room(self, device: Any, needed: int) -> None:
        torch = import_torch()
        budget = self.device_budget
        if budget is None and device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(device)
            budget = free + sum(size for _, size in self._resident.values()) - 512 * 1024**2
        if budget is None:
            return
        used = sum(size for _, size in self._resident.values())
        for module_id in list(self._resident):
            if used + needed <= budget:
                break
            if self._module_locks.get(module_id):
                continue
            module, size = self._resident.pop(module_id)
            module.to("cpu")
            used -= size

    @property
    def device_bytes(self) -> int:
        """Bytes of modules currently kept on the compute device."""
        return sum(size for _, size in self._resident.values())

    def is_resident(self, module: Any) -> bool:
        """True when `module` is kept on the compute device."""
        return id(module) in self._resident
