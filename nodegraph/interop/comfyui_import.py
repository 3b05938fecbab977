"""ComfyUI workflows → nodegraph workflows: the UI form (litegraph: what ComfyUI saves and puts in a PNG's
``workflow`` chunk) and the API form (``{id: {class_type, inputs}}``: the ``prompt`` chunk, or a POST /prompt body).

Node ids are kept (ComfyUI's node 3 is node "3"), so a user can find each node again. Types in
:mod:`nodegraph.interop.comfyui_nodes` become our nodes with their inputs by name; Reroute nodes dissolve into
links; a PrimitiveNode becomes our primitive node of its value type (or, for a choice, the literal it sets);
``Note`` becomes a note node; groups, positions, titles, sizes and modes are kept. Any other type becomes a
placeholder that keeps its type, values and links verbatim (``extra["comfyui"]``), so nothing is dropped and
validation names what is missing.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from nodegraph.core.graph import Link, NodeInstance, Workflow
from nodegraph.interop.comfyui_nodes import (
    BY_COMFY_TYPE,
    BY_OUR_TYPE,
    CONTROL_VALUES,
    MODES,
    PRIMITIVE_NODE,
    PRIMITIVE_TYPES,
    REROUTE_TYPES,
    UI_ONLY,
    NodeMapping,
    comfyui_denoise,
    sampler_warnings,
    use_comfyui_schedules,
)
from nodegraph.interop.layout import auto_layout
from nodegraph.interop.result import ImportResult, InteropError

UI_SOURCE = "ComfyUI workflow (UI format)"
API_SOURCE = "ComfyUI workflow (API format)"


def is_ui_workflow(doc: Any) -> bool:
    """True for a ComfyUI UI-format (litegraph) workflow document."""
    return isinstance(doc, dict) and isinstance(doc.get("nodes"), list) and "links" in doc


def is_api_prompt(doc: Any) -> bool:
    """True for a ComfyUI API-format prompt (every value an object with a ``class_type``)."""
    if isinstance(doc, dict) and isinstance(doc.get("prompt"), dict) and "class_type" not in doc:
        doc = doc["prompt"]  # the body of a POST /prompt request
    if not isinstance(doc, dict) or not doc:
        return False
    nodes = sum(isinstance(v, dict) and isinstance(v.get("class_type"), str) for v in doc.values())
    return nodes * 2 >= len(doc)  # most entries are nodes: a damaged one is then reported by name


# --- the UI form --------------------------------------------------------------------------------------------------
def import_ui(doc: dict[str, Any], *, source: str = UI_SOURCE) -> ImportResult:
    """A nodegraph workflow from a ComfyUI UI-format workflow document."""
    definitions = doc.get("definitions")
    warnings = (["the workflow defines subgraphs, which nodegraph does not have: nodes that use them are kept as "
                 "placeholders"] if isinstance(definitions, dict) and definitions.get("subgraphs") else [])
    nodes = {}
    for index, entry in enumerate(doc["nodes"]):
        if (not isinstance(entry, dict) or not isinstance(entry.get("id"), (int, float, str))
                or isinstance(entry.get("id"), bool) or not isinstance(entry.get("type"), str)):
            raise InteropError(f"nodes[{index}] is not a ComfyUI node (it needs an id and a type)")
        node_id = _id(entry["id"])
        if node_id in nodes:
            raise InteropError(f"node id {node_id} appears twice")
        nodes[node_id] = entry
    links = _ui_links(doc["links"])

    def origin(link_id: Any) -> tuple[str, int] | None:
        """The real source (node id, output slot) of a link, following Reroute chains."""
        seen = set()
        while link_id in links and link_id not in seen:
            seen.add(link_id)
            source_id, slot = links[link_id][0], links[link_id][1]
            source = nodes.get(source_id)
            if source is None or source["type"] not in REROUTE_TYPES:
                return source_id, slot
            inputs = source.get("inputs") or []
            link_id = inputs[0].get("link") if inputs and isinstance(inputs[0], dict) else None
        return None

    workflow = Workflow(meta={"imported_from": source})
    primitive_values: dict[str, Any] = {}
    for node_id, entry in nodes.items():
        with _malformed(node_id, entry):
            comfy_type = entry["type"]
            if comfy_type in REROUTE_TYPES:
                continue
            if comfy_type == PRIMITIVE_NODE:
                node = _primitive_node(node_id, entry, primitive_values)
                if node is None:
                    continue
            else:
                node = _ui_node(node_id, entry, warnings)
            node.ui.update(_ui_state(entry))
            if entry.get("mode") in MODES:
                node.mode = MODES[entry["mode"]]
            workflow.nodes[node_id] = node

    for target_id, entry in nodes.items():
        with _malformed(target_id, entry):
            target = workflow.nodes.get(target_id)
            if target is None:
                continue
            for slot, port in enumerate(entry.get("inputs") or []):
                if not isinstance(port, dict) or port.get("link") is None:
                    continue
                found = origin(port["link"])
                if found is None or found[0] not in nodes:
                    warnings.append(f"node {target_id} ({entry['type']}): input {port.get('name', slot)!r} is linked "
                                    f"to a node that is not in the file; the link is left out")
                    continue
                source_id, source_slot = found
                input_name = _input_name(target, entry, port, slot)
                if source_id in primitive_values:
                    # The value is also kept as the input's literal, for when the link is removed.
                    target.inputs[input_name] = primitive_values[source_id]
                source_node = workflow.nodes.get(source_id)
                if source_node is None:  # a PrimitiveNode of a choice: its value is all there is
                    continue
                output_name = _output_name(source_node, nodes[source_id], source_slot)
                workflow.links.append(Link(source_id, output_name, target_id, input_name))
    use_comfyui_schedules(workflow)
    warnings += sampler_warnings(workflow) + comfyui_denoise(workflow)
    workflow.meta["groups"] = [group for group in map(_group, doc.get("groups") or []) if group]
    if not workflow.meta["groups"]:
        del workflow.meta["groups"]
    warnings += _placeholder_warnings(workflow)
    return ImportResult(workflow, source, warnings)


@contextmanager
def _malformed(node_id: Any, entry: Any) -> Iterator[None]:
    """Turn a malformed node entry's Python error into one message naming the node."""
    try:
        yield
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as error:
        kind = entry.get("type") or entry.get("class_type") if isinstance(entry, dict) else None
        raise InteropError(f"node {node_id}{f' ({kind})' if isinstance(kind, str) else ''} is malformed "
                           f"({type(error).__name__}: {error})") from None


