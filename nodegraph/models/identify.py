"""Identify a model file without building a model: its kind, family, variant and prediction type.

Everything is decided from tensor names and shapes (read from the safetensors header alone, so identifying a 7 GB
checkpoint reads a few hundred kilobytes). The rules follow the facts in FORMATS.md; v-prediction is not in the
keys, see :func:`decide_prediction` for the documented rule.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nodegraph.models.embeddings import EMBEDDING_IMAGE_SUFFIXES, read_png_embedding
from nodegraph.models.errors import CorruptModelError
from nodegraph.models.families import FAMILIES
from nodegraph.models.safe_load import (
    MODEL_SUFFIXES,
    SAFETENSORS_SUFFIXES,
    load_pickle,
    read_safetensors_header,
    unwrap_state_dict,
)
from nodegraph.models.upscale import detect_upscale_architecture, unwrap_upscale_state_dict

KINDS = ("checkpoint", "lora", "embedding", "vae", "hypernetwork", "diffusers", "controlnet", "upscale_model")
_SAFETENSORS_DTYPES = {"F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16", "I64": "int64",
                       "I32": "int32", "I16": "int16", "I8": "int8", "U8": "uint8", "BOOL": "bool",
                       "F8_E4M3": "float8_e4m3fn", "F8_E5M2": "float8_e5m2"}
_UNET = "model.diffusion_model."
_CONTEXT_TO_FAMILY = {768: "sd1", 1024: "sd2", 2048: "sdxl-base", 1280: "sdxl-refiner"}
_WIDTH_TO_BASE = {768: "sd1", 1024: "sd2", 1280: "sdxl", 2048: "sdxl"}


@dataclass(frozen=True)
class ModelInfo:
    """What a model file is. ``family`` is a family name for checkpoints, a base (``sd1``, ``sd2``, ``sdxl``) for
    add-ons, or ``unknown``; ``unsupported`` explains a recognised but unsupported model (SD3, Flux, …)."""

    path: Path
    kind: str
    family: str = "unknown"
    variant: str | None = None
    prediction: str | None = None
    prediction_source: str | None = None
    tensors: int = 0
    dtypes: tuple[str, ...] = ()
    bytes: int = 0
    unsupported: str | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)
    #: The add-on's file format (``kohya``, ``diffusers-attn-procs``, ``a1111-png`` …, see docs/addon-formats.md).
    format: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The JSON shape of `nodegraph inspect --json`."""
        return {"path": str(self.path), "kind": self.kind, "variant": self.variant, "family": self.family,
                "prediction": self.prediction, "prediction_source": self.prediction_source, "tensors": self.tensors,
                "dtypes": list(self.dtypes), "bytes": self.bytes, "unsupported": self.unsupported,
                "notes": list(self.notes), "format": self.format}


def identify(path: str | Path, prediction_override: str | None = None) -> ModelInfo:
    """Identify the model at `path` (a file, or a diffusers folder). Raises a ModelError for unreadable files."""
    path = Path(path)
    if path.is_dir():
        if _is_controlnet_folder(path):
            return _identify_controlnet_folder(path)
        return _identify_diffusers_folder(path)
    suffix = path.suffix.lower()
    if suffix in EMBEDDING_IMAGE_SUFFIXES:
        return _identify_png_embedding(path)
    if suffix not in MODEL_SUFFIXES:
        raise CorruptModelError(path, f"not a model file (expected {', '.join(MODEL_SUFFIXES)})")
    if suffix in SAFETENSORS_SUFFIXES:
        header = read_safetensors_header(path)
        shapes = {name: entry.shape for name, entry in header.tensors.items()}
        dtypes = {_SAFETENSORS_DTYPES.get(entry.dtype, entry.dtype.lower()) for entry in header.tensors.values()}
        return _classify(path, shapes, dtypes, header.metadata, header.file_bytes, None, prediction_override)
    data = load_pickle(path)
    special = _identify_pickled_addon(path, data)
    if special is not None:
        return special
    tensors = {name: value for name, value in unwrap_state_dict(unwrap_upscale_state_dict(data)).items()
               if hasattr(value, "shape")}
    shapes = {name: tuple(value.shape) for name, value in tensors.items()}
    dtypes = {str(value.dtype).removeprefix("torch.") for value in tensors.values()}
    return _classify(path, shapes, dtypes, {}, path.stat().st_size, data, prediction_override)


