"""Parsing ``--set NODE.INPUT=VALUE`` and ``--sweep NODE.INPUT=V1,V2,...`` into typed input values."""

from __future__ import annotations

import itertools
from typing import Any

from nodegraph.core.errors import NodegraphError
from nodegraph.core.graph import Workflow
from nodegraph.core.registry import NodeRegistry
from nodegraph.core.types import PortType

_TRUE, _FALSE = {"true", "1", "yes", "on"}, {"false", "0", "no", "off"}


class UsageError(NodegraphError):
    """A command-line argument is wrong (exit code 2)."""


def parse_target(option: str, text: str) -> tuple[str, str, str]:
    """Split ``NODE.INPUT=VALUE`` into (node id, input name, value text); node ids may contain dots."""
    target, sep, value = text.partition("=")
    node_id, dot, input_name = target.rpartition(".")
    if not sep or not dot or not node_id or not input_name:
        raise UsageError(f"{option} {text!r}: expected NODE.INPUT=VALUE")
    return node_id, input_name, value


def coerce(workflow: Workflow, registry: NodeRegistry, option: str, node_id: str, input_name: str,
           text: str) -> Any:
    """Turn the text of an override into the value type the input declares, or raise :class:`UsageError`."""
    where = f"{option} {node_id}.{input_name}"
    node = workflow.nodes.get(node_id)
    if node is None:
        raise UsageError(f"{where}: the workflow has no node {node_id!r}")
    node_def = registry.get(node.type)
    if node_def is None:
        raise UsageError(f"{where}: node {node_id!r} has unknown type {node.type!r}")
    spec = node_def.input(input_name)
    if spec is None:
        raise UsageError(f"{where}: {node.type} has no input {input_name!r}")
    if not spec.is_literal:
        raise UsageError(f"{where}: takes a {spec.type} link, not a value")
    try:
        if spec.type == PortType.INT:
            value: Any = int(text)
        elif spec.type == PortType.FLOAT:
            value = float(text)
        elif spec.type == PortType.BOOLEAN:
            if text.lower() not in _TRUE | _FALSE:
                raise ValueError
            value = text.lower() in _TRUE
        else:
            value = text
    except ValueError:
        raise UsageError(f"{where}: {text!r} is not a valid {spec.type}") from None
    why = spec.check_value(value)
    if why:
        raise UsageError(f"{where}: {why}")
    return value


def override_sets(workflow: Workflow, registry: NodeRegistry, sets: list[str],
                  sweeps: list[str]) -> list[dict[tuple[str, str], Any]]:
    """The overrides of every run: the ``--set`` values plus one combination of the ``--sweep`` values per run
    (several sweeps multiply)."""
    fixed: dict[tuple[str, str], Any] = {}
    for text in sets:
        node_id, input_name, value = parse_target("--set", text)
        fixed[(node_id, input_name)] = coerce(workflow, registry, "--set", node_id, input_name, value)
    axes: list[list[tuple[tuple[str, str], Any]]] = []
    for text in sweeps:
        node_id, input_name, values = parse_target("--sweep", text)
        items = values.split(",")
        if not values or any(item == "" for item in items):
            raise UsageError(f"--sweep {text!r}: expected a comma-separated list of values")
        axes.append([((node_id, input_name), coerce(workflow, registry, "--sweep", node_id, input_name, item))
                     for item in items])
    return [{**fixed, **dict(combination)} for combination in itertools.product(*axes)]


def apply_overrides(workflow: Workflow, overrides: dict[tuple[str, str], Any]) -> Workflow:
    """A copy of `workflow` with the overrides set as literal inputs."""
    result = workflow.copy()
    for (node_id, input_name), value in overrides.items():
        result.set_input(node_id, input_name, value)
    return result
