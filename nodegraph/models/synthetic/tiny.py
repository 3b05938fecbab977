"""Tiny random-weight diffusers models with the real structure of each family.

Every structural fact that tools read from files is kept: the number of UNet levels and their block types,
``layers_per_block=2``, transformer depths, 64-channel heads for SD 2.x/SDXL (8 heads for SD 1.x), the cross-attention
widths (768, 1024, 2048, 1280) and therefore the text encoders' hidden sizes, the 49,408-token vocabulary, 77
positions, 9 input channels for inpainting, SDXL's ``text_time`` embedding and a 4-level VAE (latents 1/8 of the
image). What shrinks: channel counts, text encoder depth and MLP width, transformer depth.

Weights are PyTorch's and transformers' default initialisation under a fixed seed (see FORMATS.md: shrunken
weights give flat grey images that prove nothing).
"""

from __future__ import annotations

import copy
from typing import Any

import torch

from nodegraph.models.families import FAMILIES, get_family
from nodegraph.models.offline import import_diffusers, import_transformers

#: Text encoder depths. SDXL's OpenCLIP bigG needs >= 10 blocks: detection looks for ``resblocks.9``.
CLIP_L_LAYERS = 3
OPENCLIP_H_LAYERS = 3  # SD 2.x files carry one block more than this (see ldm_layout.SD2_EXTRA_BLOCKS)
OPENCLIP_BIGG_LAYERS = 10
TEXT_INTERMEDIATE = 64
VOCAB_SIZE = 49408
MAX_POSITIONS = 77

_UNET_COMMON: dict[str, Any] = {
    "act_fn": "silu",
    "center_input_sample": False,
    "downsample_padding": 1,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "layers_per_block": 2,
    "mid_block_scale_factor": 1,
    "norm_eps": 1e-05,
    "norm_num_groups": 32,
    "out_channels": 4,
}

_SD_LEVELS = {
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
}

_UNETS: dict[str, dict[str, Any]] = {
    # SD 1.x: attention_head_dim=8 means 8 heads (diffusers' historical naming).
    "sd1": {**_SD_LEVELS, "block_out_channels": [32, 64, 128, 128], "attention_head_dim": 8,
            "cross_attention_dim": 768, "use_linear_projection": False, "sample_size": 64},
    # SD 2.x: 64-channel heads, counted per level; linear projections in the transformers.
    "sd2": {**_SD_LEVELS, "block_out_channels": [64, 64, 128, 128], "attention_head_dim": [1, 1, 2, 2],
            "cross_attention_dim": 1024, "use_linear_projection": True, "sample_size": 64},
    "sdxl-base": {
        "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
        "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
        "block_out_channels": [64, 128, 128], "attention_head_dim": [1, 2, 2],
        "transformer_layers_per_block": [1, 2, 2],
        "cross_attention_dim": 2048, "use_linear_projection": True, "addition_embed_type": "text_time",
        "addition_time_embed_dim": 256, "projection_class_embeddings_input_dim": 1280 + 6 * 256, "sample_size": 128},
    "sdxl-refiner": {
        "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
        "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
        "block_out_channels": [64, 128, 128, 128], "attention_head_dim": [1, 2, 2, 2],
        "transformer_layers_per_block": 2, "cross_attention_dim": 1280, "use_linear_projection": True,
        "addition_embed_type": "text_time", "addition_time_embed_dim": 256,
        "projection_class_embeddings_input_dim": 1280 + 5 * 256, "sample_size": 128},
}

_CLIP_COMMON: dict[str, Any] = {
    "vocab_size": VOCAB_SIZE, "max_position_embeddings": MAX_POSITIONS, "intermediate_size": TEXT_INTERMEDIATE,
    "layer_norm_eps": 1e-05, "attention_dropout": 0.0, "dropout": 0.0, "initializer_factor": 1.0,
    "initializer_range": 0.02, "bos_token_id": 0, "eos_token_id": 2, "pad_token_id": 1,
}
CLIP_L: dict[str, Any] = {**_CLIP_COMMON, "hidden_size": 768, "num_attention_heads": 12,
                          "num_hidden_layers": CLIP_L_LAYERS, "hidden_act": "quick_gelu", "projection_dim": 768}
OPENCLIP_H: dict[str, Any] = {**_CLIP_COMMON, "hidden_size": 1024, "num_attention_heads": 16,
                              "num_hidden_layers": OPENCLIP_H_LAYERS, "hidden_act": "gelu", "projection_dim": 512}
OPENCLIP_BIGG: dict[str, Any] = {**_CLIP_COMMON, "hidden_size": 1280, "num_attention_heads": 20,
                                 "num_hidden_layers": OPENCLIP_BIGG_LAYERS, "hidden_act": "gelu",
                                 "projection_dim": 1280}


def unet_config(family: str) -> dict[str, Any]:
    """The tiny UNet2DConditionModel config of `family` (a fresh dict)."""
    fam = get_family(family)
    key = {"sd1": "sd1", "sd2": "sd2"}.get(fam.base) or ("sdxl-refiner" if fam.name == "sdxl-refiner" else "sdxl-base")
    config = {**_UNET_COMMON, **copy.deepcopy(_UNETS[key])}
    config["in_channels"] = 9 if fam.inpaint else 4
    return config


