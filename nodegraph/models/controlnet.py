"""ControlNets: loading them as diffusers' ``ControlNetModel`` and running them inside the sampler.

Files come in three layouts (see docs/addon-formats.md): lllyasviel's original single files
(``control_model.input_blocks…``, ``control_model.input_hint_block…``, ``control_model.zero_convs…``,
``control_model.middle_block_out…``; ``.pth`` or ``.safetensors``, sometimes inside a whole SD checkpoint), diffusers'
state dict in one file (``controlnet_cond_embedding.…``, ``down_blocks.…``, ``controlnet_down_blocks.…``) and
diffusers folders (``config.json`` + ``diffusion_pytorch_model.safetensors``). Single files carry no config: the
structure comes from the tensor shapes, the rest from the bundled family config, and lllyasviel's names are converted
with diffusers' own ``convert_controlnet_checkpoint`` — nothing is looked up on the hub. Missing or stray tensors are
an error, as for checkpoints.

In the sampler a :class:`ControlRun` prepares the control images as diffusers' ControlNet pipelines do and adds the
ControlNets' residuals to the UNet's skip connections on the steps each one is active.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nodegraph.core.errors import NodeError
from nodegraph.models.configs import load_config
from nodegraph.models.errors import IncompatibleModelError, IncompleteModelError, ModelError
from nodegraph.models.families import Family
from nodegraph.models.identify import CONTROLNET_LDM_PREFIX, identify
from nodegraph.models.loader import build_module, missing_tensors
from nodegraph.models.offline import import_diffusers
from nodegraph.models.safe_load import load_state_dict, unwrap_state_dict

Shapes = Mapping[str, tuple[int, ...]]

#: The bundled family config a ControlNet of each base starts from (heads, norms, activations: not in the shapes).
_FAMILY_CONFIG = {"sd1": "sd1", "sd2": "sd2", "sdxl": "sdxl-base"}
_BASE_LABEL = {"sd1": "SD 1.x", "sd2": "SD 2.x", "sdxl": "SDXL"}
#: A ControlNet's base from its cross-attention width (the text embeddings it reads).
WIDTH_TO_BASE = {768: "sd1", 1024: "sd2", 2048: "sdxl"}


@dataclass(frozen=True)
class ControlNetHandle:
    """What a CONTROL_NET edge carries: a ControlNet file (or diffusers folder), its model line (``sd1``, ``sd2``,
    ``sdxl``) and the width of the text embeddings it reads; the weights are resolved through the model manager."""

    path: Path
    name: str
    base: str
    context_width: int


def base_label(base: str) -> str:
    """A model line as users read it ("SD 1.x", "SDXL")."""
    return _BASE_LABEL.get(base, base.upper())


# --- loading ------------------------------------------------------------------------------------------------------
def load_controlnet(path: str | Path, *, dtype: Any = None) -> Any:
    """Load a ControlNet file or diffusers ControlNet folder as a ``ControlNetModel`` on the CPU (eval mode, no
    gradients); `dtype` casts the weights (default: as stored). Raises a ModelError naming the file."""
    path = Path(path)
    info = identify(path)
    if info.kind != "controlnet":
        raise ModelError(path, f"is a {info.kind}, not a ControlNet")
    if info.unsupported:
        raise ModelError(path, info.unsupported)
    if info.family not in _FAMILY_CONFIG:
        raise ModelError(path, "a ControlNet for an unknown model line (its cross-attention width is not that of "
                               "SD 1.x, SD 2.x or SDXL)")
    if path.is_dir():
        return _load_folder(path, dtype)
    state = unwrap_state_dict(load_state_dict(path))
    if info.format == "ldm":
        state = ldm_to_diffusers(path, state)
    shapes = {name: tuple(tensor.shape) for name, tensor in state.items() if hasattr(tensor, "shape")}
    try:
        config = controlnet_config_from_shapes(shapes, info.family)
    except KeyError as error:
        raise missing_tensors(path, "ControlNet file", "ControlNet", [error.args[0]]) from None
    diffusers = import_diffusers()
    return build_module(path, lambda: diffusers.ControlNetModel.from_config(config), state, "ControlNet file",
                        "ControlNet", dtype)


def _load_folder(path: Path, dtype: Any) -> Any:
    diffusers = import_diffusers()
    try:
        module, loading = diffusers.ControlNetModel.from_pretrained(path, local_files_only=True, torch_dtype=dtype,
                                                                    output_loading_info=True)
    except (OSError, ValueError) as error:
        raise IncompleteModelError(path, f"not a complete ControlNet folder: {str(error).splitlines()[0]}") from None
    missing = sorted(loading.get("missing_keys", ()))
    if missing:
        raise missing_tensors(path, "ControlNet folder", "ControlNet", missing)
    return module.eval().requires_grad_(False)


def ldm_names_to_diffusers(ldm_names: Iterable[str]) -> dict[str, str]:
    """diffusers name → lllyasviel name of each ControlNet tensor (names without ``control_model.``).

    The mapping is diffusers' own: ``convert_controlnet_checkpoint`` is run on the names themselves (it only moves
    values between keys), plus SDXL's ``label_emb`` from diffusers' ``DIFFUSERS_TO_LDM_MAPPING`` table, which that
    converter leaves out.
    """
    import_diffusers()
    from diffusers.loaders.single_file_utils import DIFFUSERS_TO_LDM_MAPPING, convert_controlnet_checkpoint

    names = list(ldm_names)
    per_level = _ldm_layers_per_block(names)
    mapping = convert_controlnet_checkpoint({name: name for name in names}, {"layers_per_block": per_level})
    mapping = {key: value for key, value in mapping.items() if value is not None}
    for diffusers_name, ldm_name in DIFFUSERS_TO_LDM_MAPPING["controlnet"]["addition_embed_type"].items():
        if ldm_name in names:
            mapping[diffusers_name] = ldm_name
    return mapping


def _ldm_layers_per_block(names: list[str]) -> int:
    """Resnets per level: the first downsampler sits right after them (``input_blocks.<n + 1>.0.op``)."""
    downsamplers = sorted(int(m.group(1)) for n in names if (m := re.match(r"input_blocks\.(\d+)\.0\.op\.weight$", n)))
    if downsamplers:
        return downsamplers[0] - 1
    blocks = {int(m.group(1)) for n in names if (m := re.match(r"input_blocks\.(\d+)\.", n))}
    return max(len(blocks) - 1, 1)


def ldm_to_diffusers(path: Path, state: Mapping[str, Any]) -> dict[str, Any]:
    """An lllyasviel-layout ControlNet state dict (``control_model.`` prefixed, or bare) in diffusers' names.

    Tensors the conversion leaves unused are an error: never drop weights silently."""
    prefix = CONTROLNET_LDM_PREFIX if any(name.startswith(CONTROLNET_LDM_PREFIX) for name in state) else ""
    part = {name.removeprefix(prefix): value for name, value in state.items() if name.startswith(prefix)}
    if not prefix:  # a bare file: leave out what is not a ControlNet tensor (EMA counters, …)
        part = {name: value for name, value in part.items() if hasattr(value, "shape")}
    mapping = ldm_names_to_diffusers(part)
    unused = sorted(set(part) - set(mapping.values()))
    if unused:
        raise IncompleteModelError(path, f"not a valid ControlNet file: {len(unused)} tensors fit no ControlNet part "
                                         f"({', '.join(unused[:3])})")
    return {diffusers_name: part[ldm_name] for diffusers_name, ldm_name in mapping.items()}


def _indices(shapes: Shapes, pattern: str) -> list[int]:
    regex = re.compile(pattern)
    return sorted({int(m.group(1)) for name in shapes if (m := regex.match(name))})


def controlnet_config_from_shapes(shapes: Shapes, base: str) -> dict[str, Any]:
    """A ControlNetModel config for a state dict in diffusers' names: the structure (channels, levels, depths,
    widths, the conditioning embedding) from the shapes, the rest from the bundled `base` family's UNet config.

    Raises KeyError naming a tensor the structure needs but the file lacks."""
    diffusers = import_diffusers()
    import inspect

    family_config = load_config(_FAMILY_CONFIG[base], "unet")
    accepted = set(inspect.signature(diffusers.ControlNetModel.__init__).parameters) - {"self"}
    config = {key: value for key, value in family_config.items() if key in accepted}
    conv_in = shapes["conv_in.weight"]
    config["in_channels"] = conv_in[1]
    levels = _indices(shapes, r"down_blocks\.(\d+)\.")
    config["block_out_channels"] = [shapes[f"down_blocks.{i}.resnets.0.conv1.weight"][0] for i in levels]
    config["layers_per_block"] = len(_indices(shapes, r"down_blocks\.0\.resnets\.(\d+)\."))
    depths = [len(_indices(shapes, rf"down_blocks\.{i}\.attentions\.0\.transformer_blocks\.(\d+)\.")) for i in levels]
    config["down_block_types"] = ["CrossAttnDownBlock2D" if depth else "DownBlock2D" for depth in depths]
    mid_depth = len(_indices(shapes, r"mid_block\.attentions\.0\.transformer_blocks\.(\d+)\."))
    config["mid_block_type"] = "UNetMidBlock2DCrossAttn" if mid_depth else "UNetMidBlock2D"
    # diffusers takes the mid block's depth from the last level's entry (levels without attention ignore theirs).
    depths = [depth or 1 for depth in depths]
    if not config["down_block_types"][-1].startswith("CrossAttn"):
        depths[-1] = max(mid_depth, 1)
    config["transformer_layers_per_block"] = depths
    to_k = next((shape for name, shape in shapes.items() if name.endswith("attn2.to_k.weight")), None)
    if to_k is not None:
        config["cross_attention_dim"] = to_k[1]
    proj_in = next((shape for name, shape in shapes.items() if name.endswith(".proj_in.weight")), None)
    if proj_in is not None:
        config["use_linear_projection"] = len(proj_in) == 2
    if isinstance(family_config.get("attention_head_dim"), (list, tuple)):  # SD 2 / SDXL: 64-channel heads
        config["attention_head_dim"] = [max(c // 64, 1) for c in config["block_out_channels"]]
    added = shapes.get("add_embedding.linear_1.weight")
    if added is not None:
        config["addition_embed_type"] = "text_time"
        config["projection_class_embeddings_input_dim"] = added[1]
    else:
        config["addition_embed_type"] = None
        config["projection_class_embeddings_input_dim"] = None
    config["conditioning_channels"] = shapes["controlnet_cond_embedding.conv_in.weight"][1]
    blocks = _indices(shapes, r"controlnet_cond_embedding\.blocks\.(\d+)\.")
    config["conditioning_embedding_out_channels"] = [shapes["controlnet_cond_embedding.conv_in.weight"][0]] + [
        shapes[f"controlnet_cond_embedding.blocks.{i}.weight"][0] for i in blocks if i % 2 == 1]
    return config


# --- use in the sampler -------------------------------------------------------------------------------------------
def controls_of(*conditionings: Any) -> list[Any]:
    """The distinct control entries of `conditionings`, in order."""
    seen: dict[int, Any] = {}
    for conditioning in conditionings:
        for control in getattr(conditioning, "controls", ()):
            seen.setdefault(id(control), control)
    return list(seen.values())


def controlnets_for(models: Any, family: Family, *conditionings: Any) -> dict[Path, Any]:
    """The loaded ControlNet of each file the conditionings' controls name, through the model manager `models`.

    Raises IncompatibleModelError (naming the ControlNet file) for one made for another model line than `family`.
    """
    loaded: dict[Path, Any] = {}
    for control in controls_of(*conditionings):
        handle = control.controlnet
        if handle.path in loaded:
            continue
        if handle.base != family.base:
            raise IncompatibleModelError(handle.path, f"is a ControlNet for {base_label(handle.base)} models and "
                                                      f"cannot be used with the {family.label} model (Load ControlNet "
                                                      "Model → Apply ControlNet)")
        loaded[handle.path] = models.controlnet(handle.path)
    return loaded


def check_fits(module: Any, unet: Any, family: Family, path: Path) -> None:
    """Refuse a loaded ControlNet whose structure does not fit the UNet (text width, SDXL's added embeddings,
    latent channels): the last guard before its residuals meet the UNet's."""
    config, unet_config = module.config, unet.config
    if config.cross_attention_dim != unet_config.cross_attention_dim or \
            (config.addition_embed_type == "text_time") != (unet_config.addition_embed_type == "text_time"):
        base = WIDTH_TO_BASE.get(config.cross_attention_dim, f"{config.cross_attention_dim}-wide")
        raise IncompatibleModelError(path, f"is a ControlNet for {base_label(base)} models and cannot be used with "
                                           f"the {family.label} model")
    if config.in_channels != unet_config.out_channels:
        raise IncompatibleModelError(path, f"the ControlNet takes {config.in_channels} latent channels, the "
                                           f"{family.label} model's latents have {unet_config.out_channels}")


