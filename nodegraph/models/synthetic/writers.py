"""Writing tiny checkpoints, standalone VAEs and diffusers config folders to disk."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors.torch import save_file

from nodegraph.models.families import get_family
from nodegraph.models.synthetic.ldm_layout import checkpoint_state_dict, vae_to_ldm
from nodegraph.models.synthetic.pickles import lightning_checkpoint, save_legacy_pickle
from nodegraph.models.synthetic.tiny import (
    build_components_with_extras,
    build_vae,
    scheduler_config,
    text_encoder_class,
    text_encoder_configs,
    unet_config,
    vae_config,
)

CHECKPOINT_SUFFIXES = (".safetensors", ".ckpt")


def ldm_state_dict(family: str, seed: int = 0, *, include_vae: bool = True) -> dict[str, torch.Tensor]:
    """The float32 single-file state dict that :func:`write_checkpoint` writes (for variants: truncated, …)."""
    components, extras = build_components_with_extras(family, seed)
    return checkpoint_state_dict(family, components, extras, include_vae=include_vae)


def cast_state(state: Mapping[str, torch.Tensor], dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """Floating-point tensors cast to `dtype` (integer buffers such as ``position_ids`` kept), contiguous."""
    return {k: (v.to(dtype) if v.is_floating_point() else v).contiguous() for k, v in state.items()}


def save_checkpoint_state(path: str | Path, state: Mapping[str, torch.Tensor], *, dtype: torch.dtype = torch.float32,
                          global_step: int = 840000) -> Path:
    """Write a single-file state dict: ``.safetensors`` flat, ``.ckpt`` wrapped as a Lightning 1.4 checkpoint."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in CHECKPOINT_SUFFIXES:
        raise ValueError(f"{path.name}: a checkpoint is written as {' or '.join(CHECKPOINT_SUFFIXES)}")
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = cast_state(state, dtype)
    if suffix == ".ckpt":
        return save_legacy_pickle(lightning_checkpoint(tensors, global_step=global_step), path)
    save_file(tensors, str(path), metadata={"format": "pt"})
    return path


def write_checkpoint(path: str | Path, family: str, seed: int = 0, dtype: torch.dtype = torch.float32,
                     include_vae: bool = True) -> Path:
    """Write a tiny `family` checkpoint in the original single-file layout (``.safetensors`` or ``.ckpt``).

    Its tensors are those of ``build_components(family, seed)``, renamed (and fused/reshaped where the original
    layout differs), plus what real files carry besides (noise-schedule buffers, ``position_ids``, OpenCLIP's
    ``logit_scale``, SD 2.x's unused last block and projection). ``.ckpt`` files hold the same dict inside a
    Lightning wrapper. `include_vae=False` leaves out ``first_stage_model.*``.
    """
    get_family(family)
    step = 875000 if family == "sd2-v" else 840000  # diffusers guesses v-prediction from 875000
    return save_checkpoint_state(path, ldm_state_dict(family, seed, include_vae=include_vae), dtype=dtype,
                                 global_step=step)


def vae_file_state(family: str = "sd1", seed: int = 0) -> dict[str, torch.Tensor]:
    """The tensors of a standalone VAE file: bare LDM keys plus a few training leftovers (``loss.*``, EMA)."""
    state = vae_to_ldm(build_vae(family, seed).state_dict())
    gen = torch.Generator().manual_seed(seed)
    state.update({
        "loss.logvar": torch.zeros(()),
        "loss.discriminator.main.0.weight": torch.randn(8, 3, 4, 4, generator=gen) * 0.02,
        "loss.discriminator.main.0.bias": torch.zeros(8),
        "loss.perceptual_loss.lin0.model.1.weight": torch.rand(1, 8, 1, 1, generator=gen),
        "model_ema.decay": torch.tensor(0.9999),
        "model_ema.num_updates": torch.tensor(0, dtype=torch.int32),
    })
    return state


def write_vae(path: str | Path, family: str = "sd1", seed: int = 0, dtype: torch.dtype = torch.float32) -> Path:
    """Write a standalone VAE (``encoder.*``, ``decoder.*``, ``quant_conv``, ``post_quant_conv``, stray ``loss.*``).

    ``.safetensors`` is flat; ``.ckpt``/``.pt`` is a pickled ``{"state_dict": …}``. Its weights are
    ``build_vae(family, seed)``'s, which differ from any checkpoint's embedded VAE.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = cast_state(vae_file_state(family, seed), dtype)
    if path.suffix.lower() == ".safetensors":
        save_file(tensors, str(path), metadata={"format": "pt"})
    elif path.suffix.lower() in (".ckpt", ".pt"):
        torch.save({"state_dict": tensors}, path)
    else:
        raise ValueError(f"{path.name}: a VAE is written as .safetensors, .ckpt or .pt")
    return path


def write_diffusers_config(folder: str | Path, family: str) -> Path:
    """Write the tiny configs of `family` as a diffusers pipeline folder without weights or tokenizer files.

    ``model_index.json`` plus ``unet/``, ``vae/``, ``text_encoder*/`` and ``scheduler/`` configs: usable as
    ``config=`` for diffusers' single-file loaders (tokenizers must then be passed in).
    """
    fam = get_family(family)
    folder = Path(folder)
    sdxl = fam.base == "sdxl"
    pipeline = ("StableDiffusionXL" + ("Img2Img" if fam.name == "sdxl-refiner" else "")
                + ("Inpaint" if fam.inpaint else "") + "Pipeline") if sdxl else \
        ("StableDiffusionInpaintPipeline" if fam.inpaint else "StableDiffusionPipeline")
    index: dict[str, object] = {"_class_name": pipeline, "scheduler": ["diffusers", "EulerDiscreteScheduler"],
                                "unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderKL"]}
    files: dict[str, dict] = {"unet/config.json": {"_class_name": "UNet2DConditionModel", **unet_config(family)},
                              "vae/config.json": {"_class_name": "AutoencoderKL", **vae_config(family)},
                              "scheduler/scheduler_config.json": {"_class_name": "EulerDiscreteScheduler",
                                                                  **scheduler_config(family)}}
    for component, config in text_encoder_configs(family).items():
        cls = text_encoder_class(component)
        index[component] = ["transformers", cls]
        index[component.replace("text_encoder", "tokenizer")] = ["transformers", "CLIPTokenizer"]
        files[f"{component}/config.json"] = {"architectures": [cls], "model_type": "clip_text_model", **config}
    if sdxl:
        index["requires_aesthetics_score"] = fam.name == "sdxl-refiner"
        index["force_zeros_for_empty_prompt"] = fam.name != "sdxl-refiner"
        for missing in ("text_encoder", "tokenizer"):
            index.setdefault(missing, [None, None])
    else:
        index.update({"safety_checker": [None, None], "feature_extractor": [None, None],
                      "requires_safety_checker": False})
    files["model_index.json"] = index
    for name, content in files.items():
        target = folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(content, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return folder
