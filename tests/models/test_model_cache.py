"""The model cache: shared by file identity, RAM budget with LRU eviction, locks, and device offload order."""

from __future__ import annotations

import os

import pytest
import torch

from nodegraph.models.cache import ModelCache, file_key, module_nbytes
from nodegraph.models.loader import load_checkpoint


def linear(n=16):
    return torch.nn.Linear(n, n, bias=False)  # n*n*4 bytes


def test_loads_once_and_shares(model_files):
    cache = ModelCache()
    key = file_key(model_files["sd1"])
    first = cache.get(key, lambda: load_checkpoint(model_files["sd1"]))
    second = cache.get(file_key(model_files["sd1"]), lambda: pytest.fail("loaded twice"))
    assert first is second and cache.loads == 1
    assert cache.ram_bytes == module_nbytes(first) > 0


def test_an_edited_file_is_a_new_key(tmp_path):
    path = tmp_path / "m.safetensors"
    path.write_bytes(b"1")
    before = file_key(path)
    path.write_bytes(b"22")
    os.utime(path, ns=(1, 1))
    assert file_key(path) != before


def test_ram_budget_evicts_least_recently_used():
    size = module_nbytes(linear())
    cache = ModelCache(ram_budget=2 * size)
    a = cache.get("a", linear)
    cache.get("b", linear)
    assert cache.get("a", pytest.fail) is a  # a is now the most recently used
    cache.get("c", linear)
    assert "a" in cache and "c" in cache and "b" not in cache
    assert cache.ram_bytes <= 2 * size


def test_locked_entries_are_never_evicted():
    size = module_nbytes(linear())
    cache = ModelCache(ram_budget=size)
    cache.get("a", linear)
    with cache.lock("a") as module:
        cache.get("b", linear)
        cache.get("c", linear)
        assert "a" in cache and isinstance(module, torch.nn.Linear)
    cache.get("d", linear)
    assert "a" not in cache and "d" in cache


def test_clear_keeps_locked_entries():
    cache = ModelCache()
    cache.get("a", linear)
    cache.get("b", linear)
    with cache.lock("b"):
        cache.clear()
        assert "a" not in cache and "b" in cache


class FakeGpuModule(torch.nn.Module):
    """Records where it was asked to go instead of moving (no GPU in CI), to test the offload decisions."""

    def __init__(self, n=16):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(n, n))
        self.placed = "cpu"

    def to(self, device, *args, **kwargs):
        self.placed = str(torch.device(device))
        return self


def test_device_tier_offloads_idle_modules_and_never_locked_ones():
    size = module_nbytes(FakeGpuModule())
    cache = ModelCache(device_budget=2 * size)
    a, b, c = FakeGpuModule(), FakeGpuModule(), FakeGpuModule()
    with cache.use("cuda:0", a):
        assert a.placed == "cuda:0" and cache.is_resident(a)
    with cache.use("cuda:0", b):
        pass
    assert cache.device_bytes == 2 * size
    with cache.use("cuda:0", c):  # a is the least recently used idle module: offloaded to make room
        assert (a.placed, b.placed, c.placed) == ("cpu", "cuda:0", "cuda:0")
    with cache.use("cuda:0", a, b), cache.use("cuda:0", c):  # nothing idle to offload: in-use modules stay put
        assert (a.placed, b.placed, c.placed) == ("cuda:0", "cuda:0", "cuda:0")
    assert cache.device_bytes <= 3 * size


def test_cpu_use_moves_nothing():
    cache = ModelCache()
    module = FakeGpuModule()
    with cache.use("cpu", module):
        assert module.placed == "cpu" and not cache.is_resident(module)
