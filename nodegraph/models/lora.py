"""Applying stacks of LoRAs to loaded components through diffusers + peft, and taking them off again exactly.

Each LoRA file becomes a peft adapter (diffusers converts kohya/AUTOMATIC1111, LoCon and diffusers/PEFT files; the
2023 diffusers "attention processor" files are renamed first with diffusers' own key maps, see
:func:`convert_attn_procs_lora`); the
base weights are never modified or copied — an adapter adds its low-rank delta beside them — so disabling the
adapters gives the base model's outputs bit for bit, and two graph branches with different LoRA stacks share one
UNet. Adapters stay loaded (disabled) between uses so a re-run does not re-read the file; :func:`unload_loras`
removes them entirely.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nodegraph.models.errors import IncompatibleModelError, ModelError
from nodegraph.models.families import Family
from nodegraph.models.identify import identify
from nodegraph.models.offline import import_diffusers
from nodegraph.models.safe_load import load_state_dict, unwrap_state_dict


@dataclass(frozen=True)
class LoraSpec:
    """One LoRA of a stack: its file and the strengths for the UNet and the text encoder(s)."""

    path: Path
    unet_strength: float = 1.0
    text_strength: float = 1.0


def adapter_name(path: Path) -> str:
    """A stable adapter name for a LoRA file (its identity: path, size and modification time)."""
    stat = path.stat()
    digest = hashlib.sha1(f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:12]
    return f"ng_{digest}"


def check_lora(path: Path, family: Family) -> None:
    """Refuse a file that is not a LoRA diffusers can apply, or that was made for another model family."""
    info = identify(path)
    if info.kind != "lora":
        raise ModelError(path, f"is a {info.kind}, not a LoRA")
    if info.format == "cloneofsimo":
        raise IncompatibleModelError(path, "is a cloneofsimo/lora (lora_diffusion) file, whose layers are numbered "
                                           "by injection order instead of named; it is recognised but cannot be "
                                           "applied yet")
    if info.variant in ("loha", "lokr"):
        raise IncompatibleModelError(path, f"is a LyCORIS {info.variant.upper()} file, which diffusers/peft cannot "
                                           "apply yet; LoRA and LoCon files are supported")
    if info.family != "unknown" and info.family != family.base:
        raise IncompatibleModelError(path, f"is a LoRA for {info.family.upper()} models and cannot be applied to "
                                           f"{family.label}")


def _ensure_loaded(path: Path, family: Family, unet: Any, text_encoders: Mapping[str, Any]) -> str:
    """Load the LoRA as an adapter into the components once; return its adapter name."""
    name = adapter_name(path)
    if name in getattr(unet, "peft_config", {}) or any(
            name in getattr(te, "peft_config", {}) for te in text_encoders.values()):
        return name
    check_lora(path, family)
    diffusers = import_diffusers()
    mixin = (diffusers.loaders.StableDiffusionXLLoraLoaderMixin if family.base == "sdxl"
             else diffusers.loaders.StableDiffusionLoraLoaderMixin)
    raw = convert_attn_procs_lora(unwrap_state_dict(load_state_dict(path)))
    try:
        state, alphas = mixin.lora_state_dict(dict(raw), unet_config=unet.config)
    except (ValueError, KeyError) as error:
        raise ModelError(path, f"cannot read this LoRA: {error}") from None
    matched = 0
    try:
        unet_part = {k: v for k, v in state.items() if k.startswith("unet.")}
        if unet_part:
            mixin.load_lora_into_unet(unet_part, alphas, unet, adapter_name=name)
            matched += _count_layers(unet, name)
        for component, encoder in text_encoders.items():
            part = {k: v for k, v in state.items() if k.startswith(f"{component}.")}
            if part:
                mixin.load_lora_into_text_encoder(part, alphas, encoder, prefix=component, adapter_name=name)
                matched += _count_layers(encoder, name)
    except (ValueError, KeyError, RuntimeError) as error:
        # peft's NoMatchingPeftModuleError and transformers' "could not infer state dict type" are ValueErrors. A
        # half-loaded adapter must not stay behind: the next use would find it and silently apply part of the file.
        _remove_adapter(name, unet, text_encoders)
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise IncompatibleModelError(path, f"its layers do not fit this {family.label} model ({first}): is it a LoRA "
                                           "for another model type?") from None
    except BaseException:
        _remove_adapter(name, unet, text_encoders)
        raise
    if matched == 0:
        _remove_adapter(name, unet, text_encoders)
        raise IncompatibleModelError(path, f"none of its {len(raw)} tensors matches a layer of this {family.label} "
                                           "model: is it a LoRA for another model type?")
    return name


def is_attn_procs_lora(state: Mapping[str, Any]) -> bool:
    """Whether `state` is in the 2023 diffusers "attention processor" format
    (``down_blocks.0.attentions.0.transformer_blocks.0.attn1.processor.to_k_lora.down.weight``)."""
    return any(key.endswith(("_lora.down.weight", "_lora.up.weight")) and ".to_" in key for key in state)


def convert_attn_procs_lora(state: Mapping[str, Any]) -> dict[str, Any]:
    """A LoRA in the old diffusers attention-processor format renamed to the PEFT format diffusers loads
    (``unet.down_blocks.….attn1.to_k.lora_A.weight``); any other state dict is returned unchanged.

    The renaming is diffusers' own: ``convert_unet_state_dict_to_peft`` for the UNet (drops ``.processor``, maps
    ``to_k_lora.down`` to ``to_k.lora_A`` and ``to_out_lora`` to ``to_out.0``) and the ``DIFFUSERS_OLD`` map of
    ``convert_state_dict_to_peft`` for text-encoder keys (``text_encoder.….self_attn.to_k_lora`` → ``k_proj``).
    These files carry no alpha: the scale is 1, as in diffusers' old ``LoRAAttnProcessor``.
    """
    if not is_attn_procs_lora(state):
        return dict(state)
    import_diffusers()
    from diffusers.utils.state_dict_utils import (
        StateDictType,
        convert_state_dict_to_peft,
        convert_unet_state_dict_to_peft,
    )

    text = {k: v for k, v in state.items() if k.startswith(("text_encoder.", "text_encoder_2."))}
    unet = {k.removeprefix("unet."): v for k, v in state.items() if k not in text}
    converted = {f"unet.{k}": v for k, v in convert_unet_state_dict_to_peft(unet).items()}
    if text:
        converted.update(convert_state_dict_to_peft(text, original_type=StateDictType.DIFFUSERS_OLD))
    return converted


def _remove_adapter(name: str, unet: Any, text_encoders: Mapping[str, Any]) -> None:
    """Take adapter `name` out of every component that has it (all of it, even if it was loaded only partly)."""
    from diffusers.utils.peft_utils import delete_adapter_layers

    for module in (unet, *text_encoders.values()):
        config = getattr(module, "peft_config", None)
        if config is None:
            continue
        if name in config:
            delete_adapter_layers(module, name)
            if getattr(module, "peft_config", None) is not None:  # transformers models lose it in the line above
                module.peft_config.pop(name, None)
        if not getattr(module, "peft_config", None):  # no adapter left: give back the plain modules
            _strip_peft(module)


def _strip_peft(module: Any) -> None:
    """Remove peft's wrappers and bookkeeping from a module, leaving its original layers."""
    from diffusers.utils.peft_utils import recurse_remove_peft_layers

    recurse_remove_peft_layers(module)
    if hasattr(module, "peft_config"):
        del module.peft_config
    if hasattr(module, "_hf_peft_config_loaded"):
        module._hf_peft_config_loaded = False


