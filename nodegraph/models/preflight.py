"""Pre-flight checks across nodes: an add-on (LoRA, embedding, hypernetwork) made for another model line than the
checkpoint it is wired to is reported before anything runs, naming the node and port."""

from __future__ import annotations

from pathlib import Path

from nodegraph.core.graph import Workflow
from nodegraph.core.registry import NodeRegistry
from nodegraph.core.topology import Unresolvable, resolve_source
from nodegraph.core.validate import Problem
from nodegraph.models.discovery import ModelFolders
from nodegraph.models.errors import ModelError
from nodegraph.models.families import FAMILIES
from nodegraph.models.identify import ModelInfo, identify
from nodegraph.models.safe_load import is_large_pickle

#: add-on node type → (its file input, folder kind, the input leading back to the checkpoint, what it is)
ADDON_NODES = {
    "LoadLoRA": ("lora_name", "loras", "model", "LoRA"),
    "LoadEmbedding": ("embedding_name", "embeddings", "clip", "embedding"),
    "LoadHypernetwork": ("hypernetwork_name", "hypernetworks", "model", "hypernetwork"),
}


def family_problems(workflow: Workflow, registry: NodeRegistry, folders: ModelFolders) -> list[Problem]:
    """Add-ons whose model line differs from the checkpoint upstream of them."""
    problems = []
    infos: dict[Path, ModelInfo | None] = {}
    for node in workflow:
        if node.type not in ADDON_NODES or node.mode != "normal":
            continue
        file_input, kind, upstream_input, what = ADDON_NODES[node.type]
        checkpoint = _upstream_checkpoint(workflow, registry, node.id, upstream_input)
        name = node.inputs.get(file_input)
        if checkpoint is None or not name:
            continue
        addon = _info(infos, folders, kind, name)
        model = _info(infos, folders, "checkpoints", checkpoint)
        if addon is None or model is None or model.family not in FAMILIES or addon.family == "unknown":
            continue
        base = FAMILIES[model.family].base
        if addon.family != base:
            problems.append(Problem("wrong_family", f"{name} is a {what} for {addon.family.upper()} models, but the "
                                                    f"checkpoint {checkpoint} is {FAMILIES[model.family].label}",
                                    node.id, file_input))
    return problems


def _upstream_checkpoint(workflow: Workflow, registry: NodeRegistry, node_id: str, input_name: str) -> str | None:
    """The ckpt_name of the Load Checkpoint feeding `input_name`, following chains of add-on nodes."""
    seen = set()
    while node_id not in seen:
        seen.add(node_id)
        links = workflow.links_into(node_id, input_name)
        if not links:
            return None
        try:
            source, _ = resolve_source(workflow, registry, links[0])
        except Unresolvable:
            return None
        node = workflow.nodes[source]
        if node.type == "LoadCheckpoint":
            return node.inputs.get("ckpt_name")
        if node.type not in ADDON_NODES:
            return None
        node_id, input_name = source, ADDON_NODES[node.type][2]
    return None


def _info(cache: dict[Path, ModelInfo | None], folders: ModelFolders, kind: str, name: str) -> ModelInfo | None:
    try:
        path = folders.resolve(kind, name)
    except ModelError:
        return None  # reported as a missing file by validation
    if path not in cache:
        try:  # a multi-GB pickle is not unpickled just to compare families: the run checks it
            cache[path] = None if is_large_pickle(path) else identify(path)
        except ModelError:
            cache[path] = None  # the loader node reports an unreadable file when it runs
    return cache[path]


def model_line_of(path: Path) -> str | None:
    """The model line (``sd1``, ``sd2``, ``sdxl``) a ``.safetensors`` checkpoint or add-on is for, from its header
    alone (never unpickles, never imports torch: safe on a UI thread); None when unknown or not a safetensors file."""
    if path.suffix.lower() != ".safetensors":
        return None
    try:
        info = identify(path)
    except (ModelError, OSError):
        return None
    if info.family in FAMILIES:
        return FAMILIES[info.family].base
    return info.family if info.family != "unknown" else None


def sort_for_model_line(workflow: Workflow, registry: NodeRegistry, folders: ModelFolders, node_id: str,
                        names: list[str]) -> tuple[list[str], list[tuple[str, str]], str | None]:
    """Split the add-on files `names` of node `node_id` (a LoRA, embedding or hypernetwork loader) into those that
    fit the checkpoint wired to it and those made for another model line: ``(fitting, [(name, line)], line)``.
    Files whose line cannot be read cheaply count as fitting; without a known checkpoint all fit."""
    node = workflow.nodes.get(node_id)
    if node is None or node.type not in ADDON_NODES:
        return names, [], None
    _, kind, upstream_input, _ = ADDON_NODES[node.type]
    checkpoint = _upstream_checkpoint(workflow, registry, node_id, upstream_input)
    line = None
    if checkpoint:
        try:
            line = model_line_of(folders.resolve("checkpoints", checkpoint))
        except ModelError:
            line = None
    if line is None:
        return names, [], None
    fitting, other = [], []
    for name in names:
        try:
            addon_line = model_line_of(folders.resolve(kind, name))
        except ModelError:
            addon_line = None
        if addon_line is None or addon_line == line:
            fitting.append(name)
        else:
            other.append((name, addon_line))
    return fitting, other, line
