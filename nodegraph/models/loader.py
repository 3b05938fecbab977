"""Loading single-file checkpoints and standalone VAEs into diffusers/transformers modules, strictly.

Weights are converted with diffusers' own LDM converters and assigned into modules built on the meta device, so no
random initialisation runs and safetensors tensors stay memory-mapped until they are cast or moved. Missing tensors
are an error that names the component and how many are missing — the libraries' converters would silently leave
them out.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from nodegraph.models import arch
from nodegraph.models.configs import load_config, load_tokenizer
from nodegraph.models.errors import CorruptModelError, IncompleteModelError, ModelError
from nodegraph.models.families import Family, get_family
from nodegraph.models.identify import ModelInfo, identify
from nodegraph.models.offline import import_diffusers, import_torch, import_transformers
from nodegraph.models.safe_load import load_state_dict, unwrap_state_dict


@dataclass
class LoadedCheckpoint:
    """The components of one checkpoint, ready to use. `vae` is None when the file holds none (then a VAE override
    is required); `text_encoders` and `tokenizers` are keyed by diffusers component name."""

    info: ModelInfo
    family: Family
    unet: Any
    vae: Any | None
    text_encoders: dict[str, Any] = field(default_factory=dict)
    tokenizers: dict[str, Any] = field(default_factory=dict)
    scheduler_config: dict[str, Any] = field(default_factory=dict)


def load_checkpoint(path: str | Path, *, prediction: str | None = None, dtype: Any = None) -> LoadedCheckpoint:
    """Load a single-file checkpoint (``.safetensors``/``.ckpt``) into its components on the CPU.

    `prediction` overrides the v-prediction rule for SD 2.x; `dtype` casts the weights (default: as stored).
    """
    path = Path(path)
    info = identify(path, prediction_override=prediction)
    if info.kind != "checkpoint":
        raise ModelError(path, f"is a {info.kind}, not a checkpoint")
    if info.unsupported or info.family not in _families():
        raise ModelError(path, info.unsupported or f"unrecognised checkpoint ({'; '.join(info.notes)})")
    family = get_family(info.family)
    checkpoint = unwrap_state_dict(load_state_dict(path))
    _require_float_weights(path, checkpoint)
    shapes = {name: tuple(t.shape) for name, t in checkpoint.items() if hasattr(t, "shape")}
    unet = _load_unet(path, family, checkpoint, shapes, dtype)
    vae = None
    if any(name.startswith("first_stage_model.") for name in shapes):
        vae = _load_vae(path, family, checkpoint, shapes, "first_stage_model.", dtype, f"{family.label} checkpoint")
    encoders = {name: _load_text_encoder(path, family, name, checkpoint, shapes, dtype)
                for name in family.text_encoders}
    tokenizers = {name.replace("text_encoder", "tokenizer"): load_tokenizer(family.name,
                                                                            name.replace("text_encoder", "tokenizer"))
                  for name in family.text_encoders}
    return LoadedCheckpoint(info, family, unet, vae, encoders, tokenizers, load_config(family.name, "scheduler"))


#: Integer tensors a checkpoint may legitimately hold (token positions, batch-norm counters).
_INTEGER_TENSORS = ("position_ids", "num_batches_tracked")


def _require_float_weights(path: Path, checkpoint: dict[str, Any]) -> None:
    """Refuse, in one line, a checkpoint whose weights are not floating-point numbers (a damaged or foreign file:
    loading it would fail once per layer). Reads dtypes only."""
    wrong = [name for name, tensor in checkpoint.items()
             if hasattr(tensor, "is_floating_point") and not tensor.is_floating_point()
             and not name.endswith(_INTEGER_TENSORS) and name.startswith(("model.diffusion_model.",
                                                                          "first_stage_model.", "cond_stage_model.",
                                                                          "conditioner."))]
    if wrong:
        example = wrong[0] if len(wrong[0]) <= 80 else wrong[0][:79] + "…"
        raise CorruptModelError(path, f"{len(wrong)} of its weights are not floating-point numbers (e.g. {example}: "
                                      f"{str(checkpoint[wrong[0]].dtype).removeprefix('torch.')}): a damaged or "
                                      "foreign file")


def load_diffusers_folder(path: str | Path, *, dtype: Any = None) -> LoadedCheckpoint:
    """Load a diffusers pipeline folder (``model_index.json``, ``unet/``, ``vae/``, ``text_encoder*/`` …) from disk
    only. Missing weights are an error, as for single files (transformers would fill them with random values)."""
    path = Path(path)
    info = identify(path)
    if info.family not in _families():
        raise ModelError(path, f"unrecognised diffusers pipeline ({info.family})")
    family = get_family(info.family)
    diffusers, transformers = import_diffusers(), import_transformers()
    what = f"{family.label} pipeline folder"

    def component(name: str, cls: Any) -> Any:
        folder = path / name
        if not folder.is_dir():
            raise IncompleteModelError(path, f"not a complete {what}: its {name} folder is missing")
        try:
            module, loading = cls.from_pretrained(folder, local_files_only=True, torch_dtype=dtype,
                                                  output_loading_info=True)
        except (OSError, ValueError) as error:
            raise IncompleteModelError(path, f"not a complete {what}: {name}: {str(error).splitlines()[0]}") from None
        missing = sorted(loading.get("missing_keys", ()))
        if missing:
            raise missing_tensors(path, what, name.replace("_", " "), missing)
        return module.eval().requires_grad_(False)

    unet = component("unet", diffusers.UNet2DConditionModel)
    vae = component("vae", diffusers.AutoencoderKL) if (path / "vae").is_dir() else None
    encoders, tokenizers = {}, {}
    for name in family.text_encoders:
        config = json.loads((path / name / "config.json").read_text(encoding="utf-8")) \
            if (path / name / "config.json").is_file() else {}
        with_projection = "CLIPTextModelWithProjection" in config.get("architectures", [])
        encoders[name] = component(name, transformers.CLIPTextModelWithProjection if with_projection
                                   else transformers.CLIPTextModel)
        tokenizer_name = name.replace("text_encoder", "tokenizer")
        own = path / tokenizer_name
        if (own / "vocab.json").is_file():
            tokenizers[tokenizer_name] = transformers.CLIPTokenizer.from_pretrained(own, local_files_only=True)
        else:  # many shared folders leave the tokenizer out: the bundled one is the same vocabulary
            tokenizers[tokenizer_name] = load_tokenizer(family.name, tokenizer_name)
    scheduler_file = path / "scheduler" / "scheduler_config.json"
    scheduler = (json.loads(scheduler_file.read_text(encoding="utf-8")) if scheduler_file.is_file()
                 else load_config(family.name, "scheduler"))
    return LoadedCheckpoint(info, family, unet, vae, encoders, tokenizers, scheduler)


def load_vae_file(path: str | Path, family: str = "sd1", dtype: Any = None) -> Any:
    """Load a standalone VAE file (bare LDM keys, or ``first_stage_model.`` ones; stray ``loss.*`` keys ignored)."""
    path = Path(path)
    state = unwrap_state_dict(load_state_dict(path))
    shapes = {name: tuple(t.shape) for name, t in state.items() if hasattr(t, "shape")}
    prefix = "first_stage_model." if any(n.startswith("first_stage_model.") for n in shapes) else ""
    if prefix + "encoder.conv_in.weight" not in shapes:
        raise ModelError(path, "not a VAE file (no encoder/decoder tensors)")
    return _load_vae(path, get_family(family), state, shapes, prefix, dtype, "VAE")


def _families() -> set[str]:
    from nodegraph.models.families import FAMILIES

    return set(FAMILIES)


def _load_unet(path: Path, family: Family, checkpoint: Mapping[str, Any], shapes: Mapping[str, tuple[int, ...]],
               dtype: Any) -> Any:
    diffusers = import_diffusers()
    from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint

    try:
        config = arch.unet_config_from_shapes(shapes, load_config(family.name, "unet"))
    except KeyError as error:
        raise missing_tensors(path, f"{family.label} checkpoint", "UNet", [error.args[0]]) from None
    converted = convert_ldm_unet_checkpoint(dict(checkpoint), config)
    return build_module(path, lambda: diffusers.UNet2DConditionModel.from_config(config), converted,
                        f"{family.label} checkpoint", "UNet", dtype)


def _load_vae(path: Path, family: Family, state: Mapping[str, Any], shapes: Mapping[str, tuple[int, ...]],
              prefix: str, dtype: Any, what: str) -> Any:
    diffusers = import_diffusers()
    from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint

    try:
        config = arch.vae_config_from_shapes(shapes, load_config(family.name, "vae"), prefix)
    except KeyError as error:
        raise missing_tensors(path, what, "VAE", [error.args[0]]) from None
    converted = convert_ldm_vae_checkpoint(dict(state), config)
    return build_module(path, lambda: diffusers.AutoencoderKL.from_config(config), converted, what, "VAE", dtype)


def text_encoder_prefix(family: Family, component: str) -> tuple[str, bool]:
    """Where a text encoder sits in a single file, and whether it is in OpenCLIP layout (fused qkv)."""
    if family.base == "sd1":
        return "cond_stage_model.transformer.", False
    if family.base == "sd2":
        return "cond_stage_model.model.", True
    if family.name == "sdxl-refiner":
        return "conditioner.embedders.0.model.", True
    if component == "text_encoder":
        return "conditioner.embedders.0.transformer.", False
    return "conditioner.embedders.1.model.", True


def _load_text_encoder(path: Path, family: Family, component: str, checkpoint: Mapping[str, Any],
                       shapes: Mapping[str, tuple[int, ...]], dtype: Any) -> Any:
    transformers = import_transformers()
    from diffusers.loaders.single_file_utils import convert_ldm_clip_checkpoint, convert_open_clip_checkpoint

    what = f"{family.label} checkpoint"
    prefix, openclip = text_encoder_prefix(family, component)
    part = {k: v for k, v in checkpoint.items() if k.startswith(prefix)}
    if not part:
        raise IncompleteModelError(path, f"not a complete {what}: its {component.replace('_', ' ')} is missing")
    if openclip:
        blocks = arch.openclip_layer_count(shapes, prefix)
        hidden = shapes[prefix + "token_embedding.weight"][1]
        converted = convert_open_clip_checkpoint(SimpleNamespace(config=SimpleNamespace(hidden_size=hidden)), part,
                                                 prefix=prefix)
        # SD 2.x files carry one block more than the text encoder uses (their pipeline reads the penultimate one).
        keep = blocks - 1 if family.base == "sd2" else blocks
    else:
        converted = convert_ldm_clip_checkpoint(part, remove_prefix=prefix)
        keep = None
    converted = {k.removeprefix("text_model."): v for k, v in converted.items() if not k.endswith("position_ids")}
    if keep is not None:
        converted = {k: v for k, v in converted.items()
                     if not (k.startswith("encoder.layers.") and int(k.split(".")[2]) >= keep)}
    converted_shapes = {k: tuple(v.shape) for k, v in converted.items()}
    try:
        config_dict = arch.clip_config_from_shapes(converted_shapes, load_config(family.name, component), "")
    except KeyError as error:
        raise missing_tensors(path, what, component.replace("_", " "), [error.args[0]]) from None
    with_projection = "text_projection.weight" in converted_shapes
    if with_projection:
        config_dict["projection_dim"] = converted_shapes["text_projection.weight"][0]
    config = transformers.CLIPTextConfig(**{k: v for k, v in config_dict.items()
                                            if not k.startswith("_") and k != "architectures"})
    cls = transformers.CLIPTextModelWithProjection if with_projection else transformers.CLIPTextModel
    with import_torch().device("meta"):
        module = cls(config)
    if any(name.startswith("text_model.") for name in module.state_dict()):  # the projection model keeps the prefix
        converted = {(k if k.startswith("text_projection") else f"text_model.{k}"): v for k, v in converted.items()}
    return build_module(path, lambda: module, converted, what, component.replace("_", " "), dtype)


def missing_tensors(path: Path, what: str, component: str, names: list[str]) -> IncompleteModelError:
    """The error for a file that lacks tensors: how many, of which component, and the first few names."""
    shown = ", ".join(names[:3]) + (", …" if len(names) > 3 else "")
    plural = "tensor" if len(names) == 1 else "tensors"
    return IncompleteModelError(path, f"not a complete {what}: {len(names)} {component} {plural} missing ({shown})")


def build_module(path: Path, make: Any, state: Mapping[str, Any], what: str, component: str, dtype: Any) -> Any:
    """Build a module on the meta device and assign `state` into it; missing tensors are an error naming them."""
    torch = import_torch()
    with torch.device("meta"):
        module = make()
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state))
    if missing:
        raise missing_tensors(path, what, component, missing)
    unexpected = sorted(set(state) - set(expected))
    if unexpected:  # the file holds tensors the derived structure has no place for: never drop weights silently
        raise IncompleteModelError(path, f"not a valid {what}: {len(unexpected)} {component} tensors do not fit the "
                                         f"model ({', '.join(unexpected[:3])})")
    wrong = [name for name in expected if tuple(expected[name].shape) != tuple(state[name].shape)]
    if wrong:
        raise IncompleteModelError(path, f"not a valid {what}: {len(wrong)} {component} tensors have unexpected "
                                         f"shapes ({', '.join(wrong[:3])})")
    module.load_state_dict({name: state[name] for name in expected}, strict=True, assign=True)
    for name, buffer in list(module.named_buffers()):
        if buffer.is_meta:  # non-persistent buffers are not in files: rebuild the ones we know
            if not name.endswith("position_ids"):
                raise ModelError(path, f"cannot initialise buffer {name} of the {component}")
            owner = module.get_submodule(name.rpartition(".")[0])
            owner.register_buffer("position_ids", torch.arange(buffer.shape[-1]).expand((1, -1)), persistent=False)
    if dtype is not None:
        module.to(dtype)
    module.eval()
    module.requires_grad_(False)
    return module
