"""ComfyUI's built-in node types and the nodegraph node type each maps to.

The facts come from ComfyUI's node definitions (``nodes.py``, ``comfy_extras``): each type's inputs by name, the
order in which the UI stores its widget values (``widgets_values``, positional, with the UI-only
``control_after_generate`` value after every seed widget and the ``upload`` button value after an image name), and
its outputs by slot. A type missing here is imported as a placeholder, never dropped.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

#: Marks a widget value the UI stores but no node input receives (``control_after_generate``, ``upload``).
UI_ONLY = ""

#: The values ComfyUI's UI writes for ``control_after_generate``.
CONTROL_VALUES = frozenset({"fixed", "increment", "decrement", "randomize"})


@dataclass(frozen=True)
class NodeMapping:
    """How one ComfyUI node type becomes a nodegraph node.

    Args:
        comfy_type: ComfyUI's ``class_type``.
        our_type: the nodegraph node type id.
        widgets: the UI's ``widgets_values`` order: ComfyUI input names, :data:`UI_ONLY` for values no input gets.
        outputs: our output name for each ComfyUI output slot.
        renames: ComfyUI input name → our input name where they differ (the same name otherwise).
        aliases: per input, ComfyUI values that mean one of ours (``dpmpp_sde_gpu`` → ``dpmpp_sde``).
    """

    comfy_type: str
    our_type: str
    widgets: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()
    renames: Mapping[str, str] = field(default_factory=dict)
    aliases: Mapping[str, Mapping[str, str]] = field(default_factory=dict)

    def our_input(self, comfy_input: str) -> str:
        """Our name of ComfyUI's input `comfy_input`."""
        return self.renames.get(comfy_input, comfy_input)

    def comfy_input(self, our_input: str) -> str:
        """ComfyUI's name of our input `our_input`."""
        for comfy, ours in self.renames.items():
            if ours == our_input:
                return comfy
        return our_input


#: The sampler names ComfyUI's KSampler offers (comfy/samplers.py: KSAMPLER_NAMES + ddim, uni_pc, uni_pc_bh2).
COMFY_SAMPLERS = (
    "euler", "euler_cfg_pp", "euler_ancestral", "euler_ancestral_cfg_pp", "heun", "heunpp2", "dpm_2",
    "dpm_2_ancestral", "lms", "dpm_fast", "dpm_adaptive", "dpmpp_2s_ancestral", "dpmpp_2s_ancestral_cfg_pp",
    "dpmpp_sde", "dpmpp_sde_gpu", "dpmpp_2m", "dpmpp_2m_cfg_pp", "dpmpp_2m_sde", "dpmpp_2m_sde_gpu", "dpmpp_3m_sde",
    "dpmpp_3m_sde_gpu", "ddpm", "lcm", "ipndm", "ipndm_v", "deis", "res_multistep", "res_multistep_cfg_pp",
    "res_multistep_ancestral", "res_multistep_ancestral_cfg_pp", "gradient_estimation", "er_sde", "seeds_2",
    "seeds_3", "ddim", "uni_pc", "uni_pc_bh2")

#: The schedule names ComfyUI's KSampler offers.
COMFY_SCHEDULERS = ("normal", "karras", "exponential", "sgm_uniform", "simple", "ddim_uniform", "beta",
                    "linear_quadratic", "kl_optimal")

#: ComfyUI sampler → ours where the names differ. The ``*_gpu`` samplers run the same algorithm with the Brownian
#: noise drawn on the GPU. ComfyUI's ``uni_pc`` is UniPC's bh1 variant and ``uni_pc_bh2`` the bh2 one, which is
#: diffusers' default and so our ``uni_pc``; bh1 does not run here, so it becomes ``uni_pc_bh1``, which validation
#: refuses by name.
SAMPLER_ALIASES = {"dpmpp_sde_gpu": "dpmpp_sde", "dpmpp_2m_sde_gpu": "dpmpp_2m_sde", "uni_pc": "uni_pc_bh1",
                   "uni_pc_bh2": "uni_pc"}

