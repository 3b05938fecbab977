"""The executor's failures: user errors, unexpected errors with a traceback, wrong outputs, failing fingerprints
and event sinks that raise."""

from __future__ import annotations

import pytest

from nodegraph.core import Input, NodeError, Output, PortType, Workflow, node
from nodegraph.engine import (
    Executor,
    NodeFailed,
    NodeFinished,
    NodeStarted,
    RunFailed,
    RunFinished,
    RunSettings,
)
from tests.engine.helpers import chain, collect_value, of_type, started


def fail_workflow(how):
    """n -> f (Fail) -> c."""
    wf = Workflow()
    wf.add_node("Number", "n", inputs={"value": 7})
    wf.add_node("Fail", "f", inputs={"how": how})
    wf.add_node("Collect", "c")
    wf.connect("n", "VALUE", "f", "value")
    wf.connect("f", "VALUE", "c", "value")
    return wf


def test_user_error_fails_cleanly(executor, events):
    result = executor.run(fail_workflow("user"))

    assert result.status == "failed"
    assert result.failed_node == "f"
    assert result.message == "the value 7 is not acceptable"
    assert result.details == ""
    assert result.executed == ["n"]
    assert started(events) == ["n", "f"]
    node_failed = of_type(events, NodeFailed)
    assert len(node_failed) == 1
    assert (node_failed[0].node_id, node_failed[0].node_type) == ("f", "Fail")
    assert node_failed[0].message == "the value 7 is not acceptable" and node_failed[0].details == ""
    run_failed = of_type(events, RunFailed)
    assert len(run_failed) == 1
    assert run_failed[0].node_id == "f" and run_failed[0].message == "the value 7 is not acceptable"
    assert not of_type(events, RunFinished)
    assert result.outputs == {}


def test_unexpected_error_reports_a_traceback(executor, events):
    result = executor.run(fail_workflow("bug"))

    assert result.status == "failed" and result.failed_node == "f"
    assert result.message == "ZeroDivisionError: division by zero"
    node_failed = of_type(events, NodeFailed)[0]
    assert node_failed.message == result.message
    assert "Traceback" in node_failed.details and "ZeroDivisionError" in node_failed.details
    assert node_failed.details == result.details
    assert of_type(events, RunFailed)[0].node_id == "f"


def test_failed_node_is_not_cached(executor, events):
    executor.run(fail_workflow("user"))
    events.clear()
    result = executor.run(fail_workflow("user"))
    assert result.status == "failed"
    assert result.cached == ["n"]
    assert started(events) == ["f"]


@pytest.mark.parametrize("returned", [{"WRONG": 1}, {"VALUE": 1, "EXTRA": 2}, None, 5, [("VALUE", 1)]],
                         ids=["unknown", "extra", "none", "int", "list"])
def test_wrong_output_mapping_fails_cleanly(registry, events, returned):
    @node(type="Broken", display_name="Broken", category="test", description="Returns the wrong thing.",
          inputs=[Input.link("value", PortType.INT)], outputs=[Output("VALUE", PortType.INT)])
    def broken(ctx, value):
        return returned

    registry.register(broken)
    wf = Workflow()
    wf.add_node("Number", "n")
    wf.add_node("Broken", "b")
    wf.add_node("Collect", "c")
    wf.connect("n", "VALUE", "b", "value")
    wf.connect("b", "VALUE", "c", "value")

    result = Executor(registry, sink=events.append).run(wf)
    assert result.status == "failed"
    assert result.failed_node == "b"
    assert result.message.startswith("TypeError: Broken.run returned")
    assert "c" not in started(events)
    assert [e.node_id for e in of_type(events, NodeFailed)] == ["b"]


def test_node_without_outputs_may_return_none(registry, events, tmp_path):
    wf = Workflow()
    wf.add_node("Number", "n")
    wf.add_node("WriteText", "w")
    wf.connect("n", "VALUE", "w", "value")
    result = Executor(registry, sink=events.append).run(wf)  # no output folder: WriteText refuses
    assert result.status == "failed" and result.message == "no output folder"
    result = Executor(registry).run(wf, settings=RunSettings(output_dir=tmp_path))
    assert result.status == "finished" and result.outputs == {"w": {}}