class ControlRun:
    """The ControlNets of one sampling run: their control images prepared once, their residuals per UNet call.

    Args:
        positive, negative: the control entries of the two conditionings (:class:`~nodegraph.models.conditioning.
            Control`); the same entry on both runs once on the guidance batch, as diffusers' pipelines run it.
        controlnets: the loaded ControlNetModel of each entry's file (see :func:`controlnets_for`).
        unet, family: the model the residuals are for (checked with :func:`check_fits`).
        width, height, batch_size: the image being sampled.
        position_offset, total: step ``i`` of the run is step ``position_offset + i`` of `total` for the
            start/end percentages.
    """

    def __init__(self, torch: Any, *, positive: tuple[Any, ...], negative: tuple[Any, ...],
                 controlnets: Mapping[Path, Any], unet: Any, family: Family, width: int, height: int,
                 batch_size: int, position_offset: int, total: int):
        import_diffusers()
        from diffusers.image_processor import VaeImageProcessor

        self.torch = torch
        self.positive, self.negative = tuple(positive), tuple(negative)
        self.same = len(self.positive) == len(self.negative) and all(
            a is b for a, b in zip(self.positive, self.negative, strict=True))
        self.position_offset, self.total = position_offset, total
        # diffusers' ControlNet pipelines: resized to the image size (nearest for tensors), RGB in [0, 1].
        processor = VaeImageProcessor(vae_scale_factor=8, do_convert_rgb=True, do_normalize=False)
        self.modules: dict[int, Any] = {}
        self.images: dict[int, Any] = {}
        for control in self._entries():
            path = control.controlnet.path
            module = controlnets.get(path)
            if module is None:
                raise ValueError(f"no loaded ControlNet was passed for {path}")
            check_fits(module, unet, family, path)
            pixels = torch.as_tensor(control.image)
            if pixels.dim() == 3:
                pixels = pixels[None]
            if pixels.dim() != 4 or pixels.shape[-1] != 3:
                raise NodeError(f"the control image for {path.name} must be an RGB image, not shaped "
                                f"{tuple(pixels.shape)}")
            image = processor.preprocess(pixels.movedim(-1, 1), height=height, width=width).to(dtype=torch.float32)
            if image.shape[0] == 1:
                image = image.repeat_interleave(batch_size, dim=0)
            elif image.shape[0] != batch_size:
                raise NodeError(f"the control image for {path.name} holds {image.shape[0]} images, which does not fit "
                                f"a batch of {batch_size}")
            self.modules[id(control)] = module
            self.images[id(control)] = image.to(device=unet.device, dtype=module.dtype)

    def _entries(self) -> list[Any]:
        seen: dict[int, Any] = {}
        for control in (*self.positive, *self.negative):
            seen.setdefault(id(control), control)
        return list(seen.values())

    def _run(self, controls: tuple[Any, ...], step: int, x: Any, t: Any, embeds: Any, added: Any,
             copies: int) -> tuple[Any, Any] | None:
        """The summed residuals of the `controls` active at `step` (None when none is), for a UNet input `x` that
        holds `copies` copies of the batch."""
        down = mid = None
        for control in controls:
            if control.strength == 0 or not control.active(self.position_offset + step, self.total):
                continue  # diffusers runs it and multiplies by 0: adding nothing is the same, bit for bit
            image = self.images[id(control)]
            if copies > 1:
                image = self.torch.cat([image] * copies)
            d, m = self.modules[id(control)](x, t, encoder_hidden_states=embeds, controlnet_cond=image,
                                             conditioning_scale=control.strength, added_cond_kwargs=added,
                                             return_dict=False)
            if down is None:
                down, mid = list(d), m
            else:  # stacked ControlNets add up, as diffusers' MultiControlNetModel does
                down = [previous + current for previous, current in zip(down, d, strict=True)]
                mid = mid + m
        return None if down is None else (down, mid)

    def residuals(self, which: str, step: int, x: Any, t: Any, embeds: Mapping[str, Any]) -> dict[str, Any]:
        """The UNet's ``down_block_additional_residuals`` / ``mid_block_additional_residual`` keywords for one call
        (empty when no ControlNet acts at `step`).

        Args:
            which: ``"cfg"`` for the batch [negative, positive], ``"neg"`` or ``"pos"`` for one of them.
            step: the index of the step within the run's timesteps.
            x: the scaled latents of the batch (without inpainting channels; not doubled for ``"cfg"``).
            embeds: the sampler's prepared embeddings (``pos``, ``neg``, ``cfg`` and their ``…_added``).
        """
        if which == "cfg" and self.same:
            found = self._run(self.positive, step, self.torch.cat([x] * 2), t, embeds["cfg"], embeds["cfg_added"], 2)
        elif which == "cfg":
            negative = self._run(self.negative, step, x, t, embeds["neg"], embeds["neg_added"], 1)
            positive = self._run(self.positive, step, x, t, embeds["pos"], embeds["pos_added"], 1)
            if negative is None and positive is None:
                return {}
            negative = negative or _zeros_like(self.torch, positive)
            positive = positive or _zeros_like(self.torch, negative)
            found = ([self.torch.cat([n, p]) for n, p in zip(negative[0], positive[0], strict=True)],
                     self.torch.cat([negative[1], positive[1]]))
        else:
            controls = self.positive if which == "pos" else self.negative
            found = self._run(controls, step, x, t, embeds[which], embeds[f"{which}_added"], 1)
        if found is None:
            return {}
        return {"down_block_additional_residuals": found[0], "mid_block_additional_residual": found[1]}


def _zeros_like(torch: Any, residuals: tuple[Any, Any]) -> tuple[Any, Any]:
    return [torch.zeros_like(d) for d in residuals[0]], torch.zeros_like(residuals[1])