def _id(value: Any) -> str:
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def _ui_links(raw: Any) -> dict[Any, tuple[str, int, str, int]]:
    """Links by id → (origin node, origin slot, target node, target slot); arrays (ComfyUI ≤ 0.4) or objects."""
    if not isinstance(raw, list):
        raise InteropError("'links' must be a list")
    links = {}
    for entry in raw:
        if isinstance(entry, list) and len(entry) >= 5:
            link_id, origin_id, origin_slot, target_id, target_slot = entry[:5]
        elif isinstance(entry, dict):
            link_id, origin_id, origin_slot = entry.get("id"), entry.get("origin_id"), entry.get("origin_slot")
            target_id, target_slot = entry.get("target_id"), entry.get("target_slot")
        else:
            continue
        if origin_id is None or target_id is None or not isinstance(origin_slot, int):
            continue
        links[link_id] = (_id(origin_id), origin_slot, _id(target_id), target_slot)
    return links


def _widget_inputs(mapping: NodeMapping, values: Any, where: str, warnings: list[str]) -> dict[str, Any]:
    """Input values by our names from a node's ``widgets_values`` (a list in ComfyUI's order, or a dict)."""
    if isinstance(values, dict):
        return {mapping.our_input(name): _alias(mapping, name, value) for name, value in values.items()
                if name in mapping.widgets}
    values = list(values or [])
    names = [name for name in mapping.widgets]
    inputs: dict[str, Any] = {}
    i = 0
    for position, name in enumerate(names):
        if i >= len(values):
            break
        value = values[i]
        i += 1
        if name == UI_ONLY:
            continue
        inputs[mapping.our_input(name)] = _alias(mapping, name, value)
        # Frontends that add a control_after_generate value after an integer our table does not mark.
        nxt = names[position + 1] if position + 1 < len(names) else None
        if (isinstance(value, int) and nxt != UI_ONLY and i < len(values) and values[i] in CONTROL_VALUES
                and len(values) - i > len(names) - position - 1):
            i += 1
    if i < len(values):
        warnings.append(f"{where}: {len(values) - i} more widget value(s) than ComfyUI's {mapping.comfy_type} has "
                        f"({values[i:]!r}); left out")
    return inputs


def _alias(mapping: NodeMapping, name: str, value: Any) -> Any:
    return mapping.aliases.get(name, {}).get(value, value) if isinstance(value, str) else value


def _ui_node(node_id: str, entry: dict[str, Any], warnings: list[str]) -> NodeInstance:
    comfy_type = entry["type"]
    mapping = BY_COMFY_TYPE.get(comfy_type)
    title = entry.get("title") if isinstance(entry.get("title"), str) else None
    if mapping is None:
        kept = {key: entry[key] for key in ("widgets_values", "properties") if key in entry}
        kept["inputs"] = [port.get("name") for port in entry.get("inputs") or [] if isinstance(port, dict)]
        kept["outputs"] = [port.get("name") for port in entry.get("outputs") or [] if isinstance(port, dict)]
        return NodeInstance(node_id, comfy_type, {}, title, extra={"comfyui": kept})
    where = f"node {node_id} ({comfy_type})"
    inputs = _widget_inputs(mapping, entry.get("widgets_values"), where, warnings)
    if comfy_type in ("Note", "MarkdownNote") and title is None:
        title = "Note"
    return NodeInstance(node_id, mapping.our_type, inputs, title)


