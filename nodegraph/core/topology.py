"""Graph algorithms shared by the validator and the executor: bypass resolution, cycles, topological order."""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping

from nodegraph.core.graph import Link, Workflow
from nodegraph.core.registry import NodeRegistry
from nodegraph.core.types import types_compatible


class Unresolvable(Exception):
    """A link whose value cannot exist in a run (its source is muted, or bypassed with nothing to pass through)."""


def resolve_source(workflow: Workflow, registry: NodeRegistry, link: Link) -> tuple[str, str]:
    """The (node id, output name) that really produces the value on `link`, looking through bypassed nodes.

    A bypassed node hands each output the value of its input of the same name (ignoring case) when types allow,
    else of its first linked input of a compatible type. Raises :class:`Unresolvable` with the reason when no value
    can arrive (a muted source, or a bypassed node with no matching input).
    """
    seen: set[str] = set()
    node_id, output = link.from_node, link.from_output
    while True:
        node = workflow.nodes.get(node_id)
        if node is None:
            raise Unresolvable(f"node {node_id!r} does not exist")
        if node.mode == "normal":
            return node_id, output
        if node.mode == "mute":
            raise Unresolvable(f"its source node {node_id!r} is muted")
        if node_id in seen:
            raise Unresolvable(f"bypassed nodes form a cycle at {node_id!r}")
        seen.add(node_id)
        node_def = registry.get(node.type)
        out_spec = node_def.output(output) if node_def else None
        if out_spec is None:
            raise Unresolvable(f"bypassed node {node_id!r} has no output {output!r}")
        passing = _pass_through_link(workflow, node_def, node_id, output, out_spec.type)
        if passing is None:
            raise Unresolvable(f"bypassed node {node_id!r} has no linked {out_spec.type} input to pass through")
        node_id, output = passing.from_node, passing.from_output


def _pass_through_link(workflow: Workflow, node_def, node_id: str, output: str, output_type: str) -> Link | None:
    candidates = [spec for spec in node_def.inputs if types_compatible(spec.type, output_type)]
    candidates.sort(key=lambda spec: spec.name.lower() != output.lower())
    for spec in candidates:
        links = workflow.links_into(node_id, spec.name)
        if links:
            return links[0]
    return None


def find_cycles(nodes: Iterable[str], edges: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """Each cycle among `nodes` (edges: node -> successors), as a closed path like ``[a, b, c, a]``.

    One cycle is reported per strongly connected component (Tarjan's algorithm, iterative so large graphs cannot
    overflow the stack).
    """
    order = list(nodes)
    rank = {node: i for i, node in enumerate(order)}
    successors = {node: [s for s in edges.get(node, ()) if s in rank] for node in order}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    cycles: list[list[str]] = []
    counter = 0
    for root in order:
        if root in index:
            continue
        work = [(root, iter(successors.get(root, ())))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(successors.get(child, ()))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1 or node in successors.get(node, ()):
                    cycles.append(_cycle_path(set(component), successors, rank))
    return cycles


def _cycle_path(component: set[str], successors: Mapping[str, list[str]], rank: Mapping[str, int]) -> list[str]:
    start = min(component, key=rank.__getitem__)
    path, position = [start], {start: 0}
    node = start
    while True:
        node = next(s for s in successors[node] if s in component)
        if node in position:
            return path[position[node]:] + [node]
        position[node] = len(path)
        path.append(node)


def topological_order(nodes: Iterable[str], dependencies: Mapping[str, Iterable[str]]) -> list[str]:
    """Order `nodes` so that each comes after its dependencies; ties keep the given order (stable, deterministic).

    Raises ValueError when the dependencies hold a cycle (the validator reports cycles before this is reached).
    """
    order = list(nodes)
    rank = {node: i for i, node in enumerate(order)}
    waiting = {node: {d for d in dependencies.get(node, ()) if d in rank} for node in order}
    users: dict[str, list[str]] = {node: [] for node in order}
    for node, deps in waiting.items():
        for dep in deps:
            users[dep].append(node)
    ready = [(rank[node], node) for node, deps in waiting.items() if not deps]
    heapq.heapify(ready)
    result = []
    while ready:
        _, node = heapq.heappop(ready)
        result.append(node)
        for user in users[node]:
            waiting[user].discard(node)
            if not waiting[user]:
                heapq.heappush(ready, (rank[user], user))
    if len(result) != len(order):
        raise ValueError("the graph has a cycle")
    return result
