"""The executor: planning and order, bypass and mute, freeing intermediates, cancellation, failures and cycles."""

from __future__ import annotations

import gc
import threading
import weakref

import pytest

from nodegraph.core import Input, NodeError, Output, PortType, Workflow, node
from nodegraph.engine import (
    CancelToken,
    Executor,
    NodeCached,
    NodeFailed,
    NodeFinished,
    NodeStarted,
    OutputCache,
    Progress,
    RunCancelled,
    RunFailed,
    RunFinished,
    RunSettings,
    RunStarted,
)
from tests.engine.helpers import chain, of_type, started

# --- helpers ------------------------------------------------------------------------------------------------------


def collect_value(result, node_id="c"):
    return result.outputs[node_id]["VALUE"]


def assert_topological(order, workflow):
    """Every node in `order` comes after each planned node that feeds it."""
    position = {node_id: i for i, node_id in enumerate(order)}
    for link in workflow.links:
        if link.from_node in position and link.to_node in position:
            assert position[link.from_node] < position[link.to_node], (link, order)


# --- 1. order and output-only execution --------------------------------------------------------------------------


def branched_workflow():
    """Inserted "backwards" so that insertion order is not a valid execution order.

    n1 -> s -> add.a ; n2 -> add.b ; add -> c (Collect) ; n1 -> w (WriteText) ;
    dangling: n3 -> d (Scale) feeding nothing, and a lone Number n4.
    """
    wf = Workflow()
    wf.add_node("Collect", "c")
    wf.add_node("Add", "add")
    wf.add_node("Scale", "s", inputs={"factor": 3})
    wf.add_node("Number", "n2", inputs={"value": 10})
    wf.add_node("Number", "n1", inputs={"value": 2})
    wf.add_node("WriteText", "w", inputs={"filename_prefix": "val"})
    wf.add_node("Number", "n3", inputs={"value": 5})
    wf.add_node("Scale", "d")
    wf.add_node("Number", "n4")
    wf.connect("n1", "VALUE", "s", "value")
    wf.connect("s", "VALUE", "add", "a")
    wf.connect("n2", "VALUE", "add", "b")
    wf.connect("add", "SUM", "c", "value")
    wf.connect("n1", "VALUE", "w", "value")
    wf.connect("n3", "VALUE", "d", "value")
    return wf


def test_runs_only_what_outputs_need_in_topological_order(executor, events, tmp_path):
    wf = branched_workflow()
    result = executor.run(wf, settings=RunSettings(output_dir=tmp_path / "out"))

    assert result.status == "finished", (result.message, result.problems)
    assert result.ok
    # stable topological order: ties broken by insertion order (n2 was added before n1)
    expected = ["n2", "n1", "s", "add", "c", "w"]
    assert result.executed == expected
    assert started(events) == expected
    assert_topological(started(events), wf)
    assert of_type(events, RunStarted)[0].planned == tuple(expected)
    assert not {"n3", "d", "n4"} & set(started(events))
    assert result.cached == []
    assert collect_value(result) == 2 * 3 + 10
    # every event belongs to this run
    assert {e.run_id for e in events} == {result.run_id}
    finished = of_type(events, RunFinished)
    assert len(finished) == 1 and finished[0].executed == tuple(expected)
    # the WriteText output node wrote its file and reported it
    written = result.files["w"]
    assert len(written) == 1 and (tmp_path / "out" / "val_00001.txt").read_text() == "2\n"
    assert of_type(events, NodeFinished)[-1].files == tuple(written)
    # outputs hold the target (output) nodes only
    assert set(result.outputs) == {"c", "w"}


def test_targets_run_just_what_a_chosen_node_needs(executor, events):
    wf = branched_workflow()
    result = executor.run(wf, targets=["s"])

    assert result.status == "finished"
    assert result.executed == ["n1", "s"]
    assert started(events) == ["n1", "s"]
    assert result.outputs == {"s": {"VALUE": 6}}


def test_targets_need_no_output_node(executor):
    wf = Workflow()
    wf.add_node("Number", "n", inputs={"value": 4})
    wf.add_node("Scale", "s")
    wf.connect("n", "VALUE", "s", "value")
    assert executor.run(wf).status == "invalid"  # no output node: nothing to run by default
    result = executor.run(wf, targets=["s"])
    assert result.status == "finished" and result.outputs["s"]["VALUE"] == 8


def test_unknown_target_is_a_problem(executor, events):
    result = executor.run(chain(), targets=["nope"])
    assert result.status == "invalid"
    assert [(p.code, p.node_id) for p in result.problems] == [("missing_node", "nope")]
    assert started(events) == []


def test_workflow_without_output_node_is_invalid(executor, events):
    wf = Workflow()
    wf.add_node("Number", "n")
    result = executor.run(wf)
    assert result.status == "invalid"
    assert [p.code for p in result.problems] == ["no_output"]
    assert started(events) == []


# --- 3. freeing intermediates --------------------------------------------------------------------------------------


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