def _primitive_node(node_id: str, entry: dict[str, Any], values: dict[str, Any]) -> NodeInstance | None:
    """Our primitive node for a ComfyUI PrimitiveNode (value remembered in `values` for the inputs it feeds); None
    when no node of ours holds its type (a choice): the value then only becomes the targets' literal."""
    outputs = entry.get("outputs") or [{}]
    widget_values = entry.get("widgets_values") or []
    if not widget_values:
        return None
    values[node_id] = widget_values[0]
    our_type = PRIMITIVE_TYPES.get(outputs[0].get("type") if isinstance(outputs[0], dict) else None)
    if our_type is None:
        return None
    title = entry.get("title") if isinstance(entry.get("title"), str) else None
    return NodeInstance(node_id, our_type, {"value": widget_values[0]}, title)


def _input_name(target: NodeInstance, entry: dict[str, Any], port: dict[str, Any], slot: int) -> str:
    widget = port.get("widget")
    name = widget.get("name") if isinstance(widget, dict) and widget.get("name") else port.get("name", str(slot))
    mapping = BY_COMFY_TYPE.get(entry["type"])
    return mapping.our_input(name) if mapping and target.type == mapping.our_type else str(name)


def _output_name(source: NodeInstance, entry: dict[str, Any], slot: int) -> str:
    mapping = BY_COMFY_TYPE.get(entry["type"])
    if mapping and source.type == mapping.our_type and slot < len(mapping.outputs):
        return mapping.outputs[slot]
    if entry["type"] == PRIMITIVE_NODE:  # our primitive node of its value type: its one output
        return BY_OUR_TYPE[source.type].outputs[0]
    outputs = entry.get("outputs") or []
    if slot < len(outputs) and isinstance(outputs[slot], dict) and outputs[slot].get("name"):
        return str(outputs[slot]["name"])
    return str(slot)


def _ui_state(entry: dict[str, Any]) -> dict[str, Any]:
    ui: dict[str, Any] = {}
    pos = _pair(entry.get("pos"))
    if pos:
        ui["pos"] = pos
    size = _pair(entry.get("size"))
    if size:
        ui["size"] = size
    if isinstance(entry.get("flags"), dict) and entry["flags"].get("collapsed"):
        ui["collapsed"] = True
    color = _rgb(entry.get("color"))
    if color:
        ui["color"] = color
    return ui


def _pair(value: Any) -> list[float] | None:
    if isinstance(value, dict):
        value = [value.get("0"), value.get("1")]
    if isinstance(value, list) and len(value) >= 2 and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in value[:2]):
        return [_round(value[0]), _round(value[1])]
    return None


def _round(value: float) -> float:
    value = round(float(value), 2)
    return int(value) if value.is_integer() else value


def _rgb(value: Any) -> list[int] | None:
    """[r, g, b] from a CSS hex colour ("#335" or "#3f789e")."""
    if not isinstance(value, str) or not value.startswith("#"):
        return None
    digits = value[1:]
    if len(digits) == 3:
        digits = "".join(c * 2 for c in digits)
    try:
        return [int(digits[i:i + 2], 16) for i in (0, 2, 4)] if len(digits) in (6, 8) else None
    except ValueError:
        return None


def _group(entry: Any) -> dict[str, Any] | None:
    if not isinstance(entry, dict):
        return None
    bounding = entry.get("bounding")
    if not (isinstance(bounding, list) and len(bounding) == 4
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in bounding)):
        return None
    group = {"title": str(entry.get("title") or "Group"), "pos": [_round(bounding[0]), _round(bounding[1])],
             "size": [_round(bounding[2]), _round(bounding[3])]}
    color = _rgb(entry.get("color"))
    if color:
        group["color"] = color
    return group


def _placeholder_warnings(workflow: Workflow) -> list[str]:
    types: dict[str, list[str]] = {}
    for node in workflow:
        if "comfyui" in node.extra and node.type not in BY_OUR_TYPE:
            types.setdefault(node.type, []).append(node.id)
    return [f"ComfyUI node type {name!r} has no nodegraph equivalent: kept as a placeholder "
            f"(node{'s' if len(ids) > 1 else ''} {', '.join(ids)})" for name, ids in sorted(types.items())]


