"""Positions for imported graphs that carry none (ComfyUI's API form, AUTOMATIC1111 infotext): columns by depth
from the sources, left to right, so the canvas shows the flow the way users draw it."""

from __future__ import annotations

from nodegraph.core.graph import Workflow, natural_key
from nodegraph.core.topology import topological_order

COLUMN_WIDTH = 320
ROW_HEIGHT = 220


def auto_layout(workflow: Workflow, origin: tuple[float, float] = (0, 0)) -> None:
    """Give every node without a ``ui.pos`` one: its column is the length of the longest chain of links feeding it,
    its row the order of node ids within the column. Nodes that have a position keep it."""
    feeders: dict[str, set[str]] = {node_id: set() for node_id in workflow.nodes}
    for link in workflow.links:
        if link.from_node in feeders and link.to_node in feeders and link.from_node != link.to_node:
            feeders[link.to_node].add(link.from_node)
    try:
        order = topological_order(sorted(feeders, key=lambda n: (natural_key(n), n)), feeders)
    except ValueError:  # a cycle (validation reports it): one column
        order = []
    depth = {node_id: 0 for node_id in feeders}
    for node_id in order:
        depth[node_id] = max((depth[f] + 1 for f in feeders[node_id]), default=0)

    rows: dict[int, int] = {}
    for node_id in sorted(workflow.nodes, key=lambda n: (natural_key(n), n)):
        node = workflow.nodes[node_id]
        column = depth[node_id]
        row = rows.get(column, 0)
        rows[column] = row + 1
        if "pos" not in node.ui:
            node.ui["pos"] = [origin[0] + column * COLUMN_WIDTH, origin[1] + row * ROW_HEIGHT]
