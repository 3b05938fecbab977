"""Validation of a workflow against the registry: every problem found, each keyed by node id and port name.

The GUI highlights the node and port of each :class:`Problem`; the CLI prints one per line. Validation never raises
for a bad workflow: problems are data.
"""

from __future__ import annotations

import reprlib
from collections.abc import Callable
from dataclasses import dataclass

from nodegraph.core.graph import Workflow
from nodegraph.core.registry import NodeRegistry
from nodegraph.core.schema import InputSpec, NodeDef
from nodegraph.core.topology import Unresolvable, find_cycles, resolve_source
from nodegraph.core.types import PortType, literal_type_problem, types_compatible

#: ``file_check(spec, value) -> message | None``: says why a file-naming literal does not name a usable file.
FileCheck = Callable[[InputSpec, str], "str | None"]

#: How many characters of a user value a message quotes.
SHOWN_CHARS = 80
#: Integers wider than this many bits do not fit a float (nor, far beyond, Python's int-to-text limit).
_MAX_NUMBER_BITS = 1023

_repr = reprlib.Repr()
_repr.maxlevel, _repr.maxstring, _repr.maxother, _repr.maxlong = 3, SHOWN_CHARS, SHOWN_CHARS, 40
_repr.maxlist = _repr.maxtuple = _repr.maxdict = _repr.maxset = 6


def shorten(value: object, limit: int = SHOWN_CHARS) -> str:
    """The repr of a user value for a message, at most about `limit` characters: a 10 MB string, a 5,000-digit integer
    or a list nested 10,000 deep is quoted by its start and its size, never in full (and never raises)."""
    if isinstance(value, str):
        return repr(value) if len(value) <= limit else f"{value[:limit // 2]!r}… ({len(value)} characters)"
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 3 * limit:
        return f"{'-' if value < 0 else ''}an integer of about {int(value.bit_length() * 0.30103) + 1} digits"
    try:
        text = _repr.repr(value)
    except Exception:  # a value given through the Python API may have any __repr__
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[:limit - 1] + "…"


def shorten_text(text: str, limit: int = SHOWN_CHARS) -> str:
    """`text` unquoted (a name inside a longer message or JSON path), cut like :func:`shorten` cuts it."""
    return text if len(text) <= limit else f"{text[:limit // 2]}… ({len(text)} characters)"


