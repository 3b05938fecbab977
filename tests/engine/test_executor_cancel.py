"""The executor's progress events and cancellation: from another thread, between nodes, before the start."""

from __future__ import annotations

import threading

import pytest

from nodegraph.core import Workflow
from nodegraph.engine import (
    CancelToken,
    Executor,
    NodeFinished,
    NodeStarted,
    Progress,
    RunCancelled,
    RunFailed,
    RunFinished,
)
from tests.engine.helpers import chain, of_type, started


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