def test_fingerprint_error_fails_the_run(registry, events):
    def fingerprint(_settings, path):
        raise NodeError(f"{path} is missing")

    @node(type="Loader", display_name="Loader", category="test", description="Fingerprint fails.",
          inputs=[Input.string("path", "x.bin")], outputs=[Output("VALUE", PortType.INT)], fingerprint=fingerprint)
    def loader(ctx, path):
        return {"VALUE": 1}

    registry.register(loader)
    wf = Workflow()
    wf.add_node("Loader", "l")
    wf.add_node("Collect", "c")
    wf.connect("l", "VALUE", "c", "value")
    result = Executor(registry, sink=events.append).run(wf)
    assert result.status == "failed" and result.failed_node == "l"
    assert result.message == "x.bin is missing"
    assert started(events) == []


def test_raising_sink_does_not_break_the_run(registry):
    def bad_sink(event):
        raise RuntimeError("listener bug")

    result = Executor(registry, sink=bad_sink).run(chain(value=3, factor=2))
    assert result.status == "finished"
    assert collect_value(result) == 6


def test_sink_failing_on_some_events_still_gets_the_others(registry):
    received = []

    def sink(event):
        if isinstance(event, NodeStarted):
            raise ValueError("cannot handle this one")
        received.append(event)

    result = Executor(registry, sink=sink).run(chain())
    assert result.status == "finished"
    assert [e.node_id for e in of_type(received, NodeFinished)] == ["n", "s", "a", "c"]
    assert len(of_type(received, RunFinished)) == 1


def test_preflight_problems_make_the_run_invalid_before_any_node_runs(executor, events):
    from nodegraph.core.validate import Problem

    seen = []

    def preflight(workflow):
        seen.append(sorted(workflow.nodes))
        return [Problem("wrong_family", "made for another model line", "f", "how")] if "f" in workflow.nodes else []

    executor.preflight = preflight
    result = executor.run(fail_workflow("user"))
    assert result.status == "invalid" and [p.node_id for p in result.problems] == ["f"]
    assert result.executed == [] and started(events) == []
    assert of_type(events, RunFailed)[0].problems == tuple(result.problems)

    wf = Workflow()
    wf.add_node("Number", "n", inputs={"value": 7})
    wf.add_node("Collect", "c")
    wf.connect("n", "VALUE", "c", "value")
    assert executor.run(wf).status == "finished"  # no problem: the run goes ahead
    assert seen == [["c", "f", "n"], ["c", "n"]]
    wf.add_node("Collect", "orphan")  # a validation problem: preflight is not asked at all
    assert executor.run(wf).status == "invalid" and len(seen) == 2


class OutOfMemoryError(RuntimeError):
    """Named as torch.cuda's (the engine recognises it by name: it does not import torch)."""


@pytest.mark.parametrize(("error", "where"), [
    (MemoryError(), "(RAM)"),
    (OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"), "GPU"),
    (RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory: you tried to "
                  "allocate 9663676416 bytes"), "(RAM)"),
    (RuntimeError("unable to mmap 228829108 bytes from file <m.safetensors>: Cannot allocate memory (12)"), "(RAM)"),
])
def test_out_of_memory_is_one_clear_message_frees_the_models_and_the_next_run_works(registry, error, where):
    freed, raised = [], []

    class Models:
        def clear(self):
            freed.append(True)

    @node(type="Greedy", display_name="Greedy", category="test", description="Runs out of memory once.",
          inputs=[Input.link("value", PortType.INT)], outputs=[Output("VALUE", PortType.INT)])
    def greedy(ctx, value):
        if not raised:
            raised.append(True)
            raise error
        return {"VALUE": value}

    registry.register(greedy)
    wf = Workflow()
    wf.add_node("Number", "n", inputs={"value": 2})
    wf.add_node("Greedy", "g")
    wf.add_node("Collect", "c")
    wf.connect("n", "VALUE", "g", "value")
    wf.connect("g", "VALUE", "c", "value")
    executor = Executor(registry)
    settings = RunSettings(services={"models": Models()})
    first = executor.run(wf, settings=settings)
    assert (first.status, first.failed_node, first.out_of_memory, first.details) == ("failed", "g", True, "")
    assert first.message.startswith("out of memory:") and where in first.message and "smaller image" in first.message
    assert freed == [True]
    second = executor.run(wf, settings=settings)
    assert second.status == "finished" and not second.out_of_memory


def test_other_runtime_errors_are_not_taken_for_out_of_memory(registry):
    from nodegraph.engine.run import out_of_memory

    assert not out_of_memory(RuntimeError("mat1 and mat2 shapes cannot be multiplied"))
    assert not out_of_memory(ValueError("out of memory"))  # only allocators' RuntimeErrors say it
