"""The executor frees each intermediate value after its last consumer (unless it is a target or cached)."""

from __future__ import annotations

import gc
import weakref

import pytest

from nodegraph.core import Input, Output, PortType, Workflow, node
from nodegraph.engine import Executor, OutputCache
from tests.engine.helpers import collect_value


class Blob:
    """A stand-in for a large tensor; plain classes support weak references."""

    def __init__(self, size):
        self.size = size


@pytest.fixture
def blob_registry(registry):
    """Adds MakeBlob (records a weakref to each blob), Measure (BLOB -> INT, second BLOB optional) and Alive
    (counts the blobs still alive after gc.collect(), when it runs)."""
    refs: list[weakref.ref] = []
    registry.add_port_type("BLOB")

    @node(type="MakeBlob", display_name="Make Blob", category="test", description="Make a blob.",
          inputs=[Input.int("size", 1, min=0, max=100)], outputs=[Output("BLOB", "BLOB")])
    def make_blob(ctx, size):
        blob = Blob(size)
        refs.append(weakref.ref(blob))
        return {"BLOB": blob}

    @node(type="Measure", display_name="Measure", category="test", description="Size of one or two blobs.",
          inputs=[Input.link("a", "BLOB"), Input.link("b", "BLOB", optional=True)],
          outputs=[Output("SIZE", PortType.INT)])
    def measure(ctx, a, b):
        return {"SIZE": a.size + (b.size if b is not None else 0)}

    @node(type="Alive", display_name="Alive", category="test", description="How many blobs are alive.",
          inputs=[Input.link("value", PortType.INT)], outputs=[Output("ALIVE", PortType.INT)])
    def alive(ctx, value):
        gc.collect()
        return {"ALIVE": sum(ref() is not None for ref in refs)}

    for node_def in (make_blob, measure, alive):
        registry.register(node_def)
    return registry


def blob_workflow(both_inputs=False):
    """m (MakeBlob) -> me (Measure) -> al (Alive) -> c (Collect)."""
    wf = Workflow()
    wf.add_node("MakeBlob", "m", inputs={"size": 7})
    wf.add_node("Measure", "me")
    wf.add_node("Alive", "al")
    wf.add_node("Collect", "c")
    wf.connect("m", "BLOB", "me", "a")
    if both_inputs:
        wf.connect("m", "BLOB", "me", "b")
    wf.connect("me", "SIZE", "al", "value")
    wf.connect("al", "ALIVE", "c", "value")
    return wf


def test_intermediate_is_freed_after_its_last_consumer(blob_registry):
    executor = Executor(blob_registry, cache=OutputCache(max_entries=0))
    result = executor.run(blob_workflow())
    assert result.status == "finished", result.message
    assert result.executed == ["m", "me", "al", "c"]
    assert collect_value(result) == 0  # the blob was gone by the time Alive ran


def test_target_outputs_are_kept(blob_registry):
    executor = Executor(blob_registry, cache=OutputCache(max_entries=0))
    result = executor.run(blob_workflow(), targets=["m", "c"])
    assert result.status == "finished", result.message
    assert collect_value(result) == 1  # a target's value is not freed...
    blob = result.outputs["m"]["BLOB"]  # ...it is returned to the caller
    assert isinstance(blob, Blob) and blob.size == 7


def test_cache_keeps_intermediates_alive_when_enabled(blob_registry):
    # the counterpart of the freeing test: proves the Alive probe can see a live blob
    executor = Executor(blob_registry, cache=OutputCache(max_entries=10))
    result = executor.run(blob_workflow())
    assert collect_value(result) == 1


def test_intermediate_feeding_two_inputs_of_one_node_is_freed(blob_registry):
    # BUG: Executor._execute counts uses per linked input (2 here) but decrements once per consumer, so a value
    # feeding two inputs of the same node is never freed before the run ends.
    executor = Executor(blob_registry, cache=OutputCache(max_entries=0))
    result = executor.run(blob_workflow(both_inputs=True))
    assert result.status == "finished", result.message
    assert result.outputs["c"]["VALUE"] == 0
