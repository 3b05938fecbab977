"""Workflow format migrations: each step turns a document of version N into version N+1.

Version 0 is the pre-release draft format, kept readable so that early files still open:
``{"format": "nodegraph-workflow", "version": 0, "nodes": [{"id", "type", "inputs", "pos", "title", "bypass"}],
"links": [[from_node, from_output, to_node, to_input], ...]}``.
Version 1 is the first public format (see docs/workflow-format.md).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from nodegraph.core.errors import WorkflowError
from nodegraph.core.graph import Workflow
from nodegraph.core.registry import NodeRegistry
from nodegraph.core.validate import shorten, shorten_text

#: The format version this build writes.
CURRENT_VERSION = 1


def _v0_to_v1(doc: dict[str, Any]) -> dict[str, Any]:
    nodes_in = doc.get("nodes", [])
    if not isinstance(nodes_in, list):
        raise WorkflowError("expected a list in a version 0 file", "nodes")
    nodes: dict[str, Any] = {}
    for index, node in enumerate(nodes_in):
        where = f"nodes[{index}]"
        if not isinstance(node, dict) or not isinstance(node.get("id"), str):
            raise WorkflowError("expected an object with a string 'id'", where)
        entry = {key: value for key, value in node.items() if key not in ("id", "pos", "bypass")}
        if "pos" in node:
            entry["ui"] = {"pos": node["pos"]}
        if node.get("bypass") is True:
            entry["mode"] = "bypass"
        if node["id"] in nodes:
            raise WorkflowError(f"node id {shorten(node['id'])} appears twice", where)
        nodes[node["id"]] = entry
    links_in = doc.get("links", [])
    if not isinstance(links_in, list):
        raise WorkflowError("expected a list", "links")
    links = []
    for index, link in enumerate(links_in):
        if not isinstance(link, list) or len(link) != 4:
            raise WorkflowError("expected [from_node, from_output, to_node, to_input]", f"links[{index}]")
        links.append({"from": link[:2], "to": link[2:]})
    upgraded = {key: value for key, value in doc.items() if key not in ("nodes", "links", "version")}
    upgraded.update(version=1, nodes=nodes, links=links)
    return upgraded


#: ``MIGRATIONS[n]`` upgrades a version-n document to version n+1.
MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {0: _v0_to_v1}


def migrate(doc: dict[str, Any]) -> dict[str, Any]:
    """Bring a parsed document to :data:`CURRENT_VERSION`; refuse versions this build cannot read."""
    version = doc.get("version")
    if isinstance(version, bool) or not isinstance(version, int):
        raise WorkflowError("expected an integer format version", "version")
    if version > CURRENT_VERSION:
        raise WorkflowError(
            f"this workflow was saved by a newer nodegraph (format version {shorten(version)}); this build reads "
            f"versions up to {CURRENT_VERSION}: update nodegraph to open it", "version")
    if version < min(MIGRATIONS, default=CURRENT_VERSION):
        raise WorkflowError(f"format version {shorten(version)} is not a version nodegraph ever wrote", "version")
    while version < CURRENT_VERSION:
        doc = MIGRATIONS[version](doc)
        version += 1
    return doc


def upgrade_node_versions(workflow: Workflow, registry: NodeRegistry) -> list[str]:
    """Bring each node's saved inputs up to its type's current version using the type's upgraders.

    Nodes saved by a newer version than this build has are left untouched (validation reports them). Returns the
    ids of the nodes that were upgraded.
    """
    upgraded = []
    for node in workflow:
        node_def = registry.get(node.type)
        if node_def is None or node.type_version is None or node.type_version >= node_def.version:
            continue
        try:
            node.inputs = node_def.upgrade_inputs(node.inputs, node.type_version)
        except Exception as error:  # an upgrader is pack code: its failure names the node instead of crashing
            raise WorkflowError(f"cannot upgrade from version {shorten(node.type_version)}: "
                                f"{shorten_text(str(error))}", f"nodes.{shorten_text(node.id)}") from error
        node.type_version = node_def.version
        upgraded.append(node.id)
    return upgraded
