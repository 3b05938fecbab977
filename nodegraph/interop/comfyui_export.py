"""nodegraph workflows → ComfyUI API prompts (``{id: {class_type, inputs}}``), the form ComfyUI's ``/prompt``
endpoint and its "Load (API format)" accept.

Every node must have a ComfyUI equivalent (:mod:`nodegraph.interop.comfyui_nodes`, or a placeholder imported from an
API prompt, which is written back as it came); anything else blocks the export, named. Node ids are kept, so
import → export → import gives the same graph. Notes are left out (ComfyUI's API form has none), primitive nodes
become the literals they feed, bypassed nodes are looked through and muted ones left out, as ComfyUI's own
frontend does when it queues a prompt.
"""

from __future__ import annotations

import copy
from typing import Any

from nodegraph.core.graph import Workflow
from nodegraph.core.registry import NodeRegistry
from nodegraph.core.topology import Unresolvable, resolve_source
from nodegraph.interop.comfyui_nodes import (
    BY_COMFY_TYPE,
    BY_OUR_TYPE,
    COMFY_SAMPLERS,
    COMFY_SCHEDULERS,
    EXPORT_SAMPLERS,
    PRIMITIVE_TYPES,
    UI_ONLY,
    comfyui_schedule,
    ksampler_inputs,
)
from nodegraph.interop.result import InteropError

#: Our node types with no place in a ComfyUI prompt.
_UI_ONLY_TYPES = frozenset({"Note"})
_PRIMITIVES = frozenset(PRIMITIVE_TYPES.values())


def export_api(workflow: Workflow, registry: NodeRegistry) -> dict[str, Any]:
    """The ComfyUI API prompt of `workflow`.

    Raises :class:`InteropError` listing every node that blocks the export (no ComfyUI equivalent, a sampler or
    schedule ComfyUI does not have, a link that cannot be resolved).
    """
    blockers: list[str] = []
    prompt: dict[str, Any] = {}
    for node in workflow:
        if node.type in _UI_ONLY_TYPES or node.type in _PRIMITIVES or node.mode == "mute":
            continue
        if node.mode == "bypass":
            continue  # its consumers are linked to what it passes through
        comfy = node.extra.get("comfyui")
        mapping = BY_OUR_TYPE.get(node.type)
        if mapping is None and not (isinstance(comfy, dict) and comfy.get("api")):
            why = ("a ComfyUI node imported from a UI-format workflow: its widget names are unknown here"
                   if isinstance(comfy, dict) else "no ComfyUI equivalent")
            blockers.append(f"node {node.id!r} ({node.type}): {why}")
            continue
        if mapping is None:
            prompt[node.id] = {"class_type": node.type, "inputs": dict(node.inputs)}
            continue
        ksampler = ksampler_inputs(node)  # a KSampler with denoise, imported as the advanced sampler
        if ksampler is not None:
            mapping = BY_COMFY_TYPE["KSampler"]
            node = copy.copy(node)
            node.inputs = ksampler
        inputs = _literals(node, mapping, registry, blockers)
        prompt[node.id] = {"class_type": mapping.comfy_type, "inputs": inputs}
        if node.title:
            prompt[node.id]["_meta"] = {"title": node.title}
    for link in workflow.links:
        target = prompt.get(link.to_node)
        if target is None:
            continue
        try:
            source_id, output = resolve_source(workflow, registry, link)
        except Unresolvable as why:
            blockers.append(f"node {link.to_node!r}, input {link.to_input!r}: {why}")
            continue
        source = workflow.nodes[source_id]
        mapping = BY_COMFY_TYPE.get(target["class_type"])
        name = mapping.comfy_input(link.to_input) if mapping else link.to_input
        if target["class_type"] == "KSampler" and name == "noise_seed":
            name = "seed"
        if source.type in _PRIMITIVES:
            target["inputs"][name] = source.inputs.get("value", registry[source.type].input("value").default)
            continue
        slot = _output_slot(workflow, registry, source_id, output)
        if slot is None:
            blockers.append(f"node {source_id!r} ({source.type}): output {output!r} has no ComfyUI slot")
            continue
        target["inputs"][name] = [source_id, slot]
    if blockers:
        raise InteropError("cannot export to ComfyUI: " + "; ".join(blockers))
    return prompt


def _literals(node, mapping, registry: NodeRegistry, blockers: list[str]) -> dict[str, Any]:
    """ComfyUI's widget inputs of `node`, with our defaults where the workflow leaves a value out (ComfyUI needs
    every required input)."""
    node_def = registry.get(node.type)
    inputs: dict[str, Any] = {}
    for comfy_name in mapping.widgets:
        if comfy_name == UI_ONLY:
            continue
        ours = mapping.our_input(comfy_name)
        value = node.inputs.get(ours)
        if value is None and node_def is not None and node_def.input(ours) is not None:
            value = node_def.input(ours).default
        if value is None:
            continue
        if ours == "sampler_name":
            value = EXPORT_SAMPLERS.get(value, value)
            if value not in COMFY_SAMPLERS:
                blockers.append(f"node {node.id!r}: ComfyUI has no sampler {value!r}")
        elif ours == "scheduler":
            value = comfyui_schedule(value)
            if value not in COMFY_SCHEDULERS:
                blockers.append(f"node {node.id!r}: ComfyUI has no scheduler {value!r}")
        inputs[comfy_name] = value
    return inputs


def _output_slot(workflow: Workflow, registry: NodeRegistry, node_id: str, output: str) -> int | None:
    node = workflow.nodes[node_id]
    mapping = BY_OUR_TYPE.get(node.type)
    if mapping is not None:
        return mapping.outputs.index(output) if output in mapping.outputs else None
    names = node.extra.get("comfyui", {}).get("outputs")
    if isinstance(names, list) and output in names:
        return names.index(output)
    return int(output) if output.isdigit() else None
