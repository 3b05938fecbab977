"""The Stable Diffusion model families nodegraph knows, and what distinguishes them."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Family:
    """One model family.

    Args:
        name: the id used everywhere (``sd1``, ``sdxl-base``, …).
        label: what users read ("SD 1.x", "SDXL base").
        base: the architecture line: ``sd1``, ``sd2`` or ``sdxl`` (LoRAs and embeddings fit a base, not a variant).
        prediction: ``epsilon`` or ``v``.
        inpaint: the UNet takes 9 input channels (latent, mask, masked-image latent).
        text_encoders: the diffusers component names of its text encoders.
        vae_scaling_factor: not stored in any file (0.18215 for SD 1/2, 0.13025 for SDXL).
    """

    name: str
    label: str
    base: str
    prediction: str = "epsilon"
    inpaint: bool = False
    text_encoders: tuple[str, ...] = ("text_encoder",)
    vae_scaling_factor: float = 0.18215


_SDXL_ENCODERS = ("text_encoder", "text_encoder_2")

FAMILIES: dict[str, Family] = {f.name: f for f in (
    Family("sd1", "SD 1.x", "sd1"),
    Family("sd1-inpaint", "SD 1.x inpainting", "sd1", inpaint=True),
    Family("sd2", "SD 2.x (512, epsilon)", "sd2"),
    Family("sd2-v", "SD 2.x (768, v-prediction)", "sd2", prediction="v"),
    Family("sd2-inpaint", "SD 2.x inpainting", "sd2", inpaint=True),
    Family("sdxl-base", "SDXL base", "sdxl", text_encoders=_SDXL_ENCODERS, vae_scaling_factor=0.13025),
    Family("sdxl-refiner", "SDXL refiner", "sdxl", text_encoders=("text_encoder_2",), vae_scaling_factor=0.13025),
    Family("sdxl-inpaint", "SDXL inpainting", "sdxl", inpaint=True, text_encoders=_SDXL_ENCODERS,
           vae_scaling_factor=0.13025),
)}

#: Add-ons (LoRAs, embeddings) report the base they fit; ``sdxl`` means any SDXL model.
BASES = ("sd1", "sd2", "sdxl")


def get_family(name: str) -> Family:
    """The family called `name`; ValueError listing the known ones otherwise."""
    try:
        return FAMILIES[name]
    except KeyError:
        raise ValueError(f"unknown model family {name!r}; known: {', '.join(FAMILIES)}") from None
