"""Caching across runs, proven by counting executions, and the bounded LRU OutputCache itself."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from nodegraph.core import Input, Output, PortType, Workflow, node
from nodegraph.engine import Executor, OutputCache, RunSettings
from nodegraph.engine.cache import estimate_nbytes
from tests.engine.helpers import cached_events, chain, started


def rerun(executor, events, workflow, **kwargs):
    """Run once more, with a clean event list."""
    events.clear()
    return executor.run(workflow, **kwargs)


# --- caching through the executor --------------------------------------------------------------------------------


def test_second_run_executes_nothing(executor, events):
    wf = chain()
    first = executor.run(wf)
    assert first.executed == ["n", "s", "a", "c"] and first.cached == []

    second = rerun(executor, events, wf)
    assert second.status == "finished"
    assert second.executed == []
    assert second.cached == ["n", "s", "a", "c"]
    assert cached_events(events) == ["n", "s", "a", "c"]
    assert started(events) == []
    assert second.outputs == first.outputs == {"c": {"VALUE": 6}}


def test_cache_is_shared_by_equal_workflows(executor, events):
    executor.run(chain())
    assert rerun(executor, events, chain()).cached == ["n", "s", "a", "c"]


def test_changing_a_literal_reruns_that_node_and_its_descendants(executor, events):
    wf = chain(value=3, factor=2)
    executor.run(wf)
    wf.set_input("s", "factor", 5)
    result = rerun(executor, events, wf)
    assert result.executed == ["s", "a", "c"]
    assert result.cached == ["n"]
    assert started(events) == ["s", "a", "c"]
    assert result.outputs["c"]["VALUE"] == 15

    # changing it back is served from the cache again
    wf.set_input("s", "factor", 2)
    result = rerun(executor, events, wf)
    assert result.executed == [] and result.outputs["c"]["VALUE"] == 6


def test_explicit_default_equals_missing_literal(executor, events):
    wf = chain()
    del wf.nodes["s"].inputs["factor"]  # the schema default is 2
    executor.run(wf)
    assert rerun(executor, events, chain(factor=2)).executed == []


def test_unchanged_branch_stays_cached(executor, events):
    wf = Workflow()
    wf.add_node("Number", "n1", inputs={"value": 1})
    wf.add_node("Scale", "s1", inputs={"factor": 2})
    wf.add_node("Number", "n2", inputs={"value": 10})
    wf.add_node("Scale", "s2", inputs={"factor": 3})
    wf.add_node("Add", "add")
    wf.add_node("Collect", "c")
    wf.connect("n1", "VALUE", "s1", "value")
    wf.connect("n2", "VALUE", "s2", "value")
    wf.connect("s1", "VALUE", "add", "a")
    wf.connect("s2", "VALUE", "add", "b")
    wf.connect("add", "SUM", "c", "value")
    assert executor.run(wf).outputs["c"]["VALUE"] == 32

    wf.set_input("n2", "value", 20)
    result = rerun(executor, events, wf)
    assert result.outputs["c"]["VALUE"] == 62
    assert sorted(result.executed) == ["add", "c", "n2", "s2"]
    assert sorted(result.cached) == ["n1", "s1"]
    assert set(started(events)) == {"n2", "s2", "add", "c"}


def test_relinking_reruns_the_consumer(executor, events):
    wf = chain(value=3, factor=2)
    wf.add_node("Number", "n9", inputs={"value": 9})
    executor.run(wf)
    wf.connect("n9", "VALUE", "a", "b")
    result = rerun(executor, events, wf)
    assert result.outputs["c"]["VALUE"] == 15
    assert sorted(result.executed) == ["a", "c", "n9"]
    assert sorted(result.cached) == ["n", "s"]


def test_bypass_toggle_changes_what_is_cached(executor, events):
    wf = chain(value=3, factor=2)
    executor.run(wf)
    wf.set_mode("s", "bypass")
    result = rerun(executor, events, wf)
    assert result.outputs["c"]["VALUE"] == 3
    assert result.executed == ["a", "c"] and result.cached == ["n"]
    wf.set_mode("s", "normal")
    result = rerun(executor, events, wf)
    assert result.executed == [] and result.outputs["c"]["VALUE"] == 6


def test_not_idempotent_node_and_descendants_always_rerun(executor, events):
    wf = Workflow()
    wf.add_node("Number", "n", inputs={"value": 4})
    wf.add_node("Random", "r")
    wf.add_node("Scale", "s")
    wf.add_node("Collect", "c")
    wf.add_node("Number", "other", inputs={"value": 1})
    wf.add_node("Collect", "c2")
    wf.connect("n", "VALUE", "r", "value")
    wf.connect("r", "VALUE", "s", "value")
    wf.connect("s", "VALUE", "c", "value")
    wf.connect("other", "VALUE", "c2", "value")

    executor.run(wf)
    for _ in range(2):
        result = rerun(executor, events, wf)
        assert result.status == "finished"
        assert result.executed == ["r", "s", "c"]
        assert result.cached == ["n", "other", "c2"]
        assert started(events) == ["r", "s", "c"]
        assert result.outputs["c"]["VALUE"] == 8


def test_cached_output_node_still_reports_its_files(executor, events, tmp_path):
    wf = Workflow()
    wf.add_node("Number", "n", inputs={"value": 5})
    wf.add_node("WriteText", "w")
    wf.connect("n", "VALUE", "w", "value")
    settings = RunSettings(output_dir=tmp_path)
    first = executor.run(wf, settings=settings)
    assert first.status == "finished"
    second = rerun(executor, events, wf, settings=settings)
    assert second.cached == ["n", "w"]
    assert second.files["w"] == first.files["w"] == [str(tmp_path / "out_00001.txt")]
    assert len(list(tmp_path.iterdir())) == 1  # not written twice


def test_disabled_cache_reruns_everything(registry, events):
    executor = Executor(registry, cache=OutputCache(max_entries=0), sink=events.append)
    executor.run(chain())
    result = rerun(executor, events, chain())
    assert result.executed == ["n", "s", "a", "c"] and result.cached == []
    assert len(executor.cache) == 0


def test_cache_clear_forces_a_rerun(executor, events):
    executor.run(chain())
    assert len(executor.cache) == 4
    executor.cache.clear()
    assert len(executor.cache) == 0 and executor.cache.nbytes == 0
    assert rerun(executor, events, chain()).executed == ["n", "s", "a", "c"]


def test_small_cache_evicts_older_results(registry, events):
    def pair(value):
        wf = Workflow()
        wf.add_node("Number", "n", inputs={"value": value})
        wf.add_node("Collect", "c")
        wf.connect("n", "VALUE", "c", "value")
        return wf

    executor = Executor(registry, cache=OutputCache(max_entries=2), sink=events.append)
    executor.run(pair(1))
    assert rerun(executor, events, pair(1)).cached == ["n", "c"]
    assert rerun(executor, events, pair(2)).executed == ["n", "c"]  # its two entries push out the first two
    assert len(executor.cache) == 2
    assert rerun(executor, events, pair(1)).executed == ["n", "c"]
    assert started(events) == ["n", "c"]
    assert rerun(executor, events, pair(1)).cached == ["n", "c"]


# --- fingerprints ------------------------------------------------------------------------------------------------


def file_fingerprint(_settings, path):
    stat = os.stat(path)
    return f"{stat.st_size}:{stat.st_mtime_ns}"


@node(type="ReadSize", display_name="Read Size", category="test", description="The size of a file.",
      inputs=[Input.string("path", "")], outputs=[Output("SIZE", PortType.INT)], fingerprint=file_fingerprint)
def read_size(ctx, path):
    return {"SIZE": len(Path(path).read_bytes())}


@pytest.fixture
def data_file(tmp_path):
    path = tmp_path / "data.bin"
    path.write_bytes(b"abc")
    os.utime(path, ns=(1_000_000_000, 1_000_000_000))
    return path


def test_fingerprint_reruns_when_the_file_changes(registry, events, data_file):
    registry.register(read_size)
    wf = Workflow()
    wf.add_node("ReadSize", "r", inputs={"path": str(data_file)})
    wf.add_node("Collect", "c")
    wf.connect("r", "SIZE", "c", "value")
    executor = Executor(registry, sink=events.append)

    assert executor.run(wf).outputs["c"]["VALUE"] == 3
    assert rerun(executor, events, wf).executed == []  # unchanged file: cached

    data_file.write_bytes(b"abcdef")  # new size
    os.utime(data_file, ns=(1_000_000_000, 1_000_000_000))
    result = rerun(executor, events, wf)
    assert result.executed == ["r", "c"] and result.outputs["c"]["VALUE"] == 6

    os.utime(data_file, ns=(2_000_000_000, 2_000_000_000))  # same size, new mtime
    assert rerun(executor, events, wf).executed == ["r", "c"]
    assert rerun(executor, events, wf).executed == []


def test_fingerprint_of_a_linked_literal_input(registry, events, data_file):
    # BUG: the executor calls fingerprint(**literals) with only the unlinked literal inputs, so when a primitive
    # node is linked into a fingerprinted input (the documented use of PrimitiveString), the call lacks that
    # argument and the run fails with "TypeError: ... missing 1 required positional argument: 'path'".
    registry.register(read_size)
    wf = Workflow()
    wf.add_node("PrimitiveString", "p", inputs={"value": str(data_file)})
    wf.add_node("ReadSize", "r")
    wf.add_node("Collect", "c")
    wf.connect("p", "STRING", "r", "path")
    wf.connect("r", "SIZE", "c", "value")
    executor = Executor(registry, sink=events.append)

    result = executor.run(wf)
    assert result.status == "finished", result.message
    assert result.outputs["c"]["VALUE"] == 3
    data_file.write_bytes(b"abcdef")
    result = rerun(executor, events, wf)
    assert result.executed == ["r", "c"] and result.outputs["c"]["VALUE"] == 6


# --- OutputCache ---------------------------------------------------------------------------------------------------


class Sized:
    """Like an array or a tensor: reports its memory as `nbytes`."""

    def __init__(self, nbytes):
        self.nbytes = nbytes


def test_get_and_put():
    cache = OutputCache()
    assert cache.get("x") is None and "x" not in cache
    cache.put("x", {"VALUE": 1}, ("a.png",))
    entry = cache.get("x")
    assert entry is not None and dict(entry.values) == {"VALUE": 1} and entry.files == ("a.png",)
    assert "x" in cache and len(cache) == 1
    cache.put("x", {"VALUE": 2})  # replaces
    assert cache.get("x").values == {"VALUE": 2} and len(cache) == 1


def test_max_entries_evicts_least_recently_used():
    cache = OutputCache(max_entries=2)
    cache.put("a", {"V": 1})
    cache.put("b", {"V": 2})
    assert cache.get("a") is not None  # a is now more recent than b
    cache.put("c", {"V": 3})
    assert "b" not in cache
    assert "a" in cache and "c" in cache and len(cache) == 2
    cache.put("d", {"V": 4})
    assert "a" not in cache and set(_keys(cache)) == {"c", "d"}


def test_max_entries_zero_disables_caching():
    cache = OutputCache(max_entries=0)
    cache.put("a", {"V": 1})
    assert len(cache) == 0 and cache.get("a") is None and cache.nbytes == 0


def test_max_bytes_evicts_by_nbytes():
    cache = OutputCache(max_bytes=25_000)
    cache.put("a", {"V": Sized(10_000)})
    cache.put("b", {"V": Sized(10_000)})
    assert len(cache) == 2
    assert 20_000 <= cache.nbytes <= 25_000
    cache.get("a")
    cache.put("c", {"V": Sized(10_000)})  # over budget: the least recently used (b) goes
    assert set(_keys(cache)) == {"a", "c"}
    assert cache.nbytes <= 25_000

    cache.put("huge", {"V": Sized(30_000)})  # larger than the whole budget: not stored, nothing evicted
    assert "huge" not in cache and set(_keys(cache)) == {"a", "c"}

    cache.put("big", {"V": Sized(20_000)})  # fits alone: both others go
    assert set(_keys(cache)) == {"big"}
    assert 20_000 <= cache.nbytes <= 25_000


def test_replacing_an_entry_keeps_the_byte_count_right():
    cache = OutputCache(max_bytes=100_000)
    cache.put("a", {"V": Sized(10_000)})
    cache.put("a", {"V": Sized(40_000)})
    assert len(cache) == 1 and 40_000 <= cache.nbytes < 50_000
    cache.clear()
    assert cache.nbytes == 0 and len(cache) == 0


def test_custom_sizeof():
    cache = OutputCache(max_bytes=10, sizeof=lambda values: values["V"])
    cache.put("a", {"V": 4})
    cache.put("b", {"V": 4})
    cache.put("c", {"V": 4})
    assert set(_keys(cache)) == {"b", "c"} and cache.nbytes == 8


def test_estimate_nbytes():
    assert estimate_nbytes(Sized(12_345)) == 12_345
    assert estimate_nbytes({"a": Sized(1000), "b": [Sized(2000), Sized(3000)]}) >= 6000
    assert estimate_nbytes("x" * 1000) >= 1000


def test_executor_uses_the_byte_budget(registry, events):
    @node(type="MakeSized", display_name="Make Sized", category="test", description="A big value.",
          inputs=[Input.int("n", 1000, min=0, max=10**9)], outputs=[Output("DATA", PortType.ANY)])
    def make_sized(ctx, n):
        return {"DATA": Sized(n)}

    registry.register(make_sized)
    wf = Workflow()
    wf.add_node("MakeSized", "big", inputs={"n": 50_000})
    wf.add_node("Collect", "c")
    wf.connect("big", "DATA", "c", "value")
    executor = Executor(registry, cache=OutputCache(max_bytes=10_000), sink=events.append)
    executor.run(wf)
    assert executor.cache.nbytes <= 10_000
    result = rerun(executor, events, wf)
    assert result.executed == ["big", "c"]  # too big to keep: both run again

    wf.set_input("big", "n", 100)
    executor.run(wf)
    assert rerun(executor, events, wf).executed == []


def _keys(cache):
    return [key for key in ("a", "b", "c", "d", "big", "huge") if key in cache]
