"""Applying stacks of LoRAs and LyCORIS files to loaded components, and taking them off again exactly.

Each LoRA/LoCon file becomes a peft adapter (diffusers converts kohya/AUTOMATIC1111, LoCon and diffusers/PEFT
files; the 2023 diffusers "attention processor" files are renamed first with diffusers' own key maps, see
:func:`convert_attn_procs_lora`); the base weights are never modified or copied — an adapter adds its low-rank delta
beside them — so disabling the adapters gives the base model's outputs bit for bit, and two graph branches with
different LoRA stacks share one UNet. Adapters stay loaded (disabled) between uses so a re-run does not re-read the
file; :func:`unload_loras` removes them entirely.

LyCORIS files (LoHa, LoKr, full, IA3, norm, and any file with DoRA), which peft cannot load, are merged for the
block only (:mod:`nodegraph.models.lycoris`): each patched layer's weight is swapped for a merged copy and the
original tensor put back afterwards, untouched.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nodegraph.models.errors import IncompatibleModelError, ModelError
from nodegraph.models.families import Family
from nodegraph.models.identify import identify
from nodegraph.models.integrity import require_finite_floats
from nodegraph.models.offline import import_diffusers
from nodegraph.models.safe_load import load_state_dict, unwrap_state_dict


@dataclass(frozen=True)
class LoraSpec:
    """One LoRA of a stack: its file, the strengths for the UNet and the text encoder(s), and the node that added
    it (how many of its layers matched is reported about that node)."""

    path: Path
    unet_strength: float = 1.0
    text_strength: float = 1.0
    node_id: str = field(default="", compare=False)


#: Receives what applying a stack found out: (node id, "info" or "warning", text).
Reporter = Callable[[str, str, str], None]


@dataclass(frozen=True)
class MatchReport:
    """How many of a file's layers of one part (``"UNet"``, ``"text encoder"``) found their layer in the model."""

    part: str
    matched: int
    total: int
    unmatched: tuple[str, ...] = ()

    def text(self, file_name: str) -> str:
        """"style.safetensors: UNet 180/192 layers matched; not matched: UNet up_blocks_3 (12)"."""
        line = f"{file_name}: {self.part} {self.matched}/{self.total} layers matched"
        if self.unmatched:
            line += "; not matched: " + ", ".join(self.unmatched)
        return line


def adapter_name(path: Path) -> str:
    """A stable adapter name for a LoRA file (its identity: path, size and modification time)."""
    stat = path.stat()
    digest = hashlib.sha1(f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:12]
    return f"ng_{digest}"


def check_lora(path: Path, family: Family) -> None:
    """Refuse a file that is not a LoRA/LyCORIS file we can apply (cloneofsimo, OFT, …), or that was made for another
    model family."""
    info = identify(path)
    if info.kind != "lora":
        raise ModelError(path, f"is a {info.kind}, not a LoRA")
    if info.unsupported:
        raise IncompatibleModelError(path, info.unsupported)
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
    require_finite_floats(path, raw, "LoRA weights")
    try:
        state, alphas = mixin.lora_state_dict(dict(raw), unet_config=unet.config)
    except (ValueError, KeyError) as error:
        raise ModelError(path, f"cannot read this LoRA: {error}") from None
    reports = {}
    try:
        unet_part = {k: v for k, v in state.items() if k.startswith("unet.")}
        if unet_part:
            mixin.load_lora_into_unet(unet_part, alphas, unet, adapter_name=name)
            reports["unet"] = _peft_report("UNet", unet_part, "unet.", unet, name)
        for component, encoder in text_encoders.items():
            part = {k: v for k, v in state.items() if k.startswith(f"{component}.")}
            if part:
                mixin.load_lora_into_text_encoder(part, alphas, encoder, prefix=component, adapter_name=name)
                reports[component] = _peft_report(_part_label(component), part, f"{component}.", encoder, name)
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
    if not any(r.matched for r in reports.values()):
        _remove_adapter(name, unet, text_encoders)
        raise IncompatibleModelError(path, f"none of its {len(raw)} tensors matches a layer of this {family.label} "
                                           "model: is it a LoRA for another model type?")
    _adapter_reports(unet)[name] = reports
    return name


def _part_label(component: str) -> str:
    return {"unet": "UNet", "text_encoder": "text encoder", "text_encoder_2": "text encoder 2"}[component]