def _shortened(message: str, value: object) -> str:
    """`message` with a long user value it quotes (as repr or as is) replaced by its shortened form."""
    if isinstance(value, str):
        if len(value) <= SHOWN_CHARS:
            return message
        return message.replace(repr(value), shorten(value)).replace(value, shorten_text(value))
    if isinstance(value, int) and not isinstance(value, bool) and (
            3 * SHOWN_CHARS < value.bit_length() <= _MAX_NUMBER_BITS):  # wider ones are refused before (_too_large)
        return message.replace(repr(value), shorten(value))
    return message


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a workflow.

    `code` is one of: unknown_type, newer_version, unknown_input, missing_input, missing_node, missing_port,
    type_mismatch, multiple_links, unresolved_link, cycle, wrong_type, out_of_range, invalid_choice, invalid_value,
    missing_file, no_output.
    """

    code: str
    message: str
    node_id: str | None = None
    port: str | None = None

    def __str__(self) -> str:
        where = []
        if self.node_id is not None:
            where.append(f"node {shorten(self.node_id)}")
        if self.port is not None:
            where.append(f"port {shorten(self.port)}")
        return f"{', '.join(where)}: {self.message}" if where else self.message


def validate(workflow: Workflow, registry: NodeRegistry, *, file_check: FileCheck | None = None,
             require_output: bool = True) -> list[Problem]:
    """Every problem in `workflow`: unknown types, bad literals, bad links, cycles, missing inputs and files.

    `file_check` (from the model layer) checks inputs that name model files; `require_output` reports a workflow
    with no active output node, since running it would do nothing.
    """
    problems: list[Problem] = []
    for node in workflow:
        node_def = registry.get(node.type)
        if node_def is None:
            message = (f"ComfyUI node type {shorten(node.type)} has no nodegraph equivalent (kept as a placeholder "
                       f"with its values and links; replace it or install a node pack that provides it)"
                       if "comfyui" in node.extra else
                       f"unknown node type {shorten(node.type)} (is its node pack installed?)")
            problems.append(Problem("unknown_type", message, node.id))
            continue
        if node.type_version is not None and node.type_version > node_def.version:
            problems.append(Problem(
                "newer_version", f"saved by version {shorten(node.type_version)} of {node.type}; this build has "
                f"version {node_def.version}: update nodegraph or its node pack", node.id))
        literal_problems = _literal_problems(workflow, node.id, node_def, file_check)
        problems += literal_problems
        if node_def.check is not None and not literal_problems:
            problems += _check_hook_problems(workflow, node.id, node_def)
    problems += _link_problems(workflow, registry)
    problems += _cycle_problems(workflow)
    problems += _missing_input_problems(workflow, registry)
    active_defs = [registry.get(node.type) for node in workflow if node.mode == "normal"]
    if require_output and not any(node_def is not None and node_def.output_node for node_def in active_defs):
        problems.append(Problem("no_output", "nothing to run: the workflow has no active output node "
                                             "(such as Save Image or Preview Image)"))
    return problems


def _literal_problems(workflow: Workflow, node_id: str, node_def: NodeDef,
                      file_check: FileCheck | None) -> list[Problem]:
    problems = []
    node = workflow.nodes[node_id]
    linked = {link.to_input for link in workflow.links_into(node_id)}
    for name, value in node.inputs.items():
        spec = node_def.input(name)
        if spec is None:
            problems.append(Problem("unknown_input", f"{node.type} has no input {shorten(name)}", node_id, name))
        elif name in linked:
            continue  # a link overrides the literal; the literal is kept for when the link is removed
        elif not spec.is_literal:
            problems.append(Problem("wrong_type", f"takes a {spec.type} link, not a literal value", node_id, name))
        elif value is None and spec.optional:
            continue
        elif why := _too_large(spec, value):
            problems.append(Problem("out_of_range", why, node_id, name))
        elif why := spec.check_value(value):
            code = ("wrong_type" if literal_type_problem(spec.type, value) else
                    "invalid_choice" if spec.choices else "out_of_range")
            problems.append(Problem(code, _shortened(why, value), node_id, name))
        elif file_check is not None and spec.file_kind and value and (why := file_check(spec, value)):
            problems.append(Problem("missing_file", _shortened(why, value), node_id, name))
    return problems


def _too_large(spec: InputSpec, value: object) -> str | None:
    """Why a number is too large for a numeric input: an integer that no float can hold (the FLOAT checks and the
    run convert to float, and a message could not even print it in full)."""
    if (spec.type in (PortType.INT, PortType.FLOAT) and isinstance(value, int) and not isinstance(value, bool)
            and value.bit_length() > _MAX_NUMBER_BITS):
        return f"{shorten(value)} is too large"
    return None


def _check_hook_problems(workflow: Workflow, node_id: str, node_def: NodeDef) -> list[Problem]:
    node = workflow.nodes[node_id]
    literals = {spec.name: node.inputs.get(spec.name, spec.default) for spec in node_def.literal_inputs}
    try:
        found = node_def.check(**literals) or {}
    except Exception as error:  # pack code: a failing check is reported, never raised
        return [Problem("invalid_value", f"{node.type} could not check its inputs: {error}", node_id)]
    return [Problem("invalid_value", message, node_id, port) for port, message in found.items()]


def _link_problems(workflow: Workflow, registry: NodeRegistry) -> list[Problem]:
    problems = []
    seen_targets: dict[tuple[str, str], int] = {}
    for link in workflow.links:
        source, target = workflow.nodes.get(link.from_node), workflow.nodes.get(link.to_node)
        if target is None:
            problems.append(Problem("missing_node", f"links to node {shorten(link.to_node)}, which does not exist",
                                    link.from_node if source else None, link.from_output if source else None))
            continue
        if source is None:
            problems.append(Problem("missing_node", f"linked from node {shorten(link.from_node)}, which does not "
                                                    "exist",
                                    link.to_node, link.to_input))
            continue
        key = (link.to_node, link.to_input)
        seen_targets[key] = seen_targets.get(key, 0) + 1
        if seen_targets[key] == 2:
            problems.append(Problem("multiple_links", "more than one link feeds this input", *key))
        source_def, target_def = registry.get(source.type), registry.get(target.type)
        out_spec = source_def.output(link.from_output) if source_def else None
        in_spec = target_def.input(link.to_input) if target_def else None
        if source_def and out_spec is None:
            problems.append(Problem("missing_port", f"linked from output {shorten(link.from_output)} of node "
                                    f"{shorten(link.from_node)} ({source.type}), which has no such output", *key))
        if target_def and in_spec is None:
            problems.append(Problem("missing_port", f"{target.type} has no input {shorten(link.to_input)}", *key))
        if out_spec and in_spec and not types_compatible(out_spec.type, in_spec.type):
            problems.append(Problem("type_mismatch", f"expects {in_spec.type}, but output "
                                    f"{shorten(link.from_output)} of node {shorten(link.from_node)} gives "
                                    f"{out_spec.type}", *key))
    return problems


def _cycle_problems(workflow: Workflow) -> list[Problem]:
    edges: dict[str, list[str]] = {node_id: [] for node_id in workflow.nodes}
    for link in workflow.links:
        if link.from_node in edges and link.to_node in edges:
            edges[link.from_node].append(link.to_node)
    return [Problem("cycle", "these links form a cycle: " + " -> ".join(map(shorten_text, cycle)),
                    cycle[0])
            for cycle in find_cycles(workflow.nodes, edges)]


def _missing_input_problems(workflow: Workflow, registry: NodeRegistry) -> list[Problem]:
    """Required inputs that will have no value when their node runs."""
    problems = []
    for node in workflow:
        node_def = registry.get(node.type)
        if node_def is None or node.mode != "normal":
            continue
        for spec in node_def.inputs:
            links = workflow.links_into(node.id, spec.name)
            if links and links[0].from_node not in workflow.nodes:
                continue  # reported as missing_node already
            if links:
                try:
                    resolve_source(workflow, registry, links[0])
                except Unresolvable as why:
                    if not spec.optional:
                        problems.append(Problem("unresolved_link", f"gets no value: {why}", node.id, spec.name))
            elif spec.required and node.inputs.get(spec.name, spec.default) is None:
                what = "a link" if not spec.is_literal else "a value"
                problems.append(Problem("missing_input", f"required input needs {what}", node.id, spec.name))
    return problems