def _classify(path: Path, shapes: Mapping[str, tuple[int, ...]], dtypes: set[str], metadata: Mapping[str, str],
              size: int, raw: Mapping[str, Any] | None, prediction_override: str | None) -> ModelInfo:
    common = {"path": path, "tensors": len(shapes), "dtypes": tuple(sorted(dtypes)), "bytes": size}
    names = list(shapes)
    unsupported = _unsupported_architecture(names)
    if unsupported:
        return ModelInfo(kind="checkpoint", unsupported=unsupported, **common)
    controlnet = controlnet_format(names)
    if controlnet is not None:  # before the checkpoint rule: lllyasviel's first files hold a whole SD model too
        return _identify_controlnet(names, shapes, controlnet, common)
    if any(name.startswith(_UNET) for name in names):
        family, notes = checkpoint_family(shapes)
        prediction, source = decide_prediction(path, family, metadata, prediction_override)
        if family.startswith("sd2") and not family.endswith("inpaint"):
            family = "sd2-v" if prediction == "v" else "sd2"
        variant = "inpaint" if family.endswith("inpaint") else None
        if not any(name.startswith("first_stage_model.") for name in names):
            notes += ("no VAE inside: use a VAE override",)
        return ModelInfo(kind="checkpoint", family=family, variant=variant, prediction=prediction,
                         prediction_source=source, notes=notes, **common)
    lora_variant = _lora_variant(names, shapes)
    if lora_variant is not None:
        return ModelInfo(kind="lora", family=_lora_base(shapes), variant=lora_variant, format=lora_format(names),
                         unsupported=_unsupported_lora(names), **common)
    if _is_vae(names):
        return ModelInfo(kind="vae", variant="diffusers" if any(".down_blocks." in n for n in names) else None,
                         notes=("a VAE fits every SD 1.x/2.x model; SDXL has its own",), **common)
    embedding_base = _embedding_base(shapes)
    if embedding_base is not None:
        return ModelInfo(kind="embedding", family=embedding_base, format=_embedding_format(path, shapes), **common)
    upscaler = detect_upscale_architecture(shapes)
    if upscaler is not None:  # ESRGAN, SwinIR, … (through spandrel): upscalers fit every model, hence no family
        return ModelInfo(kind="upscale_model", variant=upscaler.name, unsupported=upscaler.unsupported,
                         notes=upscaler.notes, **common)
    raise CorruptModelError(path, "not a recognised Stable Diffusion file (no checkpoint, LoRA, VAE or embedding "
                                  "tensors)")


def _unsupported_architecture(names: list[str]) -> str | None:
    joined = "\n".join(names[:20000])
    if re.search(r"(^|\.)joint_blocks\.\d+\.", joined, re.M):
        return "an SD3 model: not supported (SD 1.x, SD 2.x and SDXL are)"
    if re.search(r"(^|\.)double_blocks\.\d+\.", joined, re.M):
        return "a Flux model: not supported (SD 1.x, SD 2.x and SDXL are)"
    if re.search(r"(^|\.)time_stack\.", joined, re.M):
        return "a video model (SVD): not supported"
    if re.search(r"(^|\.)down_blocks\.\d+\.\d+\.channelwise", joined, re.M):
        return "a Stable Cascade model: not supported"
    return None


def checkpoint_family(shapes: Mapping[str, tuple[int, ...]]) -> tuple[str, tuple[str, ...]]:
    """The family of an LDM single-file checkpoint from its tensor names and shapes (SD2's prediction aside)."""
    names = shapes.keys()
    if any(n.startswith("conditioner.embedders.1.model.transformer.resblocks.") for n in names):
        base = "sdxl-base"
    elif any(n.startswith("conditioner.embedders.0.model.transformer.resblocks.") for n in names):
        base = "sdxl-refiner"
    else:
        context = next((shape[1] for name, shape in shapes.items()
                        if name.startswith(_UNET) and name.endswith("attn2.to_k.weight") and len(shape) == 2), None)
        label = shapes.get(_UNET + "label_emb.0.0.weight")
        if label is not None:
            base = "sdxl-base" if label[1] == 2816 else "sdxl-refiner"
        elif context in _CONTEXT_TO_FAMILY:
            base = _CONTEXT_TO_FAMILY[context]
        else:
            return "unknown", (f"unrecognised cross-attention width {context}",)
    conv_in = shapes.get(_UNET + "input_blocks.0.0.weight")
    channels = conv_in[1] if conv_in and len(conv_in) == 4 else 4
    if channels == 9:
        return {"sd1": "sd1-inpaint", "sd2": "sd2-inpaint", "sdxl-base": "sdxl-inpaint"}.get(base, "unknown"), ()
    if channels != 4:
        return "unknown", (f"a UNet with {channels} input channels (InstructPix2Pix or similar) is not supported",)
    return base, ()