_PEFT_DOWN = (".lora_A.weight", ".lora.down.weight", ".lora_linear_layer.down.weight", ".lora_down.weight")


def _peft_report(label: str, state: Mapping[str, Any], prefix: str, module: Any, name: str) -> MatchReport:
    """How many of the LoRA layers in `state` (converted keys under `prefix`) became peft layers of `module`."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    from nodegraph.models.lycoris import group_name

    def plain(path: str) -> str:  # transformers 5 dropped the text_model wrapper the files' names have
        return path.removeprefix("text_model.")

    wanted = set()
    for key in state:
        for suffix in _PEFT_DOWN:
            if key.endswith(suffix):
                wanted.add(plain(key.removeprefix(prefix).removesuffix(suffix)))
    loaded = {plain(path) for path, m in module.named_modules()
              if isinstance(m, BaseTunerLayer) and name in getattr(m, "lora_A", {})}
    missing = sorted(wanted - loaded)
    groups: dict[str, int] = {}
    kohya = "lora_unet_" if prefix == "unet." else "lora_te_"
    for path in missing:
        group = group_name(kohya + path.replace(".", "_"))
        groups[group] = groups.get(group, 0) + 1
    return MatchReport(label, len(wanted & loaded), len(wanted),
                       tuple(f"{group} ({count})" for group, count in groups.items()))


def _adapter_reports(unet: Any) -> dict[str, dict[str, MatchReport]]:
    """What each loaded adapter matched, kept beside the UNet it was loaded into (adapters stay loaded)."""
    reports = getattr(unet, "_nodegraph_lora_reports", None)
    if reports is None:
        reports = {}
        unet._nodegraph_lora_reports = reports
    return reports


#: Parsed LyCORIS files by adapter name (file identity), the most recently used last; and each file's format.
_LYCORIS_FILES: OrderedDict[str, Any] = OrderedDict()
_LYCORIS_FILES_KEPT = 4
_FORMATS: dict[str, str | None] = {}
_files_lock = threading.Lock()


def _lycoris_modules(path: Path, family: Family) -> tuple[dict[str, Any], list[str]]:
    """The file's LyCORIS layers (read once while it stays among the recently used) and its unusable tensors,
    after checking it fits `family`."""
    from nodegraph.models.lycoris import parse_modules

    check_lora(path, family)
    name = adapter_name(path)
    with _files_lock:
        if name in _LYCORIS_FILES:
            _LYCORIS_FILES.move_to_end(name)
            return _LYCORIS_FILES[name]
    state = unwrap_state_dict(load_state_dict(path))
    require_finite_floats(path, state, "LoRA weights")
    parsed = parse_modules(state)
    if not parsed[0]:
        raise ModelError(path, "holds no LoRA or LyCORIS layer that can be applied")
    with _files_lock:
        _LYCORIS_FILES[name] = parsed
        while len(_LYCORIS_FILES) > _LYCORIS_FILES_KEPT:
            _LYCORIS_FILES.popitem(last=False)
    return parsed


def _is_merged_format(path: Path) -> bool:
    """Whether the file is applied by merging (LyCORIS, DoRA) rather than as a peft adapter (identified once per
    file version: a pickled LoRA is not unpickled again on every run)."""
    name = adapter_name(path)
    with _files_lock:
        known = name in _FORMATS
    if not known:
        fmt = identify(path).format
        with _files_lock:
            _FORMATS[name] = fmt
    return _FORMATS[name] == "lycoris"


@contextmanager
def _merged(specs: Sequence[LoraSpec], family: Family, unet: Any, text_encoders: Mapping[str, Any],
            parts: tuple[str, ...], report: Reporter | None) -> Iterator[None]:
    """Within the block, the layers the LyCORIS files in `specs` patch hold merged weights; after it, the original
    weight tensors are back in place (never modified, so the base model returns bit for bit)."""
    import torch

    from nodegraph.models.lycoris import TEXT_PREFIXES, group_name, layer_index, merged_weight, split_key

    originals: dict[int, tuple[Any, Any, Any]] = {}
    try:
        index = layer_index(family.base, unet, text_encoders) if specs else {}
        for spec in specs:
            modules, stray = _lycoris_modules(spec.path, family)
            if not any(name in index for name in modules):
                raise IncompatibleModelError(spec.path, f"none of its {len(modules)} layers matches a layer of this "
                                                        f"{family.label} model: is it for another model type?")
            tally: dict[str, list[int]] = {}  # part → [matched, total]
            missing: dict[str, dict[str, int]] = {}  # part → group → layers not matched
            unusable = {split_key(key)[0] for key in stray}
            for name in [*modules, *sorted(unusable - set(modules))]:
                module = modules.get(name)
                part = "text" if name.startswith(tuple(TEXT_PREFIXES)) else "unet"
                tally.setdefault(part, [0, 0])[1] += 1
                layer = index.get(name)
                strength = spec.text_strength if part == "text" else spec.unet_strength
                try:
                    if module is None or layer is None:
                        raise ValueError("no such layer")
                    if part in parts and strength == 0:  # the base weight: only check that the layer fits
                        merged_weight(module, layer.weight.detach().to("meta"), None, 0.0)
                    elif part in parts:
                        bias = getattr(layer, "bias", None)
                        weight, new_bias = merged_weight(module, layer.weight.detach(),
                                                         None if bias is None else bias.detach(), strength)
                        originals.setdefault(id(layer), (layer, layer.weight, bias))
                        layer.weight = torch.nn.Parameter(weight, requires_grad=False)
                        if new_bias is not None:
                            layer.bias = torch.nn.Parameter(new_bias, requires_grad=False)
                except ValueError:
                    groups = missing.setdefault(part, {})
                    groups[group_name(name)] = groups.get(group_name(name), 0) + 1
                    continue
                tally[part][0] += 1
            if report is not None and spec.node_id:
                for part in parts:
                    if part in tally:
                        matched, total = tally[part]
                        groups = missing.get(part, {})
                        line = MatchReport("UNet" if part == "unet" else "text encoder", matched, total,
                                           tuple(f"{g} ({n})" for g, n in groups.items())).text(spec.path.name)
                        report(spec.node_id, "info" if matched == total else "warning", line)
        yield
    finally:
        for layer, weight, bias in originals.values():
            layer.weight = weight
            if bias is not None:
                layer.bias = bias


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
def applied_loras(loras: Sequence[LoraSpec], family: Family, unet: Any, text_encoders: Mapping[str, Any], *,
                  parts: tuple[str, ...] = ("unet", "text"), report: Reporter | None = None) -> Iterator[None]:
    """Within the block, the UNet and text encoders act with `loras` applied at their strengths; afterwards all
    adapters are disabled and merged LyCORIS weights put back, which restores the base outputs exactly. An empty
    stack applies nothing.

    `parts` says which components the caller uses (``"unet"`` for a sampler, ``"text"`` for a prompt encoder):
    LyCORIS layers are merged only there, and `report` hears, for each LoRA with a node id, how many of that
    part's layers matched ("info"), or which did not ("warning")."""
    merged = [spec for spec in loras if _is_merged_format(spec.path)]
    adapters = [spec for spec in loras if spec not in merged]
    if not adapters:
        _disable_all(unet, text_encoders)
    # The same file twice in a stack is one adapter: a LoRA's delta is linear in its strength, so the strengths add.
    strengths: dict[str, list[float]] = {}
    for spec in adapters:
        name = _ensure_loaded(spec.path, family, unet, text_encoders)
        total = strengths.setdefault(name, [0.0, 0.0])
        total[0] += spec.unet_strength
        total[1] += spec.text_strength
        if report is not None and spec.node_id:
            _report_adapter(spec, _adapter_reports(unet).get(name, {}), parts, report)
    names = list(strengths)
    try:
        if names:
            _activate(unet, names, [strengths[n][0] for n in names])
            for encoder in text_encoders.values():
                _activate(encoder, names, [strengths[n][1] for n in names])
        with _merged(merged, family, unet, text_encoders, parts, report):
            yield
    finally:
        _disable_all(unet, text_encoders)


def _report_adapter(spec: LoraSpec, reports: Mapping[str, MatchReport], parts: tuple[str, ...],
                    report: Reporter) -> None:
    for component, match in reports.items():
        if ("unet" if component == "unet" else "text") in parts:
            level = "info" if match.matched == match.total else "warning"
            report(spec.node_id, level, match.text(spec.path.name))


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
