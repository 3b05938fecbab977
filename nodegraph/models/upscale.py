"""Upscale models — ESRGAN, Real-ESRGAN (and its Compact/SRVGG variant), SwinIR, HAT, DAT, … — through spandrel:
identifying them from tensor names and shapes, loading them through the project's safe loaders, and upscaling images
tile by tile with bounded memory.

spandrel knows the architectures (detection from the state dict, hyper-parameters, the modules); this module never
lets it open a file: safetensors are memory-mapped by safetensors, pickles go through
:func:`nodegraph.models.safe_load.load_state_dict`, and spandrel only ever sees the resulting state dict.
"""

from __future__ import annotations

import enum
import math
import sys
import threading
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from nodegraph.models.errors import CorruptModelError, IncompleteModelError, ModelError
from nodegraph.models.offline import import_torch
from nodegraph.models.safe_load import load_state_dict, unwrap_state_dict

SPANDREL_REQUIREMENT = "spandrel>=0.4.2,<0.5"
INSTALL_HINT = (f'install it with: pip install --no-deps "{SPANDREL_REQUIREMENT}" (--no-deps because spandrel '
                "declares torchvision, which no upscaler uses, and PyPI's torchvision is a CUDA build that would pull "
                "a second, CUDA torch onto the machine)")

#: spandrel purposes that take an image and give an image: super-resolution and restoration (1x: denoise, JPEG …).
USABLE_PURPOSES = ("SR", "Restoration")
_PURPOSE_WORDS = {"FaceSR": "a face restoration model", "Inpainting": "an inpainting model"}

#: Training scripts' wrappers around an upscaler's tensors (BasicSR/Real-ESRGAN: ``params_ema`` preferred over
#: ``params``); spandrel unwraps the same ones, but identification reads the tensors before spandrel sees them.
_WRAPPER_KEYS = ("model_state_dict", "params_ema", "params-ema", "params", "model", "net")

#: Attention-based architectures hold several times more activations per pixel than convolutional ones.
_TRANSFORMERS = frozenset({"SwinIR", "Swin2SR", "HAT", "DAT", "ATD", "DRCT", "RGT", "GRL", "IPT", "FDAT", "Uformer",
                           "FFTformer", "RetinexFormer", "MoESR", "SeemoRe", "OmniSR", "SCUNet", "KBNet"})
_MIN_TILE, _MAX_TILE = 32, 2048
_import_lock = threading.Lock()


# --- importing spandrel ---------------------------------------------------------------------------------------------
def import_spandrel(path: str | Path | None = None) -> ModuleType:
    """spandrel, imported even where torchvision is missing or broken; a ModelError naming `path` when spandrel
    itself is not installed.

    ``import spandrel`` imports every architecture, and two of them (LaMa, RestoreFormer — an inpainter and a face
    restorer, no upscaler) import names from ``torchvision.transforms.functional`` at import time. CPU-only installs
    have no torchvision (PyPI's is a CUDA build that does not import with a CPU torch). When torchvision does not
    import, stand-in modules offering just those names are put into ``sys.modules`` for the duration of spandrel's
    import and removed right after, so no other library ever sees a fake torchvision. Their functions raise a clear
    error; they are never reached, since those two architectures are refused as not being upscalers.
    """
    with _import_lock:
        loaded = sys.modules.get("spandrel")
        if loaded is not None:
            return loaded
        import_torch()
        stand_ins = {} if _torchvision_imports() else _torchvision_stand_ins()
        sys.modules.update(stand_ins)
        try:
            import spandrel
        except ImportError as error:
            if error.name == "spandrel":
                raise ModelError(path, f"upscale models need the spandrel package, which is not installed: "
                                       f"{INSTALL_HINT}") from None
            raise ModelError(path, f"the spandrel package cannot be imported ({error}); reinstall it: "
                                   f"{INSTALL_HINT}") from None
        finally:
            for name, module in stand_ins.items():
                if sys.modules.get(name) is module:
                    del sys.modules[name]
        return spandrel