def decide_prediction(path: Path, family: str, metadata: Mapping[str, str],
                      override: str | None) -> tuple[str, str]:
    """The prediction type (``epsilon`` or ``v``) and where it came from.

    Only SD 2.x non-inpainting checkpoints are ambiguous (v-prediction leaves no trace in the keys). The rule, first
    match wins: the user's override; an AUTOMATIC1111 sidecar ``<name>.yaml`` with ``parameterization: "v"``; the
    file's safetensors metadata (``modelspec.prediction_type``, kohya's ``ss_v_parameterization``); "512" or "base"
    in the file name means epsilon; otherwise v, because the 768 v-prediction models (2.0-v, 2.1 and most fine-tunes
    of them) are the common SD 2.x checkpoints. Every other family has a fixed prediction type.
    """
    if override is not None:
        if override not in ("epsilon", "v"):
            raise ValueError(f"prediction must be 'epsilon' or 'v', not {override!r}")
        return override, "override"
    if not (family.startswith("sd2") and not family.endswith("inpaint")):
        known = FAMILIES.get(family)
        return (known.prediction if known else "epsilon"), "family"
    sidecar = path.with_suffix(".yaml")
    if sidecar.is_file():
        text = sidecar.read_text(encoding="utf-8", errors="replace")
        match = re.search(r"parameterization:\s*[\"']?(\w+)", text)
        return ("v" if match and match.group(1) == "v" else "epsilon"), "sidecar yaml"
    spec = metadata.get("modelspec.prediction_type", "").lower()
    if spec:
        return ("v" if spec.startswith("v") else "epsilon"), "metadata"
    if metadata.get("ss_v_parameterization", "").lower() in ("true", "false"):
        return ("v" if metadata["ss_v_parameterization"].lower() == "true" else "epsilon"), "metadata"
    if re.search(r"(^|[^0-9])512([^0-9]|$)|base", path.stem.lower()):
        return "epsilon", "file name"
    return "v", "default for SD 2.x"


#: cloneofsimo/lora (``lora_diffusion``, late 2022): numbered layers ``unet:12:down`` / ``text_encoder:3:up``.
_CLONEOFSIMO = re.compile(r"^(unet|text_encoder):\d+:(down|up)$")
_DOWN_SUFFIXES = (".lora_down.weight", ".lora_A.weight", ".lora.down.weight", "_lora.down.weight",
                  ".lora_linear_layer.down.weight")


def lora_format(names: list[str]) -> str:
    """The file format of a LoRA-type add-on from its tensor names (see docs/addon-formats.md)."""
    from nodegraph.models.lycoris_keys import is_merge_format, unsupported_algorithm

    if is_merge_format(names) or unsupported_algorithm(names):
        return "lycoris"
    if any(_CLONEOFSIMO.match(n) for n in names):
        return "cloneofsimo"
    if any(re.search(r"\.to_(q|k|v|out)_lora\.(down|up)\.weight$", n) for n in names):
        return "diffusers-attn-procs"
    if all(n.startswith(("lora_unet_", "lora_te_", "lora_te1_", "lora_te2_")) for n in names):
        return "kohya"
    if any(".lora_A." in n for n in names):
        return "peft"
    return "diffusers"


#: LyCORIS algorithms by a tensor-name suffix that only they use (checked in this order)
_LYCORIS_VARIANTS = ((".hada_w1_a", "loha"), (".lokr_w", "lokr"), (".diff", "full"), (".on_input", "ia3"),
                     (".w_norm", "norm"))


