"""LyCORIS add-ons (LoHa, LoKr, LoCon/LoRA with DoRA, full/diff, IA3, norm) merged into a model's weights.

diffusers and peft cannot load LyCORIS files (peft's LoHa/LoKr layers build their own shapes from a config and a
factorisation rule, which a trained file's shapes need not follow; DoRA's strength semantics differ too), and the
``lycoris-lora`` package's functions pick compiled/fused kernels per call and importing it pulls its kohya training
integration (transformers, accelerate: ~9 s). So the formulas are written here, each one a line, and tested against
``lycoris-lora``'s own modules (``make_module_from_state_dict`` + ``get_merged_weight``) in
``tests/models/test_lycoris.py`` to ≤ 1e-6 in fp32.

Files name their layers the kohya way (``lora_unet_down_blocks_0_…_to_k``, ``lora_te_text_model_…_q_proj``,
SDXL's ``lora_te1_``/``lora_te2_`` and SGM names ``lora_unet_input_blocks_4_1_…``; LyCORIS's own diffusers wrapper
writes ``lycoris_…``): a layer's name is its module path with ``.`` replaced by ``_``.

Strength semantics follow ComfyUI and AUTOMATIC1111: the merged weight is ``W + s·(W_patched − W)`` for DoRA (so
strength 0 is the base model exactly, strength 1 is LyCORIS's merge), and ``W + s·ΔW`` / ``W·(1 + s·w)`` otherwise.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from nodegraph.models.lycoris_keys import TEXT_PREFIXES, UNET_PREFIXES, split_key

#: tensor-name suffixes of each algorithm (the first set must all be present; "alpha" and "dora_scale" are optional)
_ALGORITHMS: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    "loha": (frozenset({"hada_w1_a", "hada_w1_b", "hada_w2_a", "hada_w2_b"}), frozenset({"hada_t1", "hada_t2"})),
    "lokr": (frozenset(), frozenset({"lokr_w1", "lokr_w1_a", "lokr_w1_b", "lokr_w2", "lokr_w2_a", "lokr_w2_b",
                                     "lokr_t2"})),
    "lora": (frozenset({"lora_up.weight", "lora_down.weight"}), frozenset({"lora_mid.weight"})),
    "full": (frozenset({"diff"}), frozenset({"diff_b"})),
    "ia3": (frozenset({"weight", "on_input"}), frozenset()),
    "norm": (frozenset({"w_norm"}), frozenset({"b_norm"})),
}
_COMMON = frozenset({"alpha", "dora_scale"})


@dataclass(frozen=True)
class PatchModule:
    """One patched layer of a file: its name there, its algorithm and its tensors by suffix."""

    name: str
    algorithm: str
    tensors: Mapping[str, torch.Tensor]


def parse_modules(state: Mapping[str, torch.Tensor]) -> tuple[dict[str, PatchModule], list[str]]:
    """The file's layers by name, and the names of tensors that belong to no known algorithm."""
    grouped: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in state.items():
        module, suffix = split_key(key)
        if suffix:
            grouped.setdefault(module, {})[suffix] = value
    modules, stray = {}, []
    for name, tensors in grouped.items():
        algorithm = _algorithm(tensors.keys())
        if algorithm is None:
            stray += [f"{name}.{suffix}" for suffix in tensors]
        else:
            modules[name] = PatchModule(name, algorithm, tensors)
    return modules, stray


def _algorithm(suffixes: Any) -> str | None:
    """The algorithm whose complete set of tensors `suffixes` is (None: incomplete, mixed or unknown)."""
    present = set(suffixes)
    for algorithm, (required, optional) in _ALGORITHMS.items():
        if not (required <= present and present <= required | optional | _COMMON):
            continue
        if algorithm == "lokr" and not (("lokr_w1" in present or {"lokr_w1_a", "lokr_w1_b"} <= present)
                                        and ("lokr_w2" in present or {"lokr_w2_a", "lokr_w2_b"} <= present)):
            continue
        if algorithm == "loha" and len(present & optional) == 1:  # a Tucker core needs both halves
            continue
        return algorithm
    return None


# --- the formulas --------------------------------------------------------------------------------------------------
def _alpha(tensors: Mapping[str, torch.Tensor], rank: int) -> float:
    """alpha / rank, with a missing or zero alpha meaning 1 (as in LyCORIS and kohya)."""
    alpha = tensors.get("alpha")
    value = float(alpha) if alpha is not None else 0.0
    return 1.0 if value == 0 else value / rank