# --- the API form -------------------------------------------------------------------------------------------------
def import_api(doc: dict[str, Any], *, source: str = API_SOURCE) -> ImportResult:
    """A nodegraph workflow from a ComfyUI API-format prompt (no positions in it: the graph is laid out)."""
    if "class_type" not in doc and isinstance(doc.get("prompt"), dict):
        doc = doc["prompt"]
    workflow = Workflow(meta={"imported_from": source})
    warnings: list[str] = []
    for raw_id, entry in doc.items():
        with _malformed(raw_id, entry):
            node_id = _id(raw_id)
            if not isinstance(entry, dict) or not isinstance(entry.get("class_type"), str) or not node_id:
                raise InteropError(f"node {raw_id!r} is not a ComfyUI node (it needs a class_type)")
            comfy_type = entry["class_type"]
            mapping = BY_COMFY_TYPE.get(comfy_type)
            title = entry.get("_meta", {}).get("title") if isinstance(entry.get("_meta"), dict) else None
            inputs = entry.get("inputs") if isinstance(entry.get("inputs"), dict) else {}
            literals = {name: value for name, value in inputs.items() if not _is_api_link(value)}
            if mapping is None:
                node = NodeInstance(node_id, comfy_type, dict(literals), title, extra={"comfyui": {"api": True}})
            else:
                if title == _default_title(comfy_type):
                    title = None
                ignored = sorted(set(literals) - set(mapping.widgets) - {UI_ONLY})
                if ignored and comfy_type != "LoadImage":  # LoadImage's upload button appears as an input
                    warnings.append(f"node {node_id} ({comfy_type}): ComfyUI's {comfy_type} has no input "
                                    f"{', '.join(map(repr, ignored))}; left out")
                node = NodeInstance(node_id, mapping.our_type, {
                    mapping.our_input(k): _alias(mapping, k, v) for k, v in literals.items() if k in mapping.widgets},
                    title)
            if node_id in workflow.nodes:
                raise InteropError(f"node id {node_id} appears twice")
            workflow.nodes[node_id] = node
    for raw_id, entry in doc.items():
        with _malformed(raw_id, entry):
            target_id = _id(raw_id)
            mapping = BY_COMFY_TYPE.get(entry["class_type"])
            for name, value in (entry.get("inputs") or {}).items():
                if not _is_api_link(value):
                    continue
                source_id, slot = _id(value[0]), value[1]
                if source_id not in workflow.nodes:
                    warnings.append(f"node {target_id} ({entry['class_type']}): input {name!r} is linked to node "
                                    f"{source_id}, which is not in the prompt; the link is left out")
                    continue
                source_mapping = BY_COMFY_TYPE.get(doc[_raw_key(doc, source_id)]["class_type"])
                output = (source_mapping.outputs[slot] if source_mapping and slot < len(source_mapping.outputs)
                          else str(slot))
                workflow.links.append(Link(source_id, output, target_id, mapping.our_input(name) if mapping else name))
    use_comfyui_schedules(workflow)
    warnings += sampler_warnings(workflow) + comfyui_denoise(workflow)
    auto_layout(workflow)
    warnings += _placeholder_warnings(workflow)
    return ImportResult(workflow, source, warnings)


def _is_api_link(value: Any) -> bool:
    return (isinstance(value, list) and len(value) == 2 and isinstance(value[0], (str, int))
            and isinstance(value[1], int) and not isinstance(value[1], bool))


def _raw_key(doc: dict[str, Any], node_id: str) -> Any:
    return node_id if node_id in doc else next(key for key in doc if _id(key) == node_id)


def _default_title(comfy_type: str) -> str | None:
    """The display name ComfyUI writes into ``_meta.title`` when the user gave none (not worth keeping)."""
    return _DISPLAY_NAMES.get(comfy_type, comfy_type)


_DISPLAY_NAMES = {
    "CheckpointLoaderSimple": "Load Checkpoint", "CLIPTextEncode": "CLIP Text Encode (Prompt)",
    "CLIPSetLastLayer": "CLIP Set Last Layer", "KSamplerAdvanced": "KSampler (Advanced)",
    "EmptyLatentImage": "Empty Latent Image", "VAEDecode": "VAE Decode", "VAEEncode": "VAE Encode",
    "VAEEncodeForInpaint": "VAE Encode (for Inpainting)", "SetLatentNoiseMask": "Set Latent Noise Mask",
    "VAELoader": "Load VAE", "LoraLoader": "Load LoRA", "LatentUpscale": "Upscale Latent",
    "LatentUpscaleBy": "Upscale Latent By", "LoadImage": "Load Image", "SaveImage": "Save Image",
    "PreviewImage": "Preview Image", "UpscaleModelLoader": "Load Upscale Model",
    "ImageUpscaleWithModel": "Upscale Image (using Model)", "ImageScale": "Upscale Image",
    "ImageScaleBy": "Upscale Image By", "ControlNetLoader": "Load ControlNet Model",
    "ControlNetApplyAdvanced": "Apply ControlNet", "ControlNetApply": "Apply ControlNet (OLD)",
}