def _lora_variant(names: list[str], shapes: Mapping[str, tuple[int, ...]]) -> str | None:
    from nodegraph.models.lycoris_keys import unsupported_algorithm

    dora = "+dora" if any(n.endswith(".dora_scale") for n in names) else ""
    for marker, variant in _LYCORIS_VARIANTS:
        if any(marker in n and n.split(".", 1)[1].startswith(marker[1:]) for n in names if "." in n):
            return variant + dora
    if unsupported := unsupported_algorithm(names):
        return unsupported.lower()
    if any(_CLONEOFSIMO.match(n) for n in names):
        return "lora"
    downs = [n for n in names if n.endswith(_DOWN_SUFFIXES)]
    if not downs:
        return None
    if any(len(shapes[n]) == 4 and shapes[n][2:] != (1, 1) for n in downs):
        return "locon" + dora
    return "lora" + dora


def _unsupported_lora(names: list[str]) -> str | None:
    from nodegraph.models.lycoris_keys import unsupported_algorithm

    algorithm = unsupported_algorithm(names)
    if algorithm:
        return (f"is a LyCORIS {algorithm} file: recognised, but {algorithm} cannot be applied yet (LoRA, LoCon, "
                "LoHa, LoKr, DoRA, full, IA3 and norm files can)")
    if any(_CLONEOFSIMO.match(n) for n in names):
        return ("is a cloneofsimo/lora (lora_diffusion) file, whose layers are numbered by injection order instead "
                "of named; it is recognised but cannot be applied yet")
    return None


def _linear_in_features(shapes: Mapping[str, tuple[int, ...]], module: str) -> int | None:
    """The input width of the linear layer a LoRA/LyCORIS `module` patches, from its tensors' shapes alone."""
    def shape(suffix: str) -> tuple[int, ...] | None:
        return shapes.get(f"{module}.{suffix}")

    for suffix, axis in (("lora_down.weight", 1), ("hada_w1_b", 1), ("diff", 1)):
        if (found := shape(suffix)) is not None and len(found) == 2:
            return found[axis]
    first = shape("lokr_w1") or shape("lokr_w1_b")
    second = shape("lokr_w2") or shape("lokr_w2_b")
    if first is not None and second is not None and len(first) == 2 and len(second) == 2:
        return first[1] * second[1]
    return None


def _lora_base(shapes: Mapping[str, tuple[int, ...]]) -> str:
    names = shapes.keys()
    if any(n.startswith(("lora_te1_", "lora_te2_", "text_encoder_2.")) for n in names):
        return "sdxl"
    for name, shape in shapes.items():
        if len(shape) == 2 and re.search(r"attn2[._](processor\.)?to_k(\.lora_A|_lora\.down|\.lora\.down)", name):
            return _WIDTH_TO_BASE.get(shape[1], "unknown")
    modules = {name.split(".", 1)[0] for name in names if "." in name}
    for module in sorted(modules):  # kohya and LyCORIS names: the cross-attention key projection's input width
        if re.search(r"attn2_to_k$", module) and (width := _linear_in_features(shapes, module)) is not None:
            return _WIDTH_TO_BASE.get(width, "unknown")
    for name, shape in shapes.items():  # cloneofsimo: the text encoder's layers, or its learned tokens (<s1>)
        numbered = re.match(r"text_encoder:\d+:down$", name) and len(shape) == 2
        if numbered or (name.startswith("<") and len(shape) == 1):
            return _WIDTH_TO_BASE.get(shape[-1], "unknown")
    for name, shape in shapes.items():
        if len(shape) == 2 and re.search(r"text_encoder\..*q_proj", name) and "lora_up" not in name \
                and "lora_B" not in name:
            return _WIDTH_TO_BASE.get(shape[1], "unknown")
    for module in sorted(modules):  # the text encoder's query projection: 768 wide in SD 1.x, 1024 in SD 2.x
        if re.match(r"lora_te_.*q_proj$", module) and (width := _linear_in_features(shapes, module)) is not None:
            return _WIDTH_TO_BASE.get(width, "unknown")
    if any(n.startswith(("lora_unet_input_blocks", "lora_unet_output_blocks", "lora_unet_middle_block"))
           for n in names):
        return "sdxl"
    return "unknown"


def _is_vae(names: list[str]) -> bool:
    stripped = {n.removeprefix("first_stage_model.") for n in names}
    # a codebook means a VQ autoencoder (the RestoreFormer face restorer), never an SD VAE, which is a KL one
    return "encoder.conv_in.weight" in stripped and "decoder.conv_out.weight" in stripped \
        and "quantize.embedding.weight" not in stripped