#: Our sampler → ComfyUI's (the inverse of the aliases, without the GPU-noise variants).
EXPORT_SAMPLERS = {"uni_pc": "uni_pc_bh2", "uni_pc_bh1": "uni_pc"}

_SAMPLER_ALIASES = {"sampler_name": SAMPLER_ALIASES}

_MAPPINGS = (
    NodeMapping("CheckpointLoaderSimple", "LoadCheckpoint", ("ckpt_name",), ("MODEL", "CLIP", "VAE")),
    NodeMapping("CLIPTextEncode", "CLIPTextEncode", ("text",), ("CONDITIONING",)),
    NodeMapping("CLIPSetLastLayer", "CLIPSetLastLayer", ("stop_at_clip_layer",), ("CLIP",)),
    NodeMapping("KSampler", "UNetSampler",
                ("seed", UI_ONLY, "steps", "cfg", "sampler_name", "scheduler", "denoise"), ("LATENT",),
                aliases=_SAMPLER_ALIASES),
    NodeMapping("KSamplerAdvanced", "UNetSamplerAdvanced",
                ("add_noise", "noise_seed", UI_ONLY, "steps", "cfg", "sampler_name", "scheduler", "start_at_step",
                 "end_at_step", "return_with_leftover_noise"), ("LATENT",), aliases=_SAMPLER_ALIASES),
    NodeMapping("EmptyLatentImage", "EmptyLatentImage", ("width", "height", "batch_size"), ("LATENT",)),
    NodeMapping("VAEDecode", "VAEDecode", (), ("IMAGE",)),
    NodeMapping("VAEEncode", "VAEEncode", (), ("LATENT",)),
    NodeMapping("VAEEncodeForInpaint", "VAEEncodeForInpaint", ("grow_mask_by",), ("LATENT",)),
    NodeMapping("SetLatentNoiseMask", "SetLatentNoiseMask", (), ("LATENT",)),
    NodeMapping("VAELoader", "LoadVAE", ("vae_name",), ("VAE",)),
    NodeMapping("LoraLoader", "LoadLoRA", ("lora_name", "strength_model", "strength_clip"), ("MODEL", "CLIP")),
    NodeMapping("LoraLoaderModelOnly", "LoadLoRAModelOnly", ("lora_name", "strength_model"), ("MODEL",)),
    NodeMapping("HypernetworkLoader", "LoadHypernetwork", ("hypernetwork_name", "strength"), ("MODEL",)),
    NodeMapping("LatentUpscale", "UpscaleLatent", ("upscale_method", "width", "height", "crop"), ("LATENT",)),
    NodeMapping("LatentUpscaleBy", "UpscaleLatentBy", ("upscale_method", "scale_by"), ("LATENT",)),
    NodeMapping("LoadImage", "LoadImage", ("image", UI_ONLY), ("IMAGE", "MASK")),
    NodeMapping("SaveImage", "SaveImage", ("filename_prefix",), ()),
    NodeMapping("PreviewImage", "PreviewImage", (), ()),
    NodeMapping("PrimitiveInt", "PrimitiveInt", ("value", UI_ONLY), ("INT",)),
    NodeMapping("PrimitiveFloat", "PrimitiveFloat", ("value",), ("FLOAT",)),
    NodeMapping("PrimitiveString", "PrimitiveString", ("value",), ("STRING",)),
    NodeMapping("PrimitiveStringMultiline", "PrimitiveString", ("value",), ("STRING",)),
    NodeMapping("PrimitiveBoolean", "PrimitiveBoolean", ("value",), ("BOOLEAN",)),
    NodeMapping("UpscaleModelLoader", "LoadUpscaleModel", ("model_name",), ("UPSCALE_MODEL",)),
    NodeMapping("ImageUpscaleWithModel", "UpscaleImageWithModel", (), ("IMAGE",)),
    NodeMapping("ImageScale", "ImageScale", ("upscale_method", "width", "height", "crop"), ("IMAGE",)),
    NodeMapping("ImageScaleBy", "ImageScaleBy", ("upscale_method", "scale_by"), ("IMAGE",)),
    NodeMapping("ControlNetLoader", "LoadControlNet", ("control_net_name",), ("CONTROL_NET",)),
    NodeMapping("ControlNetApplyAdvanced", "ApplyControlNet", ("strength", "start_percent", "end_percent"),
                ("positive", "negative")),
    NodeMapping("ControlNetApply", "ApplyControlNetSimple", ("strength",), ("CONDITIONING",)),
    NodeMapping("Canny", "Canny", ("low_threshold", "high_threshold"), ("IMAGE",)),
    NodeMapping("Note", "Note", ("text",), ()),
    NodeMapping("MarkdownNote", "Note", ("text",), ()),
)

