"""diffusers/transformers state dicts → the original single-file layouts (LDM for SD 1/2, SGM for SDXL).

This is the inverse of diffusers' single-file converters (``convert_ldm_unet_checkpoint``,
``convert_ldm_vae_checkpoint``, ``convert_ldm_clip_checkpoint``, ``convert_open_clip_checkpoint``), written from
the layouts those converters read. The tests run diffusers' converters on the output and compare bit for bit.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

import torch

from nodegraph.models.families import get_family
from nodegraph.models.synthetic.tiny import OPENCLIP_H_LAYERS

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
#: Where each family's text encoders sit, and whether in OpenCLIP layout (fused qkv, ``resblocks``).
TEXT_ENCODER_PREFIXES: dict[str, dict[str, tuple[str, bool]]] = {
    "sd1": {"text_encoder": ("cond_stage_model.transformer.", False)},
    "sd2": {"text_encoder": ("cond_stage_model.model.", True)},
    "sdxl": {"text_encoder": ("conditioner.embedders.0.transformer.", False),
             "text_encoder_2": ("conditioner.embedders.1.model.", True)},
    "sdxl-refiner": {"text_encoder_2": ("conditioner.embedders.0.model.", True)},
}

_RESNET = {"norm1": "in_layers.0", "conv1": "in_layers.2", "norm2": "out_layers.0", "conv2": "out_layers.3",
           "time_emb_proj": "emb_layers.1", "conv_shortcut": "skip_connection"}
_VAE_ATTENTION = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}
_OPENCLIP_LAYER = {"self_attn.out_proj": "attn.out_proj", "layer_norm1": "ln_1", "layer_norm2": "ln_2",
                   "mlp.fc1": "mlp.c_fc", "mlp.fc2": "mlp.c_proj"}
#: OpenCLIP's trained temperature (exp(4.6052) = 100): present, unused, in SD 2.x and SDXL files.
LOGIT_SCALE = math.log(100.0)


def text_encoder_prefixes(family: str) -> dict[str, tuple[str, bool]]:
    """Prefix and OpenCLIP flag of each text encoder of `family` in its single file, by component name."""
    fam = get_family(family)
    return dict(TEXT_ENCODER_PREFIXES["sdxl-refiner" if fam.name == "sdxl-refiner" else fam.base])


# --- UNet ---------------------------------------------------------------------------------------------------------
def unet_module_map(config: Mapping[str, Any]) -> dict[str, str]:
    """diffusers UNet module paths → LDM module paths (without ``model.diffusion_model.``) for a UNet `config`."""
    per_level = int(config["layers_per_block"])
    levels = len(config["down_block_types"])
    mapping = {"conv_in": "input_blocks.0.0", "time_embedding.linear_1": "time_embed.0",
               "time_embedding.linear_2": "time_embed.2", "add_embedding.linear_1": "label_emb.0.0",
               "add_embedding.linear_2": "label_emb.0.2", "conv_norm_out": "out.0", "conv_out": "out.2",
               "mid_block.resnets.0": "middle_block.0", "mid_block.attentions.0": "middle_block.1",
               "mid_block.resnets.1": "middle_block.2"}
    for level, kind in enumerate(config["down_block_types"]):
        for j in range(per_level):
            index = 1 + level * (per_level + 1) + j
            mapping[f"down_blocks.{level}.resnets.{j}"] = f"input_blocks.{index}.0"
            if "CrossAttn" in kind:
                mapping[f"down_blocks.{level}.attentions.{j}"] = f"input_blocks.{index}.1"
        if level < levels - 1:
            mapping[f"down_blocks.{level}.downsamplers.0.conv"] = f"input_blocks.{(level + 1) * (per_level + 1)}.0.op"
    for level, kind in enumerate(config["up_block_types"]):
        attention = "CrossAttn" in kind
        for j in range(per_level + 1):
            index = level * (per_level + 1) + j
            mapping[f"up_blocks.{level}.resnets.{j}"] = f"output_blocks.{index}.0"
            if attention:
                mapping[f"up_blocks.{level}.attentions.{j}"] = f"output_blocks.{index}.1"
        if level < levels - 1:
            last = level * (per_level + 1) + per_level
            mapping[f"up_blocks.{level}.upsamplers.0.conv"] = f"output_blocks.{last}.{2 if attention else 1}.conv"
    return mapping


def ldm_unet_name(name: str, module_map: Mapping[str, str]) -> str:
    """The LDM name of a diffusers UNet parameter or module path (see :func:`unet_module_map`)."""
    parts = name.split(".")
    for cut in range(len(parts), 0, -1):
        prefix = ".".join(parts[:cut])
        if prefix in module_map:
            rest = parts[cut:]
            if ".resnets." in prefix and rest and rest[0] in _RESNET:
                rest = [_RESNET[rest[0]], *rest[1:]]
            return ".".join([module_map[prefix], *rest])
    raise KeyError(f"no LDM name for UNet key {name!r}")


def unet_to_ldm(state_dict: Mapping[str, torch.Tensor], config: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """A diffusers UNet state dict in LDM names (no prefix)."""
    module_map = unet_module_map(config)
    return {ldm_unet_name(key, module_map): value for key, value in state_dict.items()}


# --- VAE ----------------------------------------------------------------------------------------------------------
def _vae_name(key: str, levels: int) -> str:
    part, _, rest = key.partition(".")
    if part in ("quant_conv", "post_quant_conv"):
        return key
    if rest.startswith("conv_norm_out."):
        return f"{part}.norm_out.{rest.removeprefix('conv_norm_out.')}"
    if rest.startswith(("conv_in.", "conv_out.")):
        return key
    match = re.fullmatch(r"(down|up)_blocks\.(\d+)\.(resnets|downsamplers|upsamplers)\.(\d+)\.(.+)", rest)
    if match:
        kind, level, inner, index, tail = match.groups()
        level_index = int(level) if kind == "down" else levels - 1 - int(level)  # the decoder counts upwards
        if inner == "resnets":
            tail = tail.replace("conv_shortcut.", "nin_shortcut.")
            return f"{part}.{kind}.{level_index}.block.{index}.{tail}"
        return f"{part}.{kind}.{level_index}.{kind}sample.{tail}"
    match = re.fullmatch(r"mid_block\.resnets\.(\d+)\.(.+)", rest)
    if match:
        return f"{part}.mid.block_{int(match.group(1)) + 1}.{match.group(2)}"
    match = re.fullmatch(r"mid_block\.attentions\.0\.(.+)\.(weight|bias)", rest)
    if match and match.group(1) in _VAE_ATTENTION:
        return f"{part}.mid.attn_1.{_VAE_ATTENTION[match.group(1)]}.{match.group(2)}"
    raise KeyError(f"no LDM name for VAE key {key!r}")


def vae_to_ldm(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A diffusers AutoencoderKL state dict in LDM names (no prefix); mid-block attention as 1x1 convs."""
    levels = len({m.group(1) for key in state_dict if (m := re.match(r"encoder\.down_blocks\.(\d+)\.", key))})
    out = {}
    for key, value in state_dict.items():
        name = _vae_name(key, levels)
        if ".mid.attn_1." in name and name.endswith(".weight") and value.ndim == 2:
            value = value.reshape(*value.shape, 1, 1)
        out[name] = value
    return out