def _embedding_base(shapes: Mapping[str, tuple[int, ...]]) -> str | None:
    if "clip_l" in shapes and "clip_g" in shapes:
        return "sdxl"
    candidates = [shape for name, shape in shapes.items() if name == "emb_params" or len(shapes) <= 4]
    widths = {shape[-1] for shape in candidates if 1 <= len(shape) <= 2}
    if len(widths) == 1 and (width := widths.pop()) in _WIDTH_TO_BASE:
        return _WIDTH_TO_BASE[width]
    return None


def _embedding_format(path: Path, shapes: Mapping[str, tuple[int, ...]]) -> str:
    if "clip_l" in shapes or "clip_g" in shapes:
        return "sdxl"
    if "emb_params" in shapes:
        return "a1111-safetensors"
    if path.suffix.lower() == ".bin" or any(name.startswith("<") for name in shapes):
        return "diffusers"
    return "single-tensor"


def _identify_png_embedding(path: Path) -> ModelInfo:
    """An AUTOMATIC1111 embedding stored in a PNG's ``sd-ti-embedding`` text chunk."""
    info = _identify_pickled_addon(path, read_png_embedding(path))
    if info is None or info.kind != "embedding":
        raise CorruptModelError(path, "the PNG's sd-ti-embedding chunk holds no embedding vectors")
    return info


def _identify_pickled_addon(path: Path, data: Mapping[Any, Any]) -> ModelInfo | None:
    """AUTOMATIC1111 embeddings and hypernetworks are nested pickles, not flat state dicts."""
    size = path.stat().st_size
    if isinstance(data.get("string_to_param"), Mapping):
        params = [v for v in data["string_to_param"].values() if hasattr(v, "shape")]
        if params:
            width = params[0].shape[-1]
            fmt = "a1111-png" if path.suffix.lower() in EMBEDDING_IMAGE_SUFFIXES else "a1111-pt"
            return ModelInfo(path, "embedding", _WIDTH_TO_BASE.get(width, "unknown"), tensors=len(params),
                             dtypes=tuple(sorted({str(p.dtype).removeprefix("torch.") for p in params})), bytes=size,
                             notes=(f"{params[0].shape[0] if len(params[0].shape) == 2 else 1} vector(s)",),
                             format=fmt)
    widths = [key for key in data if isinstance(key, int)]
    if widths and ("layer_structure" in data or "activation_func" in data):
        tensors = [t for key in widths for module in data[key] if isinstance(module, Mapping)
                   for t in module.values() if hasattr(t, "shape")]
        base = "sd2" if 1024 in widths else "sd1" if 768 in widths else "sdxl" if 2048 in widths else "unknown"
        return ModelInfo(path, "hypernetwork", base, tensors=len(tensors), format="a1111",
                         dtypes=tuple(sorted({str(t.dtype).removeprefix("torch.") for t in tensors})), bytes=size,
                         notes=(f"layer widths {sorted(widths)}",))
    return None


def _identify_diffusers_folder(path: Path) -> ModelInfo:
    index = path / "model_index.json"
    unet_config = path / "unet" / "config.json"
    if not index.is_file() or not unet_config.is_file():
        raise CorruptModelError(path, "a folder that is not a diffusers pipeline (no model_index.json / unet)")
    _read_config(path, index)
    unet = _read_config(path, unet_config)
    scheduler_file = path / "scheduler" / "scheduler_config.json"
    scheduler = _read_config(path, scheduler_file) if scheduler_file.is_file() else {}
    family = _CONTEXT_TO_FAMILY.get(_cross_attention_dim(unet), "unknown")
    if unet.get("in_channels") == 9:
        family = {"sd1": "sd1-inpaint", "sd2": "sd2-inpaint", "sdxl-base": "sdxl-inpaint"}.get(family, "unknown")
    prediction = "v" if scheduler.get("prediction_type") == "v_prediction" else "epsilon"
    if family == "sd2" and prediction == "v":
        family = "sd2-v"
    weights = [p for p in path.rglob("*") if p.suffix in MODEL_SUFFIXES]
    return ModelInfo(path, "diffusers", family, "inpaint" if family.endswith("inpaint") else None, prediction,
                     "scheduler config", len(weights), (), sum(_file_size(p) for p in weights))


