"""Edge values. Handles — what MODEL, CLIP and VAE edges carry — are references to files plus the patches to apply,
never weights; LATENT and IMAGE edges carry tensors with the information needed for image metadata.

A handle is small, immutable and hashable, so cache signatures stay cheap, two branches with different LoRA stacks
share one loaded checkpoint, and an add-on can be checked against the checkpoint's family before anything runs.
Weights are resolved inside the sampler, encoder and decoder through the model manager.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from nodegraph.models.lora import LoraSpec


@dataclass(frozen=True)
class ModelHandle:
    """A checkpoint's UNet plus the patches to apply for sampling (LoRAs at their UNet strength, hypernetworks)."""

    checkpoint: Path
    name: str
    family: str
    prediction: str
    loras: tuple[LoraSpec, ...] = ()
    hypernetworks: tuple[tuple[Path, float], ...] = ()


@dataclass(frozen=True)
class ClipHandle:
    """A checkpoint's text encoder(s) plus LoRAs (at their text strength), embeddings and CLIP skip (1 = last
    layer, 2 = penultimate, as AUTOMATIC1111 counts)."""

    checkpoint: Path
    family: str
    loras: tuple[LoraSpec, ...] = ()
    embeddings: tuple[tuple[str, Path], ...] = ()
    clip_skip: int = 1


@dataclass(frozen=True)
class VaeHandle:
    """The VAE of a checkpoint, or a standalone VAE file chosen by a VAE override."""

    path: Path
    name: str
    family: str
    from_checkpoint: bool = True


@dataclass(frozen=True)
class GenerationInfo:
    """What produced a latent or an image, carried along for the PNG metadata that other tools read."""

    prompt: str = ""
    negative_prompt: str = ""
    steps: int = 0
    sampler: str = ""
    schedule: str = ""
    cfg: float = 0.0
    seed: int = 0
    width: int = 0
    height: int = 0
    denoise: float = 1.0
    model_name: str = ""
    model_path: Path | None = None
    loras: tuple[tuple[str, float], ...] = ()
    clip_skip: int = 1
    extra: tuple[tuple[str, str], ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class Latent:
    """A LATENT edge: latents in the model's space (scaled by the VAE's scaling factor, as diffusers' pipelines
    keep them), an optional inpainting mask at latent resolution (1 = repaint), and how they were made.

    `scale` is the factor the samples were multiplied by (None: not known or irrelevant, as for empty latents). The
    factor is not stored in VAE files (0.18215 for SD 1.x/2.x, 0.13025 for SDXL), so a VAE override can encode with
    another factor than the model samples with: the sampler rescales its input to its model's factor and records
    that, and the decoder divides by the recorded factor, whatever VAE it uses."""

    samples: object
    noise_mask: object | None = None
    info: GenerationInfo | None = None
    is_empty: bool = False  # made by Empty Latent Image: the sampler starts from pure noise (text to image)
    scale: float | None = None


@dataclass(frozen=True)
class Images:
    """An IMAGE edge: float pixels in [0, 1], shaped [batch, height, width, 3], on the CPU, and how they were made."""

    pixels: object
    info: GenerationInfo | None = None