# --- 4. bypass and mute --------------------------------------------------------------------------------------------


def test_bypassed_scale_passes_its_value_through(executor, events):
    wf = chain(value=3, factor=5)
    wf.set_mode("s", "bypass")
    result = executor.run(wf)
    assert result.status == "finished", result.problems
    assert collect_value(result) == 3
    assert result.executed == ["n", "a", "c"]
    assert "s" not in started(events)

    wf.set_mode("s", "normal")
    assert collect_value(executor.run(wf)) == 15


def test_bypass_cannot_pass_an_int_as_a_token(executor, events):
    wf = Workflow()
    wf.add_node("Number", "n", inputs={"value": 4})
    wf.add_node("MakeToken", "mt", mode="bypass")
    wf.add_node("TokenValue", "tv")
    wf.add_node("Collect", "c")
    wf.connect("n", "VALUE", "mt", "value")
    wf.connect("mt", "TOKEN", "tv", "token")
    wf.connect("tv", "VALUE", "c", "value")

    result = executor.run(wf)
    assert result.status == "invalid"
    assert [(p.code, p.node_id, p.port) for p in result.problems] == [("unresolved_link", "tv", "token")]
    assert started(events) == []
    failed = of_type(events, RunFailed)
    assert len(failed) == 1 and failed[0].node_id is None and failed[0].problems == tuple(result.problems)

    wf.set_mode("mt", "normal")
    assert collect_value(executor.run(wf)) == 4


def test_muted_output_node_does_not_run(executor, events):
    wf = Workflow()
    wf.add_node("Number", "n", inputs={"value": 2})
    wf.add_node("Scale", "s")
    wf.add_node("Collect", "c1", mode="mute")
    wf.add_node("Collect", "c2")
    wf.connect("n", "VALUE", "s", "value")
    wf.connect("s", "VALUE", "c1", "value")
    wf.connect("n", "VALUE", "c2", "value")

    result = executor.run(wf)
    assert result.status == "finished"
    assert started(events) == ["n", "c2"]
    assert set(result.outputs) == {"c2"}


def test_all_outputs_muted_is_invalid(executor, events):
    wf = chain()
    wf.set_mode("c", "mute")
    result = executor.run(wf)
    assert result.status == "invalid"
    assert "no_output" in [p.code for p in result.problems]
    assert started(events) == []


def test_muted_node_feeding_a_required_input_is_invalid(executor, events):
    wf = chain()
    wf.set_mode("n", "mute")
    result = executor.run(wf)
    assert result.status == "invalid"
    assert [(p.code, p.node_id, p.port) for p in result.problems] == [("unresolved_link", "s", "value")]
    assert started(events) == []


def test_muted_node_feeding_an_optional_input_gives_none(registry, events):
    seen = []

    @node(type="Probe", display_name="Probe", category="test", description="Record what an optional input got.",
          inputs=[Input.link("value", PortType.INT, optional=True)], outputs=[Output("TEXT", PortType.STRING)])
    def probe(ctx, value):
        seen.append(value)
        return {"TEXT": repr(value)}

    registry.register(probe)
    wf = Workflow()
    wf.add_node("Number", "n1", inputs={"value": 4})
    wf.add_node("Number", "n2", inputs={"value": 100}, mode="mute")
    wf.add_node("Add", "add")
    wf.add_node("Probe", "p")
    wf.add_node("Collect", "c")
    wf.add_node("Collect", "cp")
    wf.connect("n1", "VALUE", "add", "a")
    wf.connect("n2", "VALUE", "add", "b")
    wf.connect("n2", "VALUE", "p", "value")
    wf.connect("add", "SUM", "c", "value")
    wf.connect("p", "TEXT", "cp", "value")

    result = Executor(registry, sink=events.append).run(wf)
    assert result.status == "finished", result.problems
    assert collect_value(result) == 4
    assert seen == [None]
    assert result.outputs["cp"]["VALUE"] == "None"
    assert "n2" not in started(events)


# --- 5. cancellation and progress -------------------------------------------------------------------------------


def slow_workflow(steps=200, delay=0.01):
    """n -> slow -> s -> c."""
    wf = Workflow()
    wf.add_node("Number", "n", inputs={"value": 6})
    wf.add_node("Slow", "slow", inputs={"steps": steps, "delay": delay})
    wf.add_node("Scale", "s")
    wf.add_node("Collect", "c")
    wf.connect("n", "VALUE", "slow", "value")
    wf.connect("slow", "VALUE", "s", "value")
    wf.connect("s", "VALUE", "c", "value")
    return wf


def test_progress_events_carry_step_and_total(executor, events):
    result = executor.run(slow_workflow(steps=3, delay=0.0))
    assert result.status == "finished"
    progress = of_type(events, Progress)
    assert [(p.node_id, p.step, p.total) for p in progress] == [("slow", 1, 3), ("slow", 2, 3), ("slow", 3, 3)]
    # progress comes between the node's start and finish
    positions = [i for i, e in enumerate(events) if isinstance(e, Progress)]
    start = next(i for i, e in enumerate(events) if isinstance(e, NodeStarted) and e.node_id == "slow")
    finish = next(i for i, e in enumerate(events) if isinstance(e, NodeFinished) and e.node_id == "slow")
    assert start < positions[0] and positions[-1] < finish