#: ComfyUI class_type → mapping.
BY_COMFY_TYPE: dict[str, NodeMapping] = {m.comfy_type: m for m in _MAPPINGS}

#: Our type → the mapping export uses (the first ComfyUI type listed for it).
BY_OUR_TYPE: dict[str, NodeMapping] = {}
for _mapping in _MAPPINGS:
    BY_OUR_TYPE.setdefault(_mapping.our_type, _mapping)

#: UI-only ComfyUI types that the import dissolves into links and literals.
REROUTE_TYPES = frozenset({"Reroute"})
PRIMITIVE_NODE = "PrimitiveNode"

#: ComfyUI's node modes (litegraph): 0 always, 1 on event, 2 never, 3 on trigger, 4 bypass.
MODES = {2: "mute", 4: "bypass"}

#: Our primitive node type for the value type a ComfyUI PrimitiveNode feeds.
PRIMITIVE_TYPES = {"INT": "PrimitiveInt", "FLOAT": "PrimitiveFloat", "STRING": "PrimitiveString",
                   "BOOLEAN": "PrimitiveBoolean"}


#: Our sampler node types, whose ``scheduler`` input takes ComfyUI's schedules.
SAMPLER_TYPES = frozenset({"UNetSampler", "UNetSamplerAdvanced"})


def our_schedule(sampler_name: object, schedule: object) -> object:
    """Our schedule for ComfyUI's (or AUTOMATIC1111's, whose k-diffusion schedules are ComfyUI's formulas)
    `schedule` on our sampler `sampler_name`: the ``comfyui_*`` variant where the plain name is diffusers'
    computation and the sampler can step through ComfyUI's sigmas, else the name as it is (validation refuses an
    unknown one by name)."""
    from nodegraph.models.schedulers import COMFYUI_PREFIX, SCHEDULES, schedule_problem

    if not isinstance(schedule, str) or not isinstance(sampler_name, str):
        return schedule
    exact = COMFYUI_PREFIX + schedule
    return exact if exact in SCHEDULES and schedule_problem(sampler_name, exact) is None else schedule


def comfyui_schedule(schedule: object) -> object:
    """ComfyUI's name of our `schedule` ("comfyui_karras" → "karras"; plain names are ComfyUI's names too)."""
    from nodegraph.models.schedulers import comfyui_name

    return comfyui_name(schedule) if isinstance(schedule, str) else schedule


def use_comfyui_schedules(workflow) -> None:
    """Point every sampler node of an imported `workflow` at the schedule that follows ComfyUI (see
    :func:`our_schedule`)."""
    for node in workflow:
        if node.type in SAMPLER_TYPES and "scheduler" in node.inputs:
            node.inputs["scheduler"] = our_schedule(node.inputs.get("sampler_name"), node.inputs["scheduler"])