def _torchvision_imports() -> bool:
    """True when the real torchvision imports; after a failed import its half-initialised modules are purged."""
    try:
        import torchvision.transforms.functional  # noqa: F401
    except Exception:  # a CUDA torchvision next to a CPU torch raises RuntimeError/OSError, not only ImportError
        for name in [n for n in sys.modules if n == "torchvision" or n.startswith("torchvision.")]:
            del sys.modules[name]
        return False
    return True


def _torchvision_stand_ins() -> dict[str, ModuleType]:
    """Minimal ``torchvision``, ``torchvision.transforms`` and ``torchvision.transforms.functional`` modules offering
    only what spandrel's LaMa and RestoreFormer import: ``InterpolationMode``, ``rotate`` and ``normalize``."""

    def needs_torchvision(*_args: Any, **_kwargs: Any) -> Any:
        raise ModelError(None, "this architecture needs torchvision, which is not installed or does not work here")

    functional = ModuleType("torchvision.transforms.functional")
    functional.InterpolationMode = enum.Enum("InterpolationMode", {  # type: ignore[attr-defined]
        "NEAREST": "nearest", "BILINEAR": "bilinear", "BICUBIC": "bicubic"})
    functional.rotate = needs_torchvision  # type: ignore[attr-defined]
    functional.normalize = needs_torchvision  # type: ignore[attr-defined]
    transforms = ModuleType("torchvision.transforms")
    transforms.functional = functional  # type: ignore[attr-defined]
    torchvision = ModuleType("torchvision")
    torchvision.transforms = transforms  # type: ignore[attr-defined]
    return {"torchvision": torchvision, "torchvision.transforms": transforms,
            "torchvision.transforms.functional": functional}


# --- identification -------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class UpscaleArchitecture:
    """What an upscale model file holds: spandrel's architecture name (``ESRGAN``, ``RealESRGAN Compact``,
    ``SwinIR`` …), its scale (None when not worked out), spandrel's purpose and size tags."""

    name: str
    scale: int | None = None
    purpose: str | None = None
    tags: tuple[str, ...] = ()
    #: Set when the architecture was guessed from key names because spandrel is not installed.
    without_spandrel: bool = False

    @property
    def unsupported(self) -> str | None:
        """Why the model cannot be used to upscale (a face restorer, an inpainter), or None."""
        if self.purpose is None or self.purpose in USABLE_PURPOSES:
            return None
        return f"{_PURPOSE_WORDS.get(self.purpose, self.purpose)} ({self.name}), not an image upscaler"

    @property
    def notes(self) -> tuple[str, ...]:
        """Lines for ``nodegraph inspect``: the scale, spandrel's tags, and a missing spandrel."""
        notes = []
        if self.scale is not None:
            notes.append(f"{self.scale}x" + (" restoration (same size)" if self.scale == 1 else " upscaler"))
        if self.tags:
            notes.append(" ".join(self.tags))
        if self.without_spandrel:
            notes.append(f"recognised from its tensor names; running it needs spandrel: {INSTALL_HINT}")
        return tuple(notes)


def unwrap_upscale_state_dict(data: Mapping[str, Any]) -> Mapping[str, Any]:
    """The tensors of an upscale model file, looking inside the wrappers training scripts add (``params_ema``,
    ``params``, ``model`` …); a Lightning ``state_dict`` wrapper is left to :func:`unwrap_state_dict`."""
    if "state_dict" not in data:
        for key in _WRAPPER_KEYS:
            if isinstance(data.get(key), Mapping):
                return data[key]
    return data


#: Input channels of an image model's first convolution: grey, RGB, RGBA, and RGB after a 2× or 4× pixel unshuffle.
_IMAGE_INPUT_CHANNELS = (1, 3, 4, 12, 48)