def _tucker(core: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """A Tucker-decomposed conv weight: core [r, r, k, k] with factors a [r, out] and b [r, in]."""
    return torch.einsum("i j ..., i p, j r -> p r ...", core, a, b)


def _loha(t: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """ΔW = (w1a·w1b) ⊙ (w2a·w2b) · alpha/rank (each half Tucker-decomposed when ``hada_t1``/``hada_t2`` exist)."""
    w1a, w1b, w2a, w2b = (t[k].float() for k in ("hada_w1_a", "hada_w1_b", "hada_w2_a", "hada_w2_b"))
    rank = w1b.shape[0]
    if "hada_t1" in t:
        first, second = _tucker(t["hada_t1"].float(), w1a, w1b), _tucker(t["hada_t2"].float(), w2a, w2b)
    else:
        first, second = w1a @ w1b.reshape(rank, -1), w2a @ w2b.reshape(w2b.shape[0], -1)
    return (first * second).mul_(_alpha(t, rank))


def _lokr(t: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """ΔW = w1 ⊗ w2 · alpha/rank, either half possibly given as two factors (w2 also Tucker-decomposed); both halves
    full means scale 1. Early-2023 files factor both halves (``lokr_w1_a``…``lokr_w2_b``)."""
    rank = None
    if "lokr_w1" in t:
        w1 = t["lokr_w1"].float()
    else:
        w1, rank = t["lokr_w1_a"].float() @ t["lokr_w1_b"].float(), t["lokr_w1_a"].shape[1]
    if "lokr_w2" in t:
        w2 = t["lokr_w2"].float()
    else:
        a, b = t["lokr_w2_a"].float(), t["lokr_w2_b"].float()
        rank = rank or b.shape[0]
        if "lokr_t2" in t:
            w2 = _tucker(t["lokr_t2"].float(), a, b)
        else:
            w2 = (a @ b.reshape(b.shape[0], -1)).reshape(a.shape[0], *b.shape[1:])
    while w1.dim() < w2.dim():
        w1 = w1.unsqueeze(-1)
    return torch.kron(w1, w2.contiguous()).mul_(1.0 if rank is None else _alpha(t, rank))


def _lora(t: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """ΔW = up·down · alpha/rank (LoCon convs; with a Tucker ``lora_mid`` for LoCon's CP layers)."""
    up, down = t["lora_up.weight"].float(), t["lora_down.weight"].float()
    rank = down.shape[0]
    if "lora_mid.weight" in t:
        delta = _tucker(t["lora_mid.weight"].float(), up.reshape(up.shape[0], -1).transpose(0, 1),
                        down.reshape(rank, -1))
    else:
        delta = up.reshape(up.shape[0], -1) @ down.reshape(rank, -1)
    return delta.mul_(_alpha(t, rank))


_DELTAS = {"loha": _loha, "lokr": _lokr, "lora": _lora}


def _dora(patched: torch.Tensor, dora_scale: torch.Tensor) -> torch.Tensor:
    """DoRA: the patched weight's direction with the learned magnitude, per output row or per input column (the
    orientation is read from ``dora_scale``'s shape, as ComfyUI does)."""
    eps = torch.finfo(patched.dtype).eps
    dims = [1] * (patched.dim() - 1)
    if dora_scale.shape[0] == patched.shape[0] and (dora_scale.dim() < 2 or dora_scale.shape[1] == 1):
        norm = patched.reshape(patched.shape[0], -1).norm(dim=1).reshape(patched.shape[0], *dims)
    else:
        norm = (patched.transpose(0, 1).reshape(patched.shape[1], -1).norm(dim=1, keepdim=True)
                .reshape(patched.shape[1], *dims).transpose(0, 1))
    return patched * (dora_scale.float().reshape(norm.shape) / (norm + eps))


def merged_weight(module: PatchModule, weight: torch.Tensor, bias: torch.Tensor | None,
                  strength: float) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The layer's weight and bias with `module` applied at `strength` (bias None: unchanged), computed in fp32
    on the weight's device and returned in its dtype. ValueError when the file's layer does not fit the weight (on
    the meta device, that check is all that happens)."""
    # Scalars (alpha, on_input) stay where they are: a meta `weight` then checks the fit without computing anything.
    t = {key: value if value.dim() == 0 else value.to(weight.device) for key, value in module.tensors.items()}
    base = weight.float()
    if module.algorithm == "ia3":
        vector = t["weight"].float()
        on_input = bool(int(t["on_input"]))
        if vector.numel() != base.shape[1 if on_input else 0]:
            raise ValueError(f"an IA3 vector of {vector.numel()} for a weight of shape {tuple(base.shape)}")
        shape = [1] * base.dim()
        shape[1 if on_input else 0] = -1
        return (base * (vector.reshape(shape) * strength + 1)).to(weight.dtype), None
    bias_delta = None
    if module.algorithm == "norm":
        delta, bias_delta = t["w_norm"].float(), t.get("b_norm")
    elif module.algorithm == "full":
        delta, bias_delta = t["diff"].float(), t.get("diff_b")
    else:
        try:
            delta = _DELTAS[module.algorithm](t)
        except RuntimeError as error:  # factors whose shapes do not multiply: a damaged or foreign file
            raise ValueError(f"its factors do not fit together ({str(error).splitlines()[0]})") from None
    if delta.numel() != base.numel():
        raise ValueError(f"a layer of {delta.numel()} weights for a weight of shape {tuple(base.shape)}")
    delta = delta.reshape(base.shape)
    if "dora_scale" in t:
        merged = base + strength * (_dora(base + delta, t["dora_scale"]) - base)
    else:
        merged = torch.add(base, delta, alpha=strength)
    new_bias = None
    if bias_delta is not None and bias is not None:
        new_bias = (bias.float() + strength * bias_delta.float()).to(bias.dtype)
    return merged.to(weight.dtype), new_bias


# --- finding the layers -----------------------------------------------------------------------------------------
def layer_index(base: str, unet: Any, text_encoders: Mapping[str, Any]) -> dict[str, Any]:
    """Every patchable layer of the model by its kohya-style name: UNet layers under ``lora_unet_`` and
    ``lycoris_`` (diffusers paths), and for SDXL also under their SGM names (``lora_unet_input_blocks_4_1_…``, as
    kohya's SDXL scripts write them); text-encoder layers under ``lora_te_`` (``lora_te1_``/``lora_te2_`` for
    SDXL). peft's LoRA wrappers are looked through to the layer they wrap."""
    index: dict[str, Any] = {}
    from nodegraph.models.synthetic.ldm_layout import ldm_unet_name, unet_module_map

    module_map = unet_module_map(unet.config) if base == "sdxl" else None
    for path, layer in _layers(unet):
        underscored = path.replace(".", "_")
        for prefix in UNET_PREFIXES:
            index[prefix + underscored] = layer
        if module_map is not None:
            with contextlib.suppress(KeyError):  # layers outside the mapped blocks have no SGM name
                index["lora_unet_" + ldm_unet_name(path, module_map).replace(".", "_")] = layer
    for prefix, component in TEXT_PREFIXES.items():
        if (base == "sdxl") != (prefix != "lora_te_") or component not in text_encoders:
            continue
        for path, layer in _layers(text_encoders[component]):
            index[prefix + path.replace(".", "_")] = layer
            if not path.startswith("text_model."):  # transformers 5 dropped the text_model wrapper kohya names have
                index[prefix + "text_model_" + path.replace(".", "_")] = layer
    return index


_PEFT_PART = re.compile(r"\.(lora_[A-Za-z_]+|base_layer)(\.|$)")


def _layers(model: Any) -> Iterator[tuple[str, Any]]:
    """(path, layer) of every module with a weight, peft's wrappers replaced by the layer they wrap."""
    for path, module in model.named_modules():
        if _PEFT_PART.search(path):
            continue
        layer = getattr(module, "base_layer", module)
        if isinstance(getattr(layer, "weight", None), torch.Tensor):
            yield path, layer


def group_name(name: str) -> str:
    """A short readable group for a layer name, for "unmatched" warnings: ``UNet down_blocks_1``, ``text encoder``."""
    for prefix, component in TEXT_PREFIXES.items():
        if name.startswith(prefix):
            return "text encoder 2" if component == "text_encoder_2" else "text encoder"
    rest = name
    for prefix in UNET_PREFIXES:
        rest = rest.removeprefix(prefix)
    match = re.match(r"((down|up|input|output)_blocks_\d+|mid_block|middle_block|[a-z]+(_[a-z]+)*)", rest)
    return f"UNet {match.group(1) if match else rest}"
