"""Device selection and the dtype policy: fp16 on GPUs (or the precision the user chose), fp32 on the CPU, and a
VAE that never returns black images."""

from __future__ import annotations

import os
import re
from typing import Any

from nodegraph.models.offline import import_torch
from nodegraph.settings import PRECISIONS


def pick_device(requested: str = "auto") -> Any:
    """The torch device for "auto", "cpu", "cuda", "cuda:N" or "mps"; "auto" prefers CUDA, then MPS, then the CPU.

    Asking for a device that is not there is a clear error instead of a silent fallback.
    """
    torch = import_torch()
    if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", requested):
        raise ValueError(f"unknown device {requested!r}: use auto, cpu, cuda, cuda:N or mps")
    if requested == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(requested)
    if device.type == "cuda" and (not torch.cuda.is_available() or (device.index or 0) >= torch.cuda.device_count()):
        raise ValueError(f"device {requested!r} is not available on this machine")
    if device.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError("device 'mps' is not available on this machine")
    return device


def cpu_fallback_note(device: Any) -> str:
    """Why models run on the CPU of a machine whose GPU could run them, in words for the status bar and the
    command line; '' when the device is a GPU or the machine has none that this torch could use.

    Honesty about builds: a CPU-only torch on a machine with an NVIDIA GPU, or a CUDA torch that finds no usable
    GPU (no driver, or one too old), must never look like a normal GPU run.
    """
    if getattr(device, "type", None) != "cpu":
        return ""
    from nodegraph.build_info import build_info
    from nodegraph.hardware import nvidia_gpu

    torch = import_torch()
    gpu = nvidia_gpu()
    cuda_build = getattr(torch.version, "cuda", None)
    if cuda_build is None:
        if gpu is None:
            return ""
        remedy = ("install nodegraph's CUDA build" if build_info().packaged
                  else "install a CUDA build of torch (see the README)")
        return f"this torch is a CPU-only build, so {gpu} is not used: {remedy}"
    if torch.cuda.is_available():
        return ""  # the user chose the CPU although CUDA works: their choice, nothing to explain
    found = f"found {gpu}" if gpu else "no NVIDIA driver was found"
    return (f"this is a CUDA {cuda_build} build of torch, but CUDA cannot be used here ({found}; the driver may be "
            "missing or too old): running on the CPU")


def compute_dtype(device: Any, precision: str = "auto") -> Any:
    """The dtype models run in on `device` for the user's `precision` setting.

    "auto" is float16 on CUDA and MPS (bfloat16 where ``NODEGRAPH_DTYPE=bf16``); "fp16", "bf16" and "fp32" force
    that dtype on a GPU. The CPU always runs float32, whatever is asked: its half-precision convolutions are very
    slow or missing, and float32 is what gives correct images there.
    """
    torch = import_torch()
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}: use {', '.join(PRECISIONS)}")
    if device.type == "cpu" or precision == "fp32":
        return torch.float32
    if precision == "auto":
        precision = "bf16" if os.environ.get("NODEGRAPH_DTYPE") == "bf16" else "fp16"
    return torch.bfloat16 if precision == "bf16" else torch.float16


def decode_latents(vae: Any, latents: Any) -> Any:
    """Decode with the VAE in its dtype; if that gives NaN/inf (SD 1.x/SDXL VAEs overflow in fp16 and give black
    images elsewhere), decode again in float32. Returns float32 images in [-1, 1] layout as the VAE produces."""
    torch = import_torch()
    with torch.inference_mode():
        if vae.dtype == torch.float16 and getattr(vae.config, "force_upcast", False):
            image = None  # the SDXL VAE is known to overflow in fp16: go straight to float32, as diffusers does
        else:
            image = vae.decode(latents.to(vae.dtype)).sample
        if vae.dtype != torch.float32 and (image is None or not torch.isfinite(image).all()):
            original = vae.dtype
            vae.to(torch.float32)
            try:
                image = vae.decode(latents.to(torch.float32)).sample
            finally:
                vae.to(original)
    if not bool(torch.isfinite(image).all()):
        from nodegraph.core.errors import NodeError
        from nodegraph.models.integrity import NAN_HINT

        raise NodeError(f"the decoded image holds NaN or infinite values (it would be black): the latents or the "
                        f"VAE's weights are not finite — {NAN_HINT}")
    return image.float()


def total_memory_bytes() -> int:
    """The machine's physical memory (for the default RAM budget)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 16 * 1024**3