def sampler_warnings(workflow) -> list[str]:
    """One line per sampler node whose sampler does not run here (validation refuses it too): nothing is changed
    silently, and the user learns why before running."""
    from nodegraph.models.schedulers import SAMPLERS

    lines = []
    for node in workflow:
        name = node.inputs.get("sampler_name") if node.type in SAMPLER_TYPES else None
        if isinstance(name, str) and name not in SAMPLERS:
            why = ("ComfyUI's uni_pc is UniPC's bh1 variant, which diffusers cannot run to the last step; "
                   "uni_pc here is the bh2 variant (ComfyUI's uni_pc_bh2)" if name == "uni_pc_bh1"
                   else "nodegraph does not have this sampler")
            lines.append(f"node {node.id}: sampler {name!r} does not run here ({why}): pick another before running")
    return lines


def comfyui_denoise(workflow) -> list[str]:
    """Give every imported KSampler with ``denoise`` below 1 ComfyUI's meaning of it, on the advanced sampler.

    ComfyUI's KSampler computes the schedule for ``int(steps / denoise)`` steps and runs its last `steps`; the UNet
    Sampler runs the last ``int(steps × denoise)`` of `steps` (diffusers' img2img strength). The same start is
    UNet Sampler (Advanced) at ``steps = int(steps / denoise)`` from ``start_at_step = that - steps`` with noise
    added there, which is what ComfyUI runs. The original values stay under ``comfyui`` for the export. Returns a
    warning for each KSampler whose steps or denoise come through a link (left as they are)."""
    warnings = []
    for node in workflow:
        denoise, steps = node.inputs.get("denoise"), node.inputs.get("steps")
        if (node.type != "UNetSampler" or isinstance(denoise, bool) or not isinstance(denoise, (int, float))
                or not 0 < denoise <= 0.9999 or isinstance(steps, bool) or not isinstance(steps, int) or steps < 1):
            continue
        if workflow.links_into(node.id, "steps") or workflow.links_into(node.id, "denoise"):
            warnings.append(f"node {node.id}: its steps or denoise come through a link, so ComfyUI's meaning of "
                            "denoise (the last steps of a longer schedule) is not carried over: the image differs")
            continue
        total = int(steps / denoise)
        inputs = node.inputs
        node.type = "UNetSamplerAdvanced"
        node.inputs = {"add_noise": "enable", "noise_seed": inputs.get("seed", 0), "steps": total,
                       "cfg": inputs.get("cfg", 8.0), "sampler_name": inputs.get("sampler_name", "euler"),
                       "scheduler": inputs.get("scheduler", "normal"), "start_at_step": total - steps,
                       "end_at_step": 10000, "return_with_leftover_noise": "disable"}
        node.extra["comfyui"] = {"class_type": "KSampler", "steps": steps, "denoise": denoise}
        for index, link in enumerate(workflow.links):
            if link.to_node == node.id and link.to_input == "seed":
                workflow.links[index] = type(link)(link.from_node, link.from_output, node.id, "noise_seed")
    return warnings


def ksampler_inputs(node) -> dict | None:
    """ComfyUI's KSampler inputs for a node :func:`comfyui_denoise` converted and nobody changed since (its steps
    and start still the ones the recorded steps and denoise give); None otherwise."""
    original = node.extra.get("comfyui")
    if node.type != "UNetSamplerAdvanced" or not isinstance(original, dict) or original.get("class_type") != "KSampler":
        return None
    steps, denoise = original.get("steps"), original.get("denoise")
    inputs = node.inputs
    if not isinstance(steps, int) or not isinstance(denoise, (int, float)) or denoise <= 0:
        return None
    total = int(steps / denoise)
    if (inputs.get("steps"), inputs.get("start_at_step"), inputs.get("end_at_step"), inputs.get("add_noise"),
            inputs.get("return_with_leftover_noise")) != (total, total - steps, 10000, "enable", "disable"):
        return None
    return {"seed": inputs.get("noise_seed", 0), "steps": steps, "cfg": inputs.get("cfg"),
            "sampler_name": inputs.get("sampler_name"), "scheduler": inputs.get("scheduler"), "denoise": denoise}
