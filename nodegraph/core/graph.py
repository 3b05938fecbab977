"""The workflow graph: node instances keyed by stable string ids, and links from an output name to an input name.

This is the single source of truth that the executor runs and the canvas shows. It knows nothing about node types
(an unknown type is simply kept, so a placeholder survives load and save); checking against the registry is the
validator's job.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from nodegraph.core.schema import NODE_MODES


@dataclass(frozen=True)
class Link:
    """An edge: output `from_output` of node `from_node` feeds input `to_input` of node `to_node`."""

    from_node: str
    from_output: str
    to_node: str
    to_input: str

    def __str__(self) -> str:
        return f"{self.from_node}.{self.from_output} -> {self.to_node}.{self.to_input}"


@dataclass
class NodeInstance:
    """One node placed in a workflow.

    Args:
        id: stable string id, unique in the workflow.
        type: the node type id (may be unknown to the registry: then the node is a placeholder).
        inputs: literal values by input name; a missing literal takes the schema default.
        title: a user-given title, or None for the type's display name.
        mode: "normal", "bypass" (outputs pass matching inputs through) or "mute" (does not run).
        ui: canvas state (pos, size, collapsed, color); the core never interprets it.
        type_version: the node type's schema version the inputs were saved with (None: the current one).
        extra: keys this build does not know, kept so that saving loses nothing.
    """

    id: str
    type: str
    inputs: dict[str, Any] = field(default_factory=dict)
    title: str | None = None
    mode: str = "normal"
    ui: dict[str, Any] = field(default_factory=dict)
    type_version: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class Workflow:
    """A graph of :class:`NodeInstance` objects and :class:`Link` objects, plus free-form `meta` data."""

    def __init__(self, nodes: list[NodeInstance] | None = None, links: list[Link] | None = None,
                 meta: dict[str, Any] | None = None, extra: dict[str, Any] | None = None):
        self.nodes: dict[str, NodeInstance] = {}
        for node in nodes or ():
            if node.id in self.nodes:
                raise ValueError(f"duplicate node id {node.id!r}")
            self.nodes[node.id] = node
        self.links: list[Link] = list(links or ())
        self.meta: dict[str, Any] = dict(meta or {})
        self.extra: dict[str, Any] = dict(extra or {})

    # --- queries ------------------------------------------------------------------------------------------------
    def __contains__(self, node_id: object) -> bool:
        return node_id in self.nodes

    def __iter__(self) -> Iterator[NodeInstance]:
        return iter(self.nodes.values())

    def __len__(self) -> int:
        return len(self.nodes)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Workflow):
            return NotImplemented
        same_links = sorted(self.links, key=link_sort_key) == sorted(other.links, key=link_sort_key)
        return self.nodes == other.nodes and same_links and self.meta == other.meta and self.extra == other.extra

    def __repr__(self) -> str:
        return f"Workflow({len(self.nodes)} nodes, {len(self.links)} links)"

    def node(self, node_id: str) -> NodeInstance:
        """The node with this id; KeyError naming it when absent."""
        try:
            return self.nodes[node_id]
        except KeyError:
            raise KeyError(f"no node {node_id!r} in the workflow") from None

    def links_into(self, node_id: str, input_name: str | None = None) -> list[Link]:
        """Links ending at `node_id` (and at `input_name` when given), in file order."""
        return [link for link in self.links
                if link.to_node == node_id and (input_name is None or link.to_input == input_name)]

    def links_from(self, node_id: str) -> list[Link]:
        """Links starting at `node_id`, in file order."""
        return [link for link in self.links if link.from_node == node_id]

    def copy(self) -> Workflow:
        """A deep copy: editing it never changes this workflow."""
        return copy.deepcopy(self)

    # --- edits (the GUI's undo commands call these) -------------------------------------------------------------
    def new_id(self, type_id: str) -> str:
        """A fresh, readable node id derived from the type id ("unetsampler", "unetsampler_2", …)."""
        base = re.sub(r"[^a-z0-9_]", "", type_id.lower()) or "node"
        candidate, n = base, 1
        while candidate in self.nodes:
            n += 1
            candidate = f"{base}_{n}"
        return candidate

    def add_node(self, type_id: str, node_id: str | None = None, **fields: Any) -> NodeInstance:
        """Add a node of `type_id` (with a fresh id unless given) and return it."""
        node_id = node_id or self.new_id(type_id)
        if node_id in self.nodes:
            raise ValueError(f"node id {node_id!r} is already used")
        if fields.get("mode", "normal") not in NODE_MODES:
            raise ValueError(f"mode must be one of {', '.join(NODE_MODES)}")
        node = NodeInstance(id=node_id, type=type_id, **fields)
        self.nodes[node_id] = node
        return node

    def remove_node(self, node_id: str) -> list[Link]:
        """Remove a node and every link touching it; return those links (so an undo can restore them)."""
        self.node(node_id)
        removed = [link for link in self.links if node_id in (link.from_node, link.to_node)]
        self.links = [link for link in self.links if node_id not in (link.from_node, link.to_node)]
        del self.nodes[node_id]
        return removed

    def connect(self, from_node: str, from_output: str, to_node: str, to_input: str) -> list[Link]:
        """Link an output to an input, replacing whatever fed that input; return the replaced links."""
        self.node(from_node)
        self.node(to_node)
        replaced = self.disconnect(to_node, to_input)
        self.links.append(Link(from_node, from_output, to_node, to_input))
        return replaced

    def disconnect(self, to_node: str, to_input: str) -> list[Link]:
        """Remove the links into one input; return them."""
        removed = self.links_into(to_node, to_input)
        self.links = [link for link in self.links if link not in removed]
        return removed

    def set_input(self, node_id: str, name: str, value: Any) -> None:
        """Set a literal input value."""
        self.node(node_id).inputs[name] = value

    def set_mode(self, node_id: str, mode: str) -> None:
        """Set a node's mode: "normal", "bypass" or "mute"."""
        if mode not in NODE_MODES:
            raise ValueError(f"mode must be one of {', '.join(NODE_MODES)}")
        self.node(node_id).mode = mode


def natural_key(text: str) -> tuple:
    """Sort key that orders "node2" before "node10" (pair it with the text itself to break ties like "n1"/"n01")."""
    # re.split with a group alternates text and digit runs, so odd positions are always decimal digits (str.isdigit
    # would also accept "²", which int() refuses).
    return tuple(int(part) if i % 2 else part for i, part in enumerate(re.split(r"([0-9]+)", text)))


def link_sort_key(link: Link) -> tuple:
    """The order links are saved in: by target node and input, so a file diffs cleanly."""
    return (natural_key(link.to_node), link.to_node, link.to_input, natural_key(link.from_node), link.from_node,
            link.from_output)
