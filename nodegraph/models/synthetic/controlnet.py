"""Tiny random-weight ControlNets matching the tiny UNets, in the layouts real ControlNet files have.

A ControlNet is diffusers' ``ControlNetModel.from_unet`` of the family's tiny UNet (the encoder half copied, as
training starts from it) with a smaller conditioning embedding, drawn under a fixed seed. The convolutions a freshly
made ControlNet keeps at zero (``zero_convs``, ``middle_block_out``) get PyTorch's default random initialisation
instead, and the hint block (whose last convolution starts at zero too) a scale-keeping one: otherwise the control
image would change (nearly) nothing and a test could prove nothing.

Layouts: ``ldm`` (lllyasviel's single files: ``control_model.input_blocks…``, ``control_model.input_hint_block…``,
``control_model.zero_convs…``, ``control_model.middle_block_out…``; ``.safetensors`` or a pickled ``.pth``),
``diffusers`` (the ControlNetModel state dict in one ``.safetensors``) and ``folder`` (``save_pretrained``: config.json
+ diffusion_pytorch_model.safetensors). The LDM names come from the UNet layout of
:mod:`nodegraph.models.synthetic.ldm_layout` plus the ControlNet's own parts, and are checked against diffusers' own
converter (``convert_controlnet_checkpoint``) every time they are made: they are exactly what it reads.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from nodegraph.models.synthetic.ldm_layout import ldm_unet_name, unet_module_map
from nodegraph.models.synthetic.tiny import unet_config

CONTROLNET_LAYOUTS = ("ldm", "diffusers", "folder")
#: The conditioning embedding's channels: the real (16, 32, 96, 256) shrunk, keeping its four levels (three stride-2
#: convolutions take the image to the latent size).
CONDITIONING_CHANNELS = (16, 16, 32, 32)
LDM_PREFIX = "control_model."


def build_controlnet(family: str = "sd1", seed: int = 0) -> Any:
    """The tiny ControlNetModel of `family` (``sd1``, ``sd2``, ``sdxl-base`` …), seeded; the caller's RNG is left
    untouched."""
    from nodegraph.models.offline import import_diffusers

    diffusers = import_diffusers()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet = diffusers.UNet2DConditionModel.from_config(unet_config(family))
        controlnet = diffusers.ControlNetModel.from_unet(
            unet, conditioning_embedding_out_channels=CONDITIONING_CHANNELS)
        for module in (*controlnet.controlnet_down_blocks, controlnet.controlnet_mid_block):
            module.reset_parameters()
        # PyTorch's default initialisation shrinks the signal about threefold per convolution: through the hint
        # block's eight, the control image would all but vanish. A trained hint block passes it on; He's
        # initialisation (variance 2 / fan-in before each SiLU, 1 / fan-in for the last, no biases) keeps its scale.
        embedding = controlnet.controlnet_cond_embedding
        for conv in (embedding.conv_in, *embedding.blocks, embedding.conv_out):
            torch.nn.init.kaiming_normal_(conv.weight, nonlinearity="linear" if conv is embedding.conv_out else "relu")
            torch.nn.init.zeros_(conv.bias)
    controlnet.eval()
    controlnet.requires_grad_(False)
    return controlnet


def ldm_names(state_names: list[str], config: Any) -> dict[str, str]:
    """diffusers name → lllyasviel name (without ``control_model.``) of each tensor of a ControlNet with `config`.

    Raises AssertionError when diffusers' converter would not read the names back to the same tensors."""
    from nodegraph.models.controlnet import ldm_names_to_diffusers

    down_types = list(config["down_block_types"])
    # The UNet layout's module map, with up blocks mirroring the down blocks (a ControlNet has none to name).
    module_map = unet_module_map({"layers_per_block": config["layers_per_block"], "down_block_types": down_types,
                                  "up_block_types": ["CrossAttnUpBlock2D" if "CrossAttn" in kind else "UpBlock2D"
                                                     for kind in reversed(down_types)]})
    hint_blocks = 2 * (len(config["conditioning_embedding_out_channels"]) - 1)
    names = {}
    for name in state_names:
        module, _, kind = name.rpartition(".")
        if module == "controlnet_cond_embedding.conv_in":
            names[name] = f"input_hint_block.0.{kind}"
        elif module.startswith("controlnet_cond_embedding.blocks."):
            names[name] = f"input_hint_block.{2 * (int(module.rpartition('.')[2]) + 1)}.{kind}"
        elif module == "controlnet_cond_embedding.conv_out":
            names[name] = f"input_hint_block.{2 * (hint_blocks + 1)}.{kind}"
        elif module.startswith("controlnet_down_blocks."):
            names[name] = f"zero_convs.{module.rpartition('.')[2]}.0.{kind}"
        elif module == "controlnet_mid_block":
            names[name] = f"middle_block_out.0.{kind}"
        else:
            names[name] = ldm_unet_name(name, module_map)
    back = ldm_names_to_diffusers(names.values())
    assert back == names, sorted(set(back.items()) ^ set(names.items()))[:5]
    return names


def controlnet_state_dict(family: str = "sd1", layout: str = "ldm", seed: int = 0) -> dict[str, torch.Tensor]:
    """The float32 tensors of a tiny ControlNet file in `layout` (``ldm``: ``control_model.``-prefixed)."""
    controlnet = build_controlnet(family, seed)
    state = {name: tensor.contiguous() for name, tensor in controlnet.state_dict().items()}
    if layout == "diffusers":
        return state
    if layout != "ldm":
        raise ValueError(f"unknown single-file ControlNet layout {layout!r}; known: ldm, diffusers")
    names = ldm_names(list(state), controlnet.config)
    return {LDM_PREFIX + names[name]: tensor for name, tensor in state.items()}


def write_controlnet(path: str | Path, family: str = "sd1", layout: str = "ldm", seed: int = 0,
                     dtype: torch.dtype = torch.float32) -> Path:
    """Write a tiny `family` ControlNet at `path` in `layout` (see :data:`CONTROLNET_LAYOUTS`).

    ``ldm`` and ``diffusers`` write one file: ``.safetensors``, or for ``ldm`` also a pickled ``.pth``/``.pt`` (a
    plain state dict, as lllyasviel's are); ``folder`` writes a diffusers folder at `path`. The weights are
    ``build_controlnet(family, seed)``'s in every layout.
    """
    path = Path(path)
    if layout not in CONTROLNET_LAYOUTS:
        raise ValueError(f"unknown ControlNet layout {layout!r}; known: {', '.join(CONTROLNET_LAYOUTS)}")
    if layout == "folder":
        build_controlnet(family, seed).to(dtype).save_pretrained(path, safe_serialization=True)
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {name: tensor.to(dtype).contiguous()
             for name, tensor in controlnet_state_dict(family, layout, seed).items()}
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        save_file(state, str(path), metadata={"format": "pt"})
    elif suffix in (".pth", ".pt") and layout == "ldm":
        torch.save(state, path)
    else:
        raise ValueError(f"{path.name}: a {layout} ControlNet is written as .safetensors"
                         + (" or .pth" if layout == "ldm" else ""))
    return path