def _count_layers(module: Any, name: str) -> int:
    from peft.tuners.tuners_utils import BaseTunerLayer

    return sum(1 for m in module.modules() if isinstance(m, BaseTunerLayer) and name in getattr(m, "lora_A", {}))


@contextmanager
def applied_loras(loras: Sequence[LoraSpec], family: Family, unet: Any,
                  text_encoders: Mapping[str, Any]) -> Iterator[None]:
    """Within the block, the UNet and text encoders act with `loras` applied at their strengths; afterwards all
    adapters are disabled, which restores the base outputs exactly. An empty stack applies nothing."""
    if not loras:
        _disable_all(unet, text_encoders)
        yield
        return
    # The same file twice in a stack is one adapter: a LoRA's delta is linear in its strength, so the strengths add.
    strengths: dict[str, list[float]] = {}
    for spec in loras:
        name = _ensure_loaded(spec.path, family, unet, text_encoders)
        total = strengths.setdefault(name, [0.0, 0.0])
        total[0] += spec.unet_strength
        total[1] += spec.text_strength
    names = list(strengths)
    try:
        _activate(unet, names, [strengths[n][0] for n in names])
        for encoder in text_encoders.values():
            _activate(encoder, names, [strengths[n][1] for n in names])
        yield
    finally:
        _disable_all(unet, text_encoders)


def _activate(module: Any, names: list[str], weights: list[float]) -> None:
    """Enable exactly the adapters `names` present in `module`, at `weights`."""
    from diffusers.utils.peft_utils import set_adapter_layers as set_layers
    from diffusers.utils.peft_utils import set_weights_and_activate_adapters as set_weights

    present = getattr(module, "peft_config", {})
    active = [(n, w) for n, w in zip(names, weights, strict=True) if n in present]
    if not active:
        if present:
            set_layers(module, enabled=False)
        return
    set_layers(module, enabled=True)
    set_weights(module, [n for n, _ in active], [w for _, w in active])


def _disable_all(unet: Any, text_encoders: Mapping[str, Any]) -> None:
    from diffusers.utils.peft_utils import set_adapter_layers

    for module in (unet, *text_encoders.values()):
        if getattr(module, "peft_config", None):
            set_adapter_layers(module, enabled=False)


def unload_loras(unet: Any, text_encoders: Mapping[str, Any]) -> None:
    """Remove every adapter and the peft wrappers, giving back the original module structure and weights."""
    for module in (unet, *text_encoders.values()):
        if getattr(module, "peft_config", None):
            _strip_peft(module)
