"""Helpers shared by the engine tests: a standard chain workflow and event filters."""

from __future__ import annotations

from nodegraph.core import Workflow
from nodegraph.engine import NodeCached, NodeStarted


def of_type(events, kind):
    """The events of one class, in order."""
    return [e for e in events if isinstance(e, kind)]


def started(events):
    """The ids of the nodes that started running, in order."""
    return [e.node_id for e in of_type(events, NodeStarted)]


def cached_events(events):
    """The ids of the nodes reported as cached, in order."""
    return [e.node_id for e in of_type(events, NodeCached)]


def chain(value=3, factor=2):
    """Number n -> Scale s -> Add a (b unconnected) -> Collect c."""
    wf = Workflow()
    wf.add_node("Number", "n", inputs={"value": value})
    wf.add_node("Scale", "s", inputs={"factor": factor})
    wf.add_node("Add", "a")
    wf.add_node("Collect", "c")
    wf.connect("n", "VALUE", "s", "value")
    wf.connect("s", "VALUE", "a", "a")
    wf.connect("a", "SUM", "c", "value")
    return wf


def collect_value(result, node_id="c"):
    """The value a Collect node received in a finished run."""
    return result.outputs[node_id]["VALUE"]
