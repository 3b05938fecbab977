"""Pre-flight checks across nodes, before any checkpoint loads: an add-on file (LoRA/LyCORIS, embedding,
hypernetwork, upscale model, ControlNet) that cannot be applied — unreadable or of no known format, of another kind
than its node loads, of a recognised but unsupported format, or made for another model line than the checkpoint it is
wired to — is reported naming the node and port. Only file headers are read (large pickles are left to the run)."""

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
    "LoadLoRAModelOnly": ("lora_name", "loras", "model", "LoRA"),
    "LoadEmbedding": ("embedding_name", "embeddings", "clip", "embedding"),
    "LoadHypernetwork": ("hypernetwork_name", "hypernetworks", "model", "hypernetwork"),
}
_IDENTIFIED_AS = {"loras": "lora", "embeddings": "embedding", "hypernetworks": "hypernetwork"}
#: loader node type → (its file input, folder kind, the kind identify() must find, what it is); the ones not in
#: ADDON_NODES are checked for kind and support only
FILE_NODES = {
    **{node_type: (file_input, kind, _IDENTIFIED_AS[kind], what)
       for node_type, (file_input, kind, _, what) in ADDON_NODES.items()},
    "LoadUpscaleModel": ("model_name", "upscale_models", "upscale_model", "upscale model"),
    "LoadControlNet": ("control_net_name", "controlnet", "controlnet", "ControlNet"),
}


def family_problems(workflow: Workflow, registry: NodeRegistry, folders: ModelFolders) -> list[Problem]:
    """Add-on files that cannot be applied (unreadable, wrong kind, unsupported format) and add-ons whose model line
    differs from the checkpoint upstream of them."""
    problems = []
    infos: dict[Path, ModelInfo | ModelError | None] = {}
    for node in workflow:
        if node.type not in FILE_NODES or node.mode != "normal":
            continue
        file_input, folder_kind, expected_kind, what = FILE_NODES[node.type]
        name = node.inputs.get(file_input)
        if not isinstance(name, str) or not name:
            continue
        addon = _info(infos, folders, folder_kind, name)
        if isinstance(addon, ModelError):
            problems.append(Problem("invalid_value", str(addon), node.id, file_input))
            continue
        if addon is None:
            continue
        if addon.kind != expected_kind:
            article = "an" if addon.kind[0] in "aeiou" else "a"
            problems.append(Problem("invalid_value", f"{name} is {article} {addon.kind.replace('_', ' ')}, not "
                                                     f"{'an' if what[0] in 'aeiouAEIOU' else 'a'} {what}",
                                    node.id, file_input))
            continue
        if addon.unsupported:
            problems.append(Problem("invalid_value", f"{name}: {addon.unsupported}", node.id, file_input))
            continue
        if node.type not in (*ADDON_NODES, "LoadControlNet") or addon.family == "unknown":
            continue
        checkpoint = (_controlnet_checkpoint(workflow, registry, node.id) if node.type == "LoadControlNet" else
                      _upstream_checkpoint(workflow, registry, node.id, ADDON_NODES[node.type][2]))
        model = _info(infos, folders, "checkpoints", checkpoint) if checkpoint else None
        if not isinstance(model, ModelInfo) or model.family not in FAMILIES:
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
            name = node.inputs.get("ckpt_name")
            return name if isinstance(name, str) and name else None  # other values are validation's to report
        if node.type not in ADDON_NODES:
            return None
        node_id, input_name = source, ADDON_NODES[node.type][2]
    return None


#: conditioning nodes a ControlNet's conditioning passes through: node type → {output: the input it comes from}
_CONDITIONING_PATHS = {"ApplyControlNet": {"positive": "positive", "negative": "negative"},
                       "ApplyControlNetSimple": {"CONDITIONING": "conditioning"}}


def _controlnet_checkpoint(workflow: Workflow, registry: NodeRegistry, node_id: str) -> str | None:
    """The ckpt_name of the checkpoint whose prompts a Load ControlNet node's ControlNet is applied to: from each
    Apply ControlNet it feeds, back along the conditioning (through other Apply ControlNet nodes) to the CLIP Text
    Encode, and from its clip to the Load Checkpoint."""
    for link in workflow.links:
        target = workflow.nodes.get(link.to_node)
        if link.from_node != node_id or target is None or target.type not in _CONDITIONING_PATHS:
            continue
        current, port, seen = target.id, next(iter(_CONDITIONING_PATHS[target.type].values())), set()
        while current not in seen:
            seen.add(current)
            links = workflow.links_into(current, port)
            try:
                source, output = resolve_source(workflow, registry, links[0]) if links else (None, None)
            except Unresolvable:
                break
            node = workflow.nodes.get(source) if source else None
            if node is None:
                break
            if node.type == "CLIPTextEncode":
                return _upstream_checkpoint(workflow, registry, node.id, "clip")
            if node.type not in _CONDITIONING_PATHS or output not in _CONDITIONING_PATHS[node.type]:
                break
            current, port = node.id, _CONDITIONING_PATHS[node.type][output]
    return None


def _info(cache: dict[Path, ModelInfo | ModelError | None], folders: ModelFolders, kind: str,
          name: str) -> ModelInfo | ModelError | None:
    """What the file is, the reason it cannot be read, or None when that is left to others (a missing file is
    reported by validation; a multi-GB pickle is not unpickled just to check it: the run does)."""
    try:
        path = folders.resolve(kind, name)
    except (ModelError, ValueError, OSError):
        return None
    if path not in cache:
        try:
            cache[path] = None if is_large_pickle(path) else identify(path)
        except ModelError as error:
            cache[path] = error
        except OSError as error:
            cache[path] = ModelError(path, f"cannot be read ({error.strerror or error})")
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
