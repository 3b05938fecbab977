"""The executor: planning and order, output-only execution and targets, bypass and mute, cycles.

Freeing intermediates, cancellation and failures are in test_executor_*.py next to this file."""

from __future__ import annotations

from nodegraph.core import Input, Output, PortType, Workflow, node
from nodegraph.engine import (
    Executor,
    NodeCached,
    NodeFinished,
    NodeMessage,
    RunFailed,
    RunFinished,
    RunSettings,
    RunStarted,
)
from tests.engine.helpers import chain, collect_value, of_type, started


def assert_topological(order, workflow):
    """Every node in `order` comes after each planned node that feeds it."""
    position = {node_id: i for i, node_id in enumerate(order)}
    for link in workflow.links:
        if link.from_node in position and link.to_node in position:
            assert position[link.from_node] < position[link.to_node], (link, order)


# --- order and output-only execution ---------------------------------------------------------------------------------


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


# --- bypass and mute -------------------------------------------------------------------------------------------------


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


# --- cycles ----------------------------------------------------------------------------------------------------------


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


def test_a_cached_node_reports_its_messages_again(registry, events):
    """A node's messages are part of its result: a run that takes it from the cache shows them again (a sampler
    taken from the cache still says how many LoRA layers it matched)."""
    runs = []

    @node(type="Teller", display_name="Teller", category="test", description="Pass a value on, saying something.",
          inputs=[Input.link("value", PortType.INT)], outputs=[Output("VALUE", PortType.INT)])
    def teller(ctx, value):
        runs.append(value)
        ctx.report(f"{value} is odd", level="warning", node_id="n")
        ctx.report("fine")
        return {"VALUE": value}

    registry.register(teller)
    wf = Workflow()
    wf.add_node("Number", "n", inputs={"value": 3})
    wf.add_node("Teller", "t")
    wf.add_node("Collect", "c")
    wf.connect("n", "VALUE", "t", "value")
    wf.connect("t", "VALUE", "c", "value")
    executor = Executor(registry, sink=events.append)
    first = executor.run(wf)
    said = [(e.node_id, e.level, e.text) for e in of_type(events, NodeMessage)]
    events.clear()
    second = executor.run(wf)
    assert first.status == second.status == "finished" and runs == [3]
    assert said == [("n", "warning", "3 is odd"), ("t", "info", "fine")]
    assert [(e.run_id, e.node_id, e.level, e.text) for e in of_type(events, NodeMessage)] == [
        (second.run_id, *message) for message in said]
