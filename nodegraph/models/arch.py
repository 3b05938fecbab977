"""Model configs from tensor shapes: the bundled family config, with its structure adjusted to what a file holds.

diffusers' converters need a config whose structure matches the checkpoint. For every real checkpoint the bundled
family config already does; deriving the structural fields (channels, blocks, depths, widths) from the shapes as
well makes unusual checkpoints — pruned, distilled, or the tiny ones the tests and the demo write — load through the
same code instead of failing on a mismatch. Fields that shapes cannot show (heads, norms, activations) come from the
family config. Works on names and shapes only, so it runs on a safetensors header without loading weights.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

Shapes = Mapping[str, tuple[int, ...]]
UNET_PREFIX = "model.diffusion_model."


def _indices(shapes: Shapes, pattern: str) -> list[int]:
    regex = re.compile(pattern)
    return sorted({int(m.group(1)) for name in shapes if (m := regex.match(name))})


def unet_config_from_shapes(shapes: Shapes, family_config: Mapping[str, Any], prefix: str = UNET_PREFIX) -> dict:
    """A UNet2DConditionModel config for the LDM UNet under `prefix`, starting from `family_config`."""
    config = dict(family_config)
    conv_in = shapes[prefix + "input_blocks.0.0.weight"]
    config["in_channels"], model_channels = conv_in[1], conv_in[0]
    config["out_channels"] = shapes[prefix + "out.2.weight"][0]
    levels: list[dict[str, Any]] = [{"channels": model_channels, "res": 0, "depths": []}]
    for i in _indices(shapes, re.escape(prefix) + r"input_blocks\.(\d+)\.")[1:]:
        block = f"{prefix}input_blocks.{i}."
        if block + "0.op.weight" in shapes:  # a downsampler closes the level
            levels.append({"channels": None, "res": 0, "depths": []})
            continue
        level = levels[-1]
        level["channels"] = shapes[block + "0.in_layers.2.weight"][0]
        level["res"] += 1
        depth = len(_indices(shapes, re.escape(block) + r"1\.transformer_blocks\.(\d+)\."))
        level["depths"].append(depth)
    config["block_out_channels"] = [level["channels"] for level in levels]
    config["layers_per_block"] = levels[0]["res"]
    if len(levels) != len(family_config["block_out_channels"]):
        # A non-standard model (pruned, distilled, tiny): where attention sits comes from the file. A standard one
        # keeps its family's block types, so attention tensors missing from it are reported as missing, not
        # silently turned into attention-free blocks.
        has_attention = [any(level["depths"]) for level in levels]
        config["down_block_types"] = ["CrossAttnDownBlock2D" if a else "DownBlock2D" for a in has_attention]
        config["up_block_types"] = ["CrossAttnUpBlock2D" if a else "UpBlock2D" for a in reversed(has_attention)]
    # Every supported family has attention in the middle block: its absence is a missing part, never a variant.
    mid_depth = len(_indices(shapes, re.escape(prefix) + r"middle_block\.1\.transformer_blocks\.(\d+)\."))
    # Levels without attention ignore their depth, except that diffusers takes the mid block's depth from the last
    # entry (the SDXL refiner: no attention at the last level, 4 blocks in the middle).
    depths = [max(level["depths"]) if any(level["depths"]) else 1 for level in levels]
    if not any(levels[-1]["depths"]):
        depths[-1] = max(mid_depth, 1)
    if "transformer_layers_per_block" in family_config or any(d != 1 for d in depths):
        config["transformer_layers_per_block"] = depths
    to_k = next((shape for name, shape in shapes.items()
                 if name.startswith(prefix) and name.endswith("attn2.to_k.weight")), None)
    if to_k is not None:
        config["cross_attention_dim"] = to_k[1]
    proj_in = next((shape for name, shape in shapes.items()
                    if name.startswith(prefix) and name.endswith(".proj_in.weight")), None)
    if proj_in is not None:
        config["use_linear_projection"] = len(proj_in) == 2
    heads = family_config.get("attention_head_dim")
    if isinstance(heads, (list, tuple)):  # SD 2 / SDXL: 64-channel heads, counted per level
        config["attention_head_dim"] = [max(c // 64, 1) for c in config["block_out_channels"]]
    label = shapes.get(prefix + "label_emb.0.0.weight")
    if label is not None:
        config["projection_class_embeddings_input_dim"] = label[1]
    config["sample_size"] = family_config.get("sample_size", 64)
    return config


def vae_config_from_shapes(shapes: Shapes, family_config: Mapping[str, Any], prefix: str = "") -> dict:
    """An AutoencoderKL config for the LDM VAE under `prefix` (``first_stage_model.`` or none)."""
    config = dict(family_config)
    levels = _indices(shapes, re.escape(prefix) + r"encoder\.down\.(\d+)\.")
    config["block_out_channels"] = [shapes[f"{prefix}encoder.down.{i}.block.0.conv1.weight"][0] for i in levels]
    config["layers_per_block"] = len(_indices(shapes, re.escape(prefix) + r"encoder\.down\.0\.block\.(\d+)\."))
    config["down_block_types"] = ["DownEncoderBlock2D"] * len(levels)
    config["up_block_types"] = ["UpDecoderBlock2D"] * len(levels)
    config["latent_channels"] = shapes[prefix + "decoder.conv_in.weight"][1]
    config["in_channels"] = shapes[prefix + "encoder.conv_in.weight"][1]
    config["out_channels"] = shapes[prefix + "decoder.conv_out.weight"][0]
    return config


def clip_config_from_shapes(shapes: Shapes, family_config: Mapping[str, Any], prefix: str) -> dict:
    """A CLIPTextConfig dict for an encoder already in transformers' layout under `prefix` (e.g. ``text_model.``)."""
    config = dict(family_config)
    token = shapes[prefix + "embeddings.token_embedding.weight"]
    config["vocab_size"], config["hidden_size"] = token
    config["max_position_embeddings"] = shapes[prefix + "embeddings.position_embedding.weight"][0]
    layers = _indices(shapes, re.escape(prefix) + r"encoder\.layers\.(\d+)\.")
    config["num_hidden_layers"] = len(layers)
    config["intermediate_size"] = shapes[f"{prefix}encoder.layers.0.mlp.fc1.weight"][0]
    config["num_attention_heads"] = max(config["hidden_size"] // 64, 1)
    return config


def openclip_layer_count(shapes: Shapes, prefix: str) -> int:
    """How many transformer blocks an OpenCLIP text encoder under `prefix` holds in the file."""
    return len(_indices(shapes, re.escape(prefix) + r"transformer\.resblocks\.(\d+)\."))