# --- text encoders ------------------------------------------------------------------------------------------------
def clip_to_ldm(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A transformers CLIPTextModel state dict as stored under ``…transformer.`` (with the ``text_model.`` level and
    the ``position_ids`` buffer older transformers saved)."""
    out = {"text_model." + key.removeprefix("text_model."): value for key, value in state_dict.items()}
    positions = out["text_model.embeddings.position_embedding.weight"].shape[0]
    out["text_model.embeddings.position_ids"] = torch.arange(positions, dtype=torch.int64).unsqueeze(0)
    return out


def openclip_block(layer_state: Mapping[str, torch.Tensor], index: int) -> dict[str, torch.Tensor]:
    """One transformers CLIPEncoderLayer state dict as OpenCLIP's ``transformer.resblocks.<index>.*``."""
    out = {}
    block = f"transformer.resblocks.{index}."
    for kind in ("weight", "bias"):
        out[f"{block}attn.in_proj_{kind}"] = torch.cat(
            [layer_state[f"self_attn.{p}_proj.{kind}"] for p in ("q", "k", "v")], dim=0)
    for key, value in layer_state.items():
        module, _, kind = key.rpartition(".")
        if module in _OPENCLIP_LAYER:
            out[f"{block}{_OPENCLIP_LAYER[module]}.{kind}"] = value
        elif not re.fullmatch(r"self_attn\.[qkv]_proj", module):
            raise KeyError(f"no OpenCLIP name for text encoder key {key!r}")
    return out


def clip_to_openclip(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A transformers CLIPTextModel(WithProjection) state dict in OpenCLIP names (relative to ``…model.``)."""
    state = {key.removeprefix("text_model."): value for key, value in state_dict.items()}
    out = {"token_embedding.weight": state.pop("embeddings.token_embedding.weight"),
           "positional_embedding": state.pop("embeddings.position_embedding.weight"),
           "ln_final.weight": state.pop("final_layer_norm.weight"),
           "ln_final.bias": state.pop("final_layer_norm.bias"),
           "logit_scale": torch.tensor(LOGIT_SCALE)}
    projection = state.pop("text_projection.weight", None)
    if projection is not None:  # OpenCLIP applies x @ text_projection; transformers a Linear: the transpose
        out["text_projection"] = projection.T.contiguous()
    layers: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in state.items():
        match = re.fullmatch(r"encoder\.layers\.(\d+)\.(.+)", key)
        if not match:
            raise KeyError(f"no OpenCLIP name for text encoder key {key!r}")
        layers.setdefault(int(match.group(1)), {})[match.group(2)] = value
    for index, layer in sorted(layers.items()):
        out.update(openclip_block(layer, index))
    return out


# --- whole checkpoints --------------------------------------------------------------------------------------------
def ddpm_schedule_buffers() -> dict[str, torch.Tensor]:
    """The noise-schedule buffers LDM wrote into every SD 1.x/2.x checkpoint (scaled-linear betas, 1000 steps)."""
    betas = torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=torch.float64) ** 2
    alphas = 1.0 - betas
    cumprod = torch.cumprod(alphas, dim=0)
    previous = torch.cat([torch.ones(1, dtype=torch.float64), cumprod[:-1]])
    variance = betas * (1.0 - previous) / (1.0 - cumprod)
    buffers = {
        "betas": betas, "alphas_cumprod": cumprod, "alphas_cumprod_prev": previous,
        "sqrt_alphas_cumprod": cumprod.sqrt(), "sqrt_one_minus_alphas_cumprod": (1.0 - cumprod).sqrt(),
        "log_one_minus_alphas_cumprod": (1.0 - cumprod).log(), "sqrt_recip_alphas_cumprod": (1.0 / cumprod).sqrt(),
        "sqrt_recipm1_alphas_cumprod": (1.0 / cumprod - 1.0).sqrt(), "posterior_variance": variance,
        "posterior_log_variance_clipped": variance.clamp(min=1e-20).log(),
        "posterior_mean_coef1": betas * previous.sqrt() / (1.0 - cumprod),
        "posterior_mean_coef2": (1.0 - previous) * alphas.sqrt() / (1.0 - cumprod),
    }
    out = {name: value.to(torch.float32) for name, value in buffers.items()}
    out["model_ema.decay"] = torch.tensor(0.9999, dtype=torch.float32)
    out["model_ema.num_updates"] = torch.tensor(0, dtype=torch.int32)
    return out


def checkpoint_state_dict(family: str, components: Mapping[str, Any], extras: Mapping[str, torch.Tensor],
                          *, include_vae: bool = True) -> dict[str, torch.Tensor]:
    """The complete single-file state dict of `family` from its diffusers components (see ``tiny.py``)."""
    fam = get_family(family)
    unet = components["unet"]
    state = {UNET_PREFIX + k: v for k, v in unet_to_ldm(unet.state_dict(), unet.config).items()}
    if include_vae:
        state.update({VAE_PREFIX + k: v for k, v in vae_to_ldm(components["vae"].state_dict()).items()})
    for component, (prefix, openclip) in text_encoder_prefixes(family).items():
        encoder_state = components[component].state_dict()
        part = clip_to_openclip(encoder_state) if openclip else clip_to_ldm(encoder_state)
        if fam.base == "sd2":  # SD 2.x: one more block than diffusers keeps, and an unused projection
            depth = components[component].config.num_hidden_layers
            block = {k.split(":", 1)[1].removeprefix("extra_block."): v for k, v in extras.items()
                     if k.startswith(f"{component}:extra_block.")}
            part.update(openclip_block(block, depth))
            part["text_projection"] = extras[f"{component}:text_projection"]
        state.update({prefix + k: v for k, v in part.items()})
    if fam.base in ("sd1", "sd2"):
        state.update(ddpm_schedule_buffers())
    return state


def documented_extras(family: str) -> list[str]:
    """Names of the tensors in a written checkpoint that no diffusers component receives (regex patterns)."""
    fam = get_family(family)
    patterns = []
    if fam.base in ("sd1", "sd2"):
        patterns += [r"(betas|alphas_cumprod(_prev)?|sqrt_.*|log_one_minus_alphas_cumprod|posterior_.*)",
                     r"model_ema\.(decay|num_updates)"]
    for prefix, openclip in text_encoder_prefixes(family).values():
        escaped = re.escape(prefix)
        if openclip:
            patterns.append(escaped + r"logit_scale")
        else:
            patterns.append(escaped + r"text_model\.embeddings\.position_ids")
    if fam.base == "sd2":
        patterns += [r"cond_stage_model\.model\.text_projection",
                     rf"cond_stage_model\.model\.transformer\.resblocks\.{OPENCLIP_H_LAYERS}\..*"]
    return patterns