def vae_config(family: str = "sd1") -> dict[str, Any]:
    """The tiny AutoencoderKL config: the real 4 levels (8x downsampling), 32/64 channels, 4 latent channels."""
    fam = get_family(family)
    config: dict[str, Any] = {
        "act_fn": "silu", "block_out_channels": [32, 32, 64, 64], "down_block_types": ["DownEncoderBlock2D"] * 4,
        "up_block_types": ["UpDecoderBlock2D"] * 4, "in_channels": 3, "out_channels": 3, "latent_channels": 4,
        "layers_per_block": 2, "norm_num_groups": 32, "sample_size": 1024 if fam.base == "sdxl" else 512,
        "scaling_factor": fam.vae_scaling_factor,
    }
    if fam.base == "sdxl":
        config["force_upcast"] = True
    return config


def text_encoder_configs(family: str) -> dict[str, dict[str, Any]]:
    """The tiny CLIPTextConfig kwargs of each text encoder of `family`, by diffusers component name."""
    fam = get_family(family)
    if fam.base == "sd1":
        return {"text_encoder": dict(CLIP_L)}
    if fam.base == "sd2":
        return {"text_encoder": dict(OPENCLIP_H)}
    if fam.name == "sdxl-refiner":
        return {"text_encoder_2": dict(OPENCLIP_BIGG)}
    return {"text_encoder": dict(CLIP_L), "text_encoder_2": dict(OPENCLIP_BIGG)}


def text_encoder_class(component: str) -> str:
    """The transformers class name of a text encoder: SDXL's second one has a projection (the pooled embedding)."""
    return "CLIPTextModelWithProjection" if component == "text_encoder_2" else "CLIPTextModel"


def scheduler_config(family: str) -> dict[str, Any]:
    """A scheduler config matching the family's training schedule (v-prediction for ``sd2-v``)."""
    fam = get_family(family)
    config: dict[str, Any] = {"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear",
                              "num_train_timesteps": 1000, "clip_sample": False, "set_alpha_to_one": False,
                              "steps_offset": 1, "timestep_spacing": "leading",
                              "prediction_type": "v_prediction" if fam.prediction == "v" else "epsilon"}
    return config


def build_unet(family: str, *, meta: bool = False) -> Any:
    """A UNet2DConditionModel of `family`'s tiny config, initialised from the current RNG (or on the meta device)."""
    diffusers = import_diffusers()
    if meta:
        with torch.device("meta"):
            return diffusers.UNet2DConditionModel.from_config(unet_config(family))
    return diffusers.UNet2DConditionModel.from_config(unet_config(family))


def build_vae(family: str = "sd1", seed: int = 0) -> Any:
    """The standalone tiny VAE that :func:`nodegraph.models.synthetic.write_vae` writes (seeded, RNG untouched)."""
    diffusers = import_diffusers()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        vae = diffusers.AutoencoderKL.from_config(vae_config(family))
    vae.eval()
    vae.requires_grad_(False)
    return vae


def build_components(family: str, seed: int = 0) -> dict[str, torch.nn.Module]:
    """The source diffusers/transformers models of a tiny `family` checkpoint, in eval mode.

    Keys: ``unet``, ``vae`` and the family's text encoders (``text_encoder``, ``text_encoder_2``). They are built in
    that order right after ``torch.manual_seed(seed)`` with default initialisation; the caller's RNG state is left
    untouched. :func:`nodegraph.models.synthetic.write_checkpoint` with the same arguments writes exactly these.
    """
    components, _ = build_components_with_extras(family, seed)
    return components


def build_components_with_extras(family: str, seed: int = 0) -> tuple[dict[str, torch.nn.Module],
                                                                      dict[str, torch.Tensor]]:
    """:func:`build_components`, plus the tensors a single file holds that diffusers drops (drawn from the same RNG).

    Only SD 2.x has extras: ``text_encoder:text_projection`` (the unused OpenCLIP projection) and
    ``text_encoder:extra_block.<transformers layer key>`` (the final OpenCLIP block that SD 2.x skips).
    """
    if family not in FAMILIES:
        get_family(family)  # raises with the list of known families
    diffusers = import_diffusers()
    transformers = import_transformers()
    from transformers.models.clip.modeling_clip import CLIPEncoderLayer

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        components: dict[str, torch.nn.Module] = {
            "unet": diffusers.UNet2DConditionModel.from_config(unet_config(family)),
            "vae": diffusers.AutoencoderKL.from_config(vae_config(family)),
        }
        extras: dict[str, torch.Tensor] = {}
        for name, kwargs in text_encoder_configs(family).items():
            config = transformers.CLIPTextConfig(**kwargs)
            cls = getattr(transformers, text_encoder_class(name))
            components[name] = cls(config)
            if get_family(family).base == "sd2":
                # The real OpenCLIP ViT-H has one block more than diffusers keeps, and an unused projection.
                block = CLIPEncoderLayer(config)
                for key, value in block.state_dict().items():
                    extras[f"{name}:extra_block.{key}"] = value
                extras[f"{name}:text_projection"] = torch.randn(config.hidden_size, config.hidden_size) * (
                    config.hidden_size ** -0.5)
    for module in components.values():
        module.eval()
        module.requires_grad_(False)
    return components, extras
