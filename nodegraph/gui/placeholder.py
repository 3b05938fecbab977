"""Placeholder nodes on the canvas: a node of the core graph whose type has no nodegraph equivalent (a ComfyUI node
kept by an import, or a node of a pack that is not installed) is drawn dark red, titled "<type> (missing)", with the
ports its links and ComfyUI's port lists name, so the graph around it stays readable. Its values are kept verbatim in
the core graph and cannot be edited here: the node has no widgets."""

from __future__ import annotations

from typing import Any

from NodeGraphQt import BaseNode

from nodegraph.core.graph import NodeInstance, Workflow
from nodegraph.core.registry import NodeRegistry
from nodegraph.gui.widgets import IDENTIFIER, _NodeItem, port_color

#: The body and border colours of a placeholder node (normal nodes are near-black with a grey border).
PLACEHOLDER_COLOUR = (105, 28, 28, 255)
PLACEHOLDER_BORDER = (230, 80, 80, 255)
#: Ports whose type nothing tells (no port of ours at the other end of a link).
UNKNOWN_PORT_COLOUR = (150, 150, 150)


def is_placeholder(node: NodeInstance, registry: NodeRegistry) -> bool:
    """True when `node`'s type is not in `registry`: it is shown as a placeholder."""
    return registry.get(node.type) is None


def placeholder_title(node: NodeInstance) -> str:
    """The canvas title of a placeholder: its type marked missing (with the node's own title, when it has one)."""
    return f"{node.title} ({node.type}, missing)" if node.title else f"{node.type} (missing)"


def placeholder_tooltip(node: NodeInstance) -> str:
    """What a placeholder is and what it keeps: the type, and its values."""
    comfy = node.extra.get("comfyui")
    if isinstance(comfy, dict):
        text = (f"ComfyUI node type {node.type} has no nodegraph equivalent; it is kept with its values and links. "
                "It cannot run: replace it or remove it to run the workflow.")
        values = comfy.get("widgets_values", node.inputs or None)
    else:
        text = (f"Node type {node.type} is not known here (is its node pack installed?); it is kept with its values "
                "and links.")
        values = node.inputs or None
    if values:
        shown = repr(values)
        text += f"\nValues: {shown if len(shown) <= 300 else shown[:297] + '…'}"
    return text


def _names(listed: Any) -> list[str]:
    return [name for name in listed if isinstance(name, str) and name] if isinstance(listed, list) else []


def placeholder_ports(node: NodeInstance, workflow: Workflow) -> tuple[list[str], list[str]]:
    """The input and output port names of a placeholder: ComfyUI's port lists (``extra["comfyui"]``), then any other
    name a link to or from it uses, each once, in order."""
    comfy = node.extra.get("comfyui") if isinstance(node.extra.get("comfyui"), dict) else {}
    inputs, outputs = _names(comfy.get("inputs")), _names(comfy.get("outputs"))
    for link in workflow.links:
        if link.to_node == node.id and link.to_input not in inputs:
            inputs.append(link.to_input)
        if link.from_node == node.id and link.from_output not in outputs:
            outputs.append(link.from_output)
    return inputs, outputs


def _port_types(node: NodeInstance, workflow: Workflow, registry: NodeRegistry) -> dict[tuple[str, str], str]:
    """("in"/"out", port name) -> the type of the port of ours at the other end of a link, where there is one."""
    types: dict[tuple[str, str], str] = {}
    for link in workflow.links:
        if link.to_node == node.id and link.from_node in workflow:
            node_def = registry.get(workflow.node(link.from_node).type)
            spec = node_def.output(link.from_output) if node_def else None
            if spec is not None:
                types[("in", link.to_input)] = spec.type
        elif link.from_node == node.id and link.to_node in workflow:
            node_def = registry.get(workflow.node(link.to_node).type)
            spec = node_def.input(link.to_input) if node_def else None
            if spec is not None:
                types.setdefault(("out", link.from_output), spec.type)
    return types


class _PlaceholderItem(_NodeItem):
    """The node item of a placeholder: its tooltip says why it is there (NodeGraphQt rewrites a node's tooltip at
    every layout)."""

    placeholder_tooltip = ""

    def _tooltip_disable(self, state: bool) -> None:
        self.setToolTip(self.placeholder_tooltip)


class PlaceholderNode(BaseNode):
    """A NodeGraphQt node standing for a core node of an unknown type. It is never registered with the graph (so
    no search or menu offers it); the adapter builds one per placeholder with :func:`make_placeholder_view`."""

    __identifier__ = IDENTIFIER
    NODE_NAME = "Missing node"
    node_def = None  # a core node, but without a schema: the adapter recognises it by this
    placeholder = True

    def __init__(self) -> None:
        super().__init__(_PlaceholderItem)


def make_placeholder_view(node: NodeInstance, workflow: Workflow, registry: NodeRegistry) -> PlaceholderNode:
    """A placeholder view of `node`, with its ports and colours, ready for ``graph.add_node``."""
    view = PlaceholderNode()
    view.NODE_NAME = placeholder_title(node)
    view.model.name = view.NODE_NAME
    view.model.color = PLACEHOLDER_COLOUR
    view.model.border_color = PLACEHOLDER_BORDER
    view.view.placeholder_tooltip = placeholder_tooltip(node)
    types = _port_types(node, workflow, registry)
    inputs, outputs = placeholder_ports(node, workflow)
    for name in inputs:
        kind = types.get(("in", name))
        view.add_input(name, color=port_color(kind) if kind else UNKNOWN_PORT_COLOUR)
    for name in outputs:
        kind = types.get(("out", name))
        view.add_output(name, color=port_color(kind) if kind else UNKNOWN_PORT_COLOUR)
    return view