def detect_upscale_architecture(shapes: Mapping[str, tuple[int, ...]]) -> UpscaleArchitecture | None:
    """The upscale architecture of a state dict known only by its tensor names and shapes, or None.

    spandrel's own detection runs on shape-only tensors on the meta device (nothing is allocated), and its loader
    builds the model on the meta device to read the scale and purpose. Without spandrel, the common ESRGAN,
    Real-ESRGAN Compact and SwinIR key layouts are recognised by name.
    """
    if not any(len(shape) == 4 and shape[1] in _IMAGE_INPUT_CHANNELS for shape in shapes.values()):
        return None  # no convolution that reads an image: not worth importing torch and spandrel (UI threads)
    try:
        spandrel = import_spandrel()
    except ModelError:
        return _detect_without_spandrel(shapes)
    torch = import_torch()
    state = {name: torch.empty(shape, device="meta") for name, shape in shapes.items()}
    state = spandrel.canonicalize_state_dict(state)
    for support in spandrel.MAIN_REGISTRY.architectures("detection"):
        try:
            found = support.detect(state)
        except Exception:  # a detector meeting a layout it does not expect: not this architecture
            found = False
        if found:
            return _describe(support.architecture, state)
    return None


def _describe(architecture: Any, state: dict[str, Any]) -> UpscaleArchitecture:
    """Scale, purpose and tags of a detected architecture, from a model built without reading any weight: on the
    meta device, or (for the few builders that compute numbers while building, such as SwinIR's drop-path rates) on
    the CPU from zero-stride tensors that hold one number each."""
    torch = import_torch()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            with torch.device("meta"):
                descriptor = architecture.load(state)
        except Exception:
            try:
                descriptor = architecture.load({name: torch.zeros((), dtype=value.dtype).expand(value.shape)
                                                for name, value in state.items()})
            except Exception:  # a builder that needs real values: the name is known, the scale is not
                return UpscaleArchitecture(architecture.name)
    return UpscaleArchitecture(architecture.name, descriptor.scale, descriptor.purpose, tuple(descriptor.tags))