def _read_config(folder: Path, file: Path) -> dict[str, Any]:
    """A diffusers JSON config as an object; a CorruptModelError naming the file when it cannot be read, is no UTF-8
    JSON, is nested absurdly deep, or holds something other than an object (a list, a string)."""
    where = file.relative_to(folder).as_posix()
    try:
        config = json.loads(file.read_text(encoding="utf-8"))
    except OSError as error:
        raise CorruptModelError(folder, f"unreadable config {where}: {error.strerror or error}") from None
    except (ValueError, RecursionError) as error:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        reason = "nested too deeply" if isinstance(error, RecursionError) else str(error)[:200]
        raise CorruptModelError(folder, f"unreadable config {where}: {reason}") from None
    if not isinstance(config, dict):
        raise CorruptModelError(folder, f"unreadable config {where}: expected a JSON object, got "
                                        f"{type(config).__name__}")
    return config


def _cross_attention_dim(config: Mapping[str, Any]) -> int | None:
    """The cross-attention width of a UNet or ControlNet config: an integer, or a per-block list of one width;
    None for anything else (then the family is unknown)."""
    value = config.get("cross_attention_dim")
    if isinstance(value, list) and value and all(item == value[0] for item in value):
        value = value[0]
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:  # a dangling symlink among the weights: counted as empty, the loader reports it
        return 0


# --- ControlNet ---------------------------------------------------------------------------------------------------
#: The prefix of the ControlNet in lllyasviel's original files (``control_model.input_hint_block.0.weight`` …).
CONTROLNET_LDM_PREFIX = "control_model."


def controlnet_format(names: list[str]) -> str | None:
    """``ldm`` (lllyasviel's layout, ``control_model.`` prefix or bare), ``diffusers`` (a ControlNetModel state dict
    in one file), or None when the tensors are no ControlNet."""
    if "controlnet_cond_embedding.conv_in.weight" in names and any(n.startswith("controlnet_down_blocks.")
                                                                   for n in names):
        return "diffusers"
    stripped = {n.removeprefix(CONTROLNET_LDM_PREFIX) for n in names}
    if "input_hint_block.0.weight" in stripped and any(n.startswith("zero_convs.") for n in stripped):
        return "ldm"
    if "lora_controlnet" in names:  # Stability's Control-LoRA: ControlNet tensors as low-rank differences
        return "control-lora"
    return None


def _identify_controlnet(names: list[str], shapes: Mapping[str, tuple[int, ...]], fmt: str,
                         common: dict[str, Any]) -> ModelInfo:
    """A ControlNet's family from its cross-attention width (SD 1.x 768, SD 2.x 1024, SDXL 2048)."""
    width = next((shape[1] for name, shape in shapes.items() if name.endswith("attn2.to_k.weight") and len(shape) == 2),
                 None)
    family = _WIDTH_TO_BASE.get(width, "unknown") if width else "unknown"
    if family == "unknown" and any(n.endswith(("add_embedding.linear_1.weight", "label_emb.0.0.weight"))
                                   for n in names):
        family = "sdxl"
    notes: tuple[str, ...] = ()
    if any(n.startswith(_UNET) for n in names):
        notes = ("the file holds a whole Stable Diffusion model besides the ControlNet: only control_model.* is used",)
    unsupported = None
    if fmt == "control-lora":
        unsupported = "a Control-LoRA (Stability AI): not supported yet (full ControlNets are)"
    elif any(n.startswith(("task_embedding", "control_add_embedding.", "spatial_ch_projs.")) for n in names):
        unsupported = "a ControlNet Union (xinsir) model: not supported yet (single-type ControlNets are)"
    return ModelInfo(kind="controlnet", family=family, format=fmt,
                     unsupported=unsupported, notes=notes, **common)


def _is_controlnet_folder(path: Path) -> bool:
    config = path / "config.json"
    if (path / "model_index.json").is_file() or not config.is_file():
        return False
    try:
        return json.loads(config.read_text(encoding="utf-8")).get("_class_name") == "ControlNetModel"
    except (OSError, ValueError, AttributeError, RecursionError):
        return False


def _identify_controlnet_folder(path: Path) -> ModelInfo:
    """A diffusers ControlNet folder (``config.json`` naming ControlNetModel, plus its weights)."""
    config = _read_config(path, path / "config.json")
    family = _WIDTH_TO_BASE.get(_cross_attention_dim(config), "unknown")
    weights = [p for p in path.iterdir() if p.suffix in MODEL_SUFFIXES]
    return ModelInfo(path, "controlnet", family, tensors=len(weights), bytes=sum(_file_size(p) for p in weights),
                     format="diffusers", notes=("a diffusers ControlNet folder",))