def test_cancel_from_another_thread_stops_the_running_node(registry):
    events = []
    first_progress = threading.Event()

    def sink(event):
        events.append(event)
        if isinstance(event, Progress):
            first_progress.set()

    token = CancelToken()
    seen_at_cancel = []

    def canceller():
        if first_progress.wait(10):
            seen_at_cancel.append(len(of_type(events, Progress)))
            token.cancel()

    thread = threading.Thread(target=canceller)
    thread.start()
    try:
        result = Executor(registry, sink=sink).run(slow_workflow(steps=200, delay=0.01), cancel=token)
    finally:
        token.cancel()
        thread.join(10)

    assert seen_at_cancel, "the Slow node never reported progress"
    assert result.status == "cancelled"
    assert not result.ok
    cancelled = of_type(events, RunCancelled)
    assert len(cancelled) == 1 and cancelled[0].node_id == "slow"
    assert started(events) == ["n", "slow"]  # nothing after Slow started
    assert result.executed == ["n"]
    assert not of_type(events, RunFinished) and not of_type(events, RunFailed)
    assert "slow" not in [e.node_id for e in of_type(events, NodeFinished)]
    # prompt: the node stopped at its next progress check, at most one step after the cancel was seen
    progress = of_type(events, Progress)
    assert len(progress) <= seen_at_cancel[0] + 2
    assert progress[-1].step < 200
    assert result.outputs == {}


def test_cancel_between_nodes(registry):
    token = CancelToken()
    events = []

    def sink(event):
        events.append(event)
        if isinstance(event, NodeFinished) and event.node_id == "n":
            token.cancel()

    result = Executor(registry, sink=sink).run(chain(), cancel=token)
    assert result.status == "cancelled"
    assert started(events) == ["n"]
    cancelled = of_type(events, RunCancelled)
    assert len(cancelled) == 1 and cancelled[0].node_id is None


def test_cancel_before_the_run_starts_runs_nothing(executor, events):
    token = CancelToken()
    token.cancel()
    result = executor.run(slow_workflow(), cancel=token)
    assert result.status == "cancelled"
    assert result.executed == [] and result.cached == []
    assert started(events) == []
    assert not of_type(events, Progress)
    assert [e.node_id for e in of_type(events, RunCancelled)] == [None]


def test_cancel_token_check():
    from nodegraph.core.errors import Cancelled

    token = CancelToken()
    token.check()
    assert not token.cancelled
    token.cancel()
    assert token.cancelled
    with pytest.raises(Cancelled):
        token.check()


# --- 6. failures ---------------------------------------------------------------------------------------------------


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


# --- 7. cycles -----------------------------------------------------------------------------------------------------


def test_cycle_is_refused(executor, events):
    wf = Workflow()
    wf.add_node("Number", "n")
    wf.add_node("Add", "add")
    wf.add_node("Scale", "s")
    wf.add_node("Collect", "c")
    wf.connect("s", "VALUE", "add", "a")
    wf.connect("add", "SUM", "s", "value")
    wf.connect("n", "VALUE", "add", "b")
    wf.connect("add", "SUM", "c", "value")

    result = executor.run(wf)
    assert result.status == "invalid"
    cycles = [p for p in result.problems if p.code == "cycle"]
    assert len(cycles) == 1 and cycles[0].node_id in {"add", "s"}
    assert started(events) == [] and result.executed == []
    assert not of_type(events, RunStarted)
    assert of_type(events, RunFailed)[0].problems == tuple(result.problems)


def test_self_loop_is_refused(executor, events):
    wf = Workflow()
    wf.add_node("Number", "n")
    wf.add_node("Add", "add")
    wf.add_node("Collect", "c")
    wf.connect("add", "SUM", "add", "a")
    wf.connect("n", "VALUE", "add", "b")
    wf.connect("add", "SUM", "c", "value")
    result = executor.run(wf)
    assert result.status == "invalid"
    assert [p.node_id for p in result.problems if p.code == "cycle"] == ["add"]
    assert started(events) == []


def test_cycle_away_from_the_outputs_is_refused_too(executor, events):
    wf = chain()
    wf.add_node("Scale", "x")
    wf.add_node("Scale", "y")
    wf.connect("x", "VALUE", "y", "value")
    wf.connect("y", "VALUE", "x", "value")
    result = executor.run(wf)
    assert result.status == "invalid"
    assert "cycle" in [p.code for p in result.problems]
    assert started(events) == []


def test_cached_events_name_the_node_type(executor, events):
    executor.run(chain())
    events.clear()
    executor.run(chain())
    assert [(e.node_id, e.node_type) for e in of_type(events, NodeCached)] == [
        ("n", "Number"), ("s", "Scale"), ("a", "Add"), ("c", "Collect")]