def _detect_without_spandrel(shapes: Mapping[str, tuple[int, ...]]) -> UpscaleArchitecture | None:
    """The three most common upscaler layouts, from key names (scale where the keys tell it)."""
    names = {name.removeprefix("module.") for name in shapes}
    shapes = {name.removeprefix("module."): shape for name, shape in shapes.items()}
    if {"model.0.weight", "model.1.sub.0.RDB1.conv1.0.weight"} <= names:  # original ESRGAN layout
        layers = 1 + max(int(n.split(".")[1]) for n in names if n.startswith("model.") and n.split(".")[1].isdigit())
        return UpscaleArchitecture("ESRGAN", 2 ** ((layers - 5) // 3), "SR", without_spandrel=True)
    if "conv_first.weight" in names and any(n.startswith(("body.0.rdb1.", "RRDB_trunk.0.RDB1.")) for n in names):
        ups = sum(1 for n in names if n in ("conv_up1.weight", "conv_up2.weight", "upconv1.weight", "upconv2.weight"))
        unshuffle = {12: 2, 48: 4}.get(shapes["conv_first.weight"][1], 1)  # RealESRGAN_x2plus: pixel-unshuffled input
        return UpscaleArchitecture("ESRGAN", 2 ** ups // unshuffle, "SR", without_spandrel=True)
    if {"body.0.weight", "body.1.weight"} <= names:  # Real-ESRGAN Compact (SRVGG): the last conv feeds pixelshuffle
        last = max(int(n.split(".")[1]) for n in names if n.startswith("body.") and n.split(".")[1].isdigit())
        out, channels = shapes.get(f"body.{last}.weight", (0,))[0], shapes["body.0.weight"][1]
        scale = math.isqrt(out // channels) if channels and out % channels == 0 else None
        return UpscaleArchitecture("RealESRGAN Compact", scale or None, "SR", without_spandrel=True)
    if "conv_first.weight" in names and any(".residual_group.blocks." in n for n in names):
        return UpscaleArchitecture("SwinIR", without_spandrel=True)
    return None


# --- loading --------------------------------------------------------------------------------------------------------
@dataclass
class UpscaleModel:
    """A loaded upscale model: spandrel's descriptor, and its module as a field of its own so the model cache can
    measure it and move it to the device for use."""

    path: Path
    descriptor: Any
    module: Any
    architecture: str
    scale: int

    @property
    def dtype(self) -> Any:
        """The dtype the model runs in."""
        return self.descriptor.dtype


@dataclass(frozen=True)
class UpscaleModelHandle:
    """What an UPSCALE_MODEL edge carries: the file and what it is, never the weights (resolved through the model
    cache where the image is upscaled)."""

    path: Path
    name: str
    architecture: str
    scale: int


def load_upscale_model(path: str | Path, dtype: Any = None) -> UpscaleModel:
    """Load an upscale model file on the CPU, in `dtype` where its architecture supports it (else float32).

    The state dict is read by the project's safe loaders (a pickle referencing code is refused); spandrel only
    detects the architecture and builds the module. Face restorers and inpainters are refused: they do not map an
    image to an image.
    """
    path = Path(path)
    spandrel = import_spandrel(path)
    torch = import_torch()
    state = dict(unwrap_upscale_state_dict(unwrap_state_dict(load_state_dict(path))))
    try:
        with warnings.catch_warnings():  # SwinIR-type builders warn about torch.meshgrid's future default
            warnings.filterwarnings("ignore", message="torch.meshgrid", category=UserWarning)
            descriptor = spandrel.ModelLoader().load_from_state_dict(state)
    except spandrel.UnsupportedModelError:
        raise ModelError(path, "not an upscale model of an architecture spandrel knows (ESRGAN, Real-ESRGAN, SwinIR, "
                               "HAT, DAT, …)") from None
    except (RuntimeError, KeyError, ValueError, IndexError, AssertionError, TypeError) as error:
        text = str(error).strip().splitlines()
        reason = text[0] if text else type(error).__name__
        error_type = IncompleteModelError if "Missing key" in str(error) else CorruptModelError
        raise error_type(path, f"its tensors do not fit the architecture they look like ({reason})") from None
    name = descriptor.architecture.name
    found = UpscaleArchitecture(name, descriptor.scale, descriptor.purpose)
    if found.unsupported or not isinstance(descriptor, spandrel.ImageModelDescriptor):
        raise ModelError(path, f"{found.unsupported or 'not an image-to-image model'}: it cannot be used to upscale")
    descriptor.eval()
    descriptor.model.requires_grad_(False)
    descriptor.to(dtype=_supported_dtype(descriptor, dtype or torch.float32))
    return UpscaleModel(path, descriptor, descriptor.model, name, descriptor.scale)


def _supported_dtype(descriptor: Any, wanted: Any) -> Any:
    """`wanted` if the architecture runs in it (spandrel's supports_half / supports_bfloat16), else float32."""
    torch = import_torch()
    if wanted == torch.float16 and not descriptor.supports_half:
        return torch.float32
    if wanted == torch.bfloat16 and not descriptor.supports_bfloat16:
        return torch.float32
    return wanted


# --- upscaling ------------------------------------------------------------------------------------------------------
def estimate_tile_bytes(model: UpscaleModel, tile: int) -> int:
    """Device memory one `tile` × `tile` tile needs (activations, not weights), estimated from the scale and the
    dtype: measured on CPU in float32, a 4x ESRGAN (64 features, 23 blocks) peaks near 15 KB per input pixel and a
    4x SwinIR-M near 28 KB; this estimate is 24 KB and 72 KB, leaving a margin for allocator caching."""
    per_pixel = model.descriptor.dtype.itemsize * (model.scale ** 2 * 256 + 2048)
    if model.architecture in _TRANSFORMERS:
        per_pixel *= 3
    return per_pixel * tile * tile


def memory_budget(device: Any) -> int:
    """Bytes one tile may use on `device`: half the free memory of a GPU, at most a quarter of the available RAM
    (and 2 GiB) on the CPU, 2 GiB on Apple's MPS."""
    torch = import_torch()
    device = torch.device(device)
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return free // 2
    if device.type == "cpu":
        import psutil

        return min(psutil.virtual_memory().available // 4, 2 * 1024**3)
    return 2 * 1024**3


def auto_tile_size(model: UpscaleModel, budget: int) -> int:
    """The largest tile side whose estimated memory fits in `budget` bytes, aligned to the model's size
    requirements (and to 8), between 32 and 2048 pixels."""
    per_pixel = estimate_tile_bytes(model, 1)
    return _aligned_tile(model, int(math.sqrt(max(budget, 0) / per_pixel)))


def _aligned_tile(model: UpscaleModel, tile: int) -> int:
    requirements = model.descriptor.size_requirements
    step = math.lcm(8, requirements.multiple_of)
    tile = min(max(tile, _MIN_TILE, requirements.minimum), _MAX_TILE)
    return max(step, tile // step * step)


def upscale_image(model: UpscaleModel, pixels: Any, *, tile: int = 0, overlap: int | None = None,
                  progress: Callable[[int, int], None] | None = None) -> Any:
    """Upscale images with `model` (on its device, in its dtype) tile by tile.

    Args:
        pixels: float images in [0, 1], shaped [batch, height, width, channels], on any device.
        tile: tile side in input pixels; 0 picks the largest that fits the device's memory (see
            :func:`auto_tile_size`). A tile that runs out of memory is retried with tiles half the size.
        overlap: input pixels shared by neighbouring tiles (default: an eighth of the tile, at least 16). Where
            tiles overlap, the outputs are averaged with weights that are zero in the quarter of the overlap next to
            a tile's cut edge and rise linearly over its middle half, so a model whose receptive field is within a
            quarter of the overlap gives exactly the untiled result.
        progress: called with (tiles done, tiles in all) after each tile; it may raise to cancel.

    Returns float32 images in [0, 1], shaped [batch, height × scale, width × scale, 3], on the CPU.
    """
    torch = import_torch()
    descriptor = model.descriptor
    images = _model_channels(pixels.float().cpu(), descriptor.input_channels, model.path)
    if tile > 0:
        tile = _aligned_tile(model, tile)
    elif descriptor.tiling.name == "INTERNAL":  # the model tiles internally: give it the whole image
        tile = max(images.shape[-2:])
    else:
        tile = auto_tile_size(model, memory_budget(descriptor.device))
    batch, _, height, width = images.shape
    scale = descriptor.scale
    result = torch.empty(batch, height * scale, width * scale, 3)
    while True:
        try:
            for index in range(batch):
                def step(done: int, total: int, index: int = index) -> None:
                    if progress is not None:
                        progress(index * total + done, batch * total)

                image = _upscale_tiled(descriptor, images[index:index + 1], tile, _overlap(tile, overlap), step)
                image = image[:, :3] if image.shape[1] >= 3 else image.expand(-1, 3, -1, -1)
                result[index] = image[0].clamp(0, 1).permute(1, 2, 0)
            return result
        except Exception as error:
            if not _out_of_memory(error):
                raise
            if descriptor.device.type == "cuda":
                torch.cuda.empty_cache()
            if tile <= _MIN_TILE:
                raise ModelError(model.path, f"out of memory even with {tile}-pixel tiles") from None
            tile = _aligned_tile(model, min(tile, max(height, width)) // 2)


def _overlap(tile: int, overlap: int | None) -> int:
    """The overlap in use: as asked, or an eighth of the tile (at least 16 pixels); never over half the tile."""
    return min(overlap if overlap is not None else max(16, tile // 8), tile // 2)


def _model_channels(pixels: Any, channels: int, path: Path) -> Any:
    """[batch, height, width, 3] pixels as [batch, channels, height, width] for a model taking `channels`."""
    torch = import_torch()
    images = pixels.permute(0, 3, 1, 2)
    if channels == 3:
        return images.contiguous()
    if channels == 1:  # grayscale models: ITU-R 601 luma, as Pillow's convert("L")
        weights = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
        return (images * weights).sum(1, keepdim=True)
    if channels == 4:  # RGBA models: an opaque alpha channel
        return torch.cat([images, torch.ones_like(images[:, :1])], 1)
    raise ModelError(path, f"the model takes {channels}-channel images; only 1, 3 and 4 channels are supported")


def _out_of_memory(error: BaseException) -> bool:
    torch = import_torch()
    if isinstance(error, torch.cuda.OutOfMemoryError):
        return True
    text = str(error).lower()
    return isinstance(error, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)


def _tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Tile origins along one axis, spread evenly so neighbours share at least `overlap` pixels."""
    if length <= tile:
        return [0]
    count = math.ceil((length - overlap) / (tile - overlap))
    return [round(i * (length - tile) / (count - 1)) for i in range(count)]


def _edge_weights(size: int, blend_start: bool, blend_end: bool, overlap: int) -> Any:
    """One axis of a tile's blending weights: 1, except over the `overlap` next to a side shared with a neighbour,
    where they are 0 for the outer quarter and rise linearly over the middle half."""
    torch = import_torch()
    weights = torch.ones(size)
    dead = overlap // 4
    ramp = torch.arange(1, overlap - 2 * dead + 1, dtype=torch.float32) / (overlap - 2 * dead + 1)
    ramp = torch.cat([torch.zeros(dead), ramp])[:size]
    if blend_start:
        weights[:ramp.numel()] = torch.minimum(weights[:ramp.numel()], ramp)
    if blend_end:
        weights[size - ramp.numel():] = torch.minimum(weights[size - ramp.numel():], ramp.flip(0))
    return weights


def _upscale_tiled(descriptor: Any, image: Any, tile: int, overlap: int, step: Callable[[int, int], None]) -> Any:
    """One [1, channels, height, width] image upscaled tile by tile, the overlaps blended (see upscale_image)."""
    torch = import_torch()
    _, _, height, width = image.shape
    scale = descriptor.scale
    rows, cols = _tile_starts(height, tile, overlap), _tile_starts(width, tile, overlap)
    tile_h, tile_w = min(tile, height), min(tile, width)
    if len(rows) == len(cols) == 1:
        output = descriptor(image.to(descriptor.device, descriptor.dtype)).float().cpu()
        step(1, 1)
        return output
    output = torch.zeros(1, descriptor.output_channels, height * scale, width * scale)
    weight_sum = torch.zeros(1, 1, height * scale, width * scale)
    for row, top in enumerate(rows):
        wy = _edge_weights(tile_h * scale, row > 0, row < len(rows) - 1, overlap * scale)
        for col, left in enumerate(cols):
            piece = image[:, :, top:top + tile_h, left:left + tile_w]
            result = descriptor(piece.to(descriptor.device, descriptor.dtype)).float().cpu()
            wx = _edge_weights(tile_w * scale, col > 0, col < len(cols) - 1, overlap * scale)
            weight = wy[:, None] * wx[None, :]
            area = (slice(None), slice(None), slice(top * scale, (top + tile_h) * scale),
                    slice(left * scale, (left + tile_w) * scale))
            output[area] += result * weight
            weight_sum[area] += weight
            step(row * len(cols) + col + 1, len(rows) * len(cols))
    return output.div_(weight_sum)
