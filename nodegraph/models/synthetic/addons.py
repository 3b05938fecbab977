"""Add-on files for the tiny models: LoRAs (kohya, LoCon, diffusers/PEFT, LoHa, LoKr), textual inversion embeddings
and AUTOMATIC1111 hypernetworks, in the layouts the real ones have.

Weights are random with real signal (a UNet LoRA's update is about half the size of the weight it patches) so
applying them visibly changes outputs. Every file is drawn from its own ``torch.Generator``: the global RNG is not
touched.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from nodegraph.models.families import get_family
from nodegraph.models.synthetic.ldm_layout import ldm_unet_name, unet_module_map
from nodegraph.models.synthetic.tiny import build_unet, text_encoder_configs, unet_config

LORA_FORMATS = ("kohya", "locon", "peft", "loha", "lokr")
EMBEDDING_FORMATS = ("a1111-pt", "safetensors", "diffusers", "sdxl")
#: AUTOMATIC1111 hypernetworks patch the attention inputs of these widths (SD 1.x: 768 context, 320/640/1280 self).
HYPERNETWORK_WIDTHS = (768, 320, 640, 1280)

_ATTENTION_PROJECTIONS = ("to_q", "to_k", "to_v", "to_out.0")
#: Size of a LoRA's update relative to 1/sqrt(fan_in): strong in the UNet, gentler in the (deep, narrow-init) CLIP.
_UNET_STRENGTH = 0.3
_TEXT_STRENGTH = 0.1
_TEXT_PROJECTIONS = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.out_proj")


def _is_1x1(module: torch.nn.Module) -> bool:
    return isinstance(module, torch.nn.Conv2d) and module.kernel_size == (1, 1)


def _unet_targets(family: str, fmt: str) -> list[tuple[str, tuple[int, ...]]]:
    """(diffusers module path, weight shape) of the UNet modules a LoRA of format `fmt` patches."""
    unet = build_unet(family, meta=True)
    targets = []
    for name, module in unet.named_modules():
        in_transformer = ".attentions." in name
        if fmt in ("peft", "loha", "lokr"):  # diffusers' training scripts: attention projections only
            wanted = in_transformer and name.endswith(tuple("." + p for p in _ATTENTION_PROJECTIONS))
        elif isinstance(module, torch.nn.Linear) or _is_1x1(module):  # kohya: all of them inside Transformer2DModel
            wanted = in_transformer
        elif isinstance(module, torch.nn.Conv2d):  # LoCon adds the 3x3 convs of the resnets
            wanted = fmt == "locon" and ".resnets." in name and name.endswith((".conv1", ".conv2"))
        else:
            wanted = False
        if wanted:
            targets.append((name, tuple(module.weight.shape)))
    return targets


def _text_targets(family: str, fmt: str) -> list[tuple[str, str, tuple[int, ...]]]:
    """(component, module path with ``text_model.``, weight shape) of the text encoder modules a LoRA patches."""
    targets = []
    for component, config in text_encoder_configs(family).items():
        hidden, inner = config["hidden_size"], config["intermediate_size"]
        modules = [(p, (hidden, hidden)) for p in _TEXT_PROJECTIONS]
        if fmt in ("kohya", "locon"):
            modules += [("mlp.fc1", (inner, hidden)), ("mlp.fc2", (hidden, inner))]
        for layer in range(config["num_hidden_layers"]):
            for path, shape in modules:
                targets.append((component, f"text_model.encoder.layers.{layer}.{path}", shape))
    return targets


def _kohya_name(family: str, component: str, path: str, module_map: dict[str, str] | None) -> str:
    if component == "unet":
        return "lora_unet_" + (ldm_unet_name(path, module_map) if module_map else path).replace(".", "_")
    if get_family(family).base == "sdxl":
        return ("lora_te1_" if component == "text_encoder" else "lora_te2_") + path.replace(".", "_")
    return "lora_te_" + path.replace(".", "_")


def _pair(shape: tuple[int, ...], rank: int, scale: float, gen: torch.Generator,
          strength: float) -> tuple[torch.Tensor, torch.Tensor]:
    """LoRA down/up weights whose scaled product has entries of std ``strength / sqrt(fan_in)`` (a default-initialised
    Linear has about 0.58 / sqrt(fan_in))."""
    out_dim, in_dim = shape[0], shape[1]
    fan_in = in_dim * (shape[2] * shape[3] if len(shape) == 4 else 1)
    down = torch.randn(rank, *shape[1:], generator=gen) / fan_in ** 0.5
    up = torch.randn(out_dim, rank, generator=gen) * (strength / (rank ** 0.5 * scale))
    if len(shape) == 4:
        up = up.reshape(out_dim, rank, 1, 1)
    return down, up


def lora_state_dict(family: str = "sd1", fmt: str = "kohya", *, rank: int = 4, alpha: float | None = None,
                    seed: int = 0) -> dict[str, torch.Tensor]:
    """The tensors of a LoRA-type add-on for `family` (see :func:`write_lora`)."""
    if fmt not in LORA_FORMATS:
        raise ValueError(f"unknown LoRA format {fmt!r}; known: {', '.join(LORA_FORMATS)}")
    alpha = float(rank) / 2 if alpha is None else float(alpha)
    scale = alpha / rank
    gen = torch.Generator().manual_seed(seed)
    module_map = unet_module_map(unet_config(family)) if get_family(family).base == "sdxl" else None
    targets = [("unet", path, shape) for path, shape in _unet_targets(family, fmt)] + _text_targets(family, fmt)
    state: dict[str, torch.Tensor] = {}
    for component, path, shape in targets:
        strength = _UNET_STRENGTH if component == "unet" else _TEXT_STRENGTH
        if fmt == "peft":
            down, up = _pair(shape, rank, 1.0, gen, strength)  # diffusers-format files carry no alpha: scale 1
            state[f"{component}.{path}.lora_A.weight"] = down
            state[f"{component}.{path}.lora_B.weight"] = up
            continue
        name = _kohya_name(family, component, path, module_map)
        if fmt in ("kohya", "locon"):
            down, up = _pair(shape, rank, scale, gen, strength)
            state[f"{name}.lora_down.weight"], state[f"{name}.lora_up.weight"] = down, up
        elif fmt == "loha":
            out_dim, in_dim = shape[0], shape[1]
            for i in (1, 2):
                state[f"{name}.hada_w{i}_a"] = torch.randn(out_dim, rank, generator=gen) * 0.1
                state[f"{name}.hada_w{i}_b"] = torch.randn(rank, in_dim, generator=gen) * 0.1
        else:  # lokr: kron(w1, w2) with a 4x4 w1
            out_dim, in_dim = shape[0], shape[1]
            state[f"{name}.lokr_w1"] = torch.randn(4, 4, generator=gen) * 0.1
            state[f"{name}.lokr_w2"] = torch.randn(out_dim // 4, in_dim // 4, generator=gen) * 0.1
        state[f"{name}.alpha"] = torch.tensor(alpha)
    return state


def _lora_metadata(family: str, fmt: str, rank: int, alpha: float) -> dict[str, str]:
    if fmt == "peft":
        return {"format": "pt"}
    base = {"sd1": "sd_v1", "sd2": "sd_v2", "sdxl": "sdxl_base_v1-0"}[get_family(family).base]
    meta = {"ss_network_dim": str(rank), "ss_network_alpha": str(alpha), "ss_base_model_version": base,
            "ss_v2": str(get_family(family).base == "sd2"), "ss_output_name": f"tiny-{fmt}-{family}"}
    if fmt == "kohya":
        meta["ss_network_module"] = "networks.lora"
    else:
        meta["ss_network_module"] = "lycoris.kohya"
        meta["ss_network_args"] = json.dumps({"algo": fmt, "conv_dim": str(rank), "conv_alpha": str(alpha)})
    return meta


def write_lora(path: str | Path, family: str = "sd1", fmt: str = "kohya", *, rank: int = 4,
               alpha: float | None = None, seed: int = 0) -> Path:
    """Write a LoRA-type add-on for `family` as ``.safetensors``.

    `fmt`: ``kohya`` (``lora_unet_…``/``lora_te_…``; SDXL UNet names in the original ``input_blocks`` layout,
    ``lora_te1_``/``lora_te2_``), ``locon`` (kohya names plus 3x3 LoRAs on the resnet convs), ``peft`` (diffusers
    format ``unet.….lora_A.weight``), ``loha`` (``hada_w1_a`` …) or ``lokr`` (``lokr_w1`` …). `alpha` defaults to
    rank / 2.
    """
    alpha_value = float(rank) / 2 if alpha is None else float(alpha)
    state = lora_state_dict(family, fmt, rank=rank, alpha=alpha_value, seed=seed)
    return _save(path, state, _lora_metadata(family, fmt, rank, alpha_value))


def _save(path: str | Path, state: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in state.items()}, str(path), metadata=metadata)
    return path


def embedding_vectors(width: int, vectors: int, seed: int) -> torch.Tensor:
    """Random embedding vectors ``[vectors, width]`` with about the spread of trained ones."""
    return torch.randn(vectors, width, generator=torch.Generator().manual_seed(seed)) * 0.05


def write_embedding(path: str | Path, fmt: str = "a1111-pt", *, family: str = "sd1", vectors: int = 2,
                    seed: int = 0, token: str | None = None) -> Path:
    """Write a textual inversion embedding in one of :data:`EMBEDDING_FORMATS`.

    ``a1111-pt``: AUTOMATIC1111's pickled dict (``string_to_param``); ``safetensors``: ``{"emb_params": [n, d]}``;
    ``diffusers``: ``{token: [d]}`` (one vector); ``sdxl``: ``{"clip_l": [n, 768], "clip_g": [n, 1280]}``. The width
    is the family's text encoder width (768 for SD 1.x, 1024 for SD 2.x).
    """
    path = Path(path)
    token = token or f"<{path.stem}>"
    width = {"sd1": 768, "sd2": 1024, "sdxl": 768}[get_family(family).base]
    if fmt == "a1111-pt":
        data = {"string_to_token": {"*": 265}, "string_to_param": {"*": embedding_vectors(width, vectors, seed)},
                "name": path.stem, "step": 3000, "sd_checkpoint": "4bdfc29c", "sd_checkpoint_name": "tiny-sd1"}
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(data, path)
        return path
    if fmt == "safetensors":
        return _save(path, {"emb_params": embedding_vectors(width, vectors, seed)})
    if fmt == "diffusers":
        return _save(path, {token: embedding_vectors(width, 1, seed)[0]})
    if fmt == "sdxl":
        return _save(path, {"clip_l": embedding_vectors(768, vectors, seed),
                            "clip_g": embedding_vectors(1280, vectors, seed + 1)})
    raise ValueError(f"unknown embedding format {fmt!r}; known: {', '.join(EMBEDDING_FORMATS)}")


def hypernetwork_data(*, seed: int = 0, widths: tuple[int, ...] = HYPERNETWORK_WIDTHS,
                      layer_structure: tuple[float, ...] = (1, 2, 1),
                      dtype: torch.dtype = torch.float32) -> dict[Any, Any]:
    """The dict an AUTOMATIC1111 hypernetwork ``.pt`` holds: per width a [key, value] pair of small MLP states."""
    gen = torch.Generator().manual_seed(seed)

    def mlp(width: int) -> dict[str, torch.Tensor]:
        state = {}
        for i in range(len(layer_structure) - 1):
            fan_in, fan_out = int(width * layer_structure[i]), int(width * layer_structure[i + 1])
            state[f"linear.{i}.weight"] = (torch.randn(fan_out, fan_in, generator=gen) * 0.02).to(dtype)
            state[f"linear.{i}.bias"] = (torch.randn(fan_out, generator=gen) * 0.005).to(dtype)
        return state

    data: dict[Any, Any] = {width: [mlp(width), mlp(width)] for width in widths}
    data.update({"layer_structure": list(layer_structure), "activation_func": "linear", "is_layer_norm": False,
                 "weight_initialization": "Normal", "use_dropout": False, "activate_output": False,
                 "name": "tiny-hypernetwork", "step": 2000, "sd_checkpoint": "4bdfc29c",
                 "sd_checkpoint_name": "tiny-sd1"})
    return data


def write_hypernetwork(path: str | Path, *, seed: int = 0, widths: tuple[int, ...] = HYPERNETWORK_WIDTHS,
                       dtype: torch.dtype = torch.float32) -> Path:
    """Write an AUTOMATIC1111 hypernetwork ``.pt`` (layer structure 1-2-1, linear activation)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = hypernetwork_data(seed=seed, widths=widths, dtype=dtype)
    data["name"] = path.stem
    torch.save(data, path)
    return path
