"""A cheap preview of latents during sampling: a linear map from the 4 latent channels to RGB, no decoder.

About a thousand times cheaper than a VAE decode (a 4×3 matrix per pixel), good enough to watch an image take
shape. The factors are the widely used linear fits for the SD 1.x/2.x VAE and the SDXL VAE (see FORMATS.md).
"""

from __future__ import annotations

from typing import Any

from nodegraph.models.families import Family, get_family
from nodegraph.models.offline import import_torch

#: Rows: latent channels 0..3; columns: R, G, B.
SD_FACTORS = (
    (0.3512, 0.2297, 0.3227),
    (0.3250, 0.4974, 0.2350),
    (-0.2829, 0.1762, 0.2721),
    (-0.2120, -0.2616, -0.7177),
)
SD_BIAS = (0.0, 0.0, 0.0)
SDXL_FACTORS = (
    (0.3651, 0.4232, 0.4341),
    (-0.2533, -0.0042, 0.1068),
    (0.1076, 0.1111, -0.0362),
    (-0.3165, -0.2492, -0.2188),
)
SDXL_BIAS = (0.1084, -0.0175, -0.0011)


def latent_factors(family: Family | str) -> tuple[tuple[tuple[float, ...], ...], tuple[float, ...]]:
    """The (factors, bias) of `family` (a Family, a family name such as ``sdxl-base``, or a base ``sd1``/``sd2``/
    ``sdxl``): SD 1.x and 2.x share a VAE; every SDXL model uses the SDXL one."""
    if isinstance(family, str):
        family = family if family in ("sd1", "sd2", "sdxl") else get_family(family).base
    else:
        family = family.base
    return (SDXL_FACTORS, SDXL_BIAS) if family == "sdxl" else (SD_FACTORS, SD_BIAS)


def latent_preview(latents: Any, family: Family | str = "sd1") -> Any:
    """An RGB preview of the first image of `latents` ([B, 4, h, w] or [4, h, w], as the sampler holds them): a
    ``uint8`` numpy array shaped ``h × w × 3`` at the latent resolution (1/8 of the image's width and height)."""
    torch = import_torch()
    factors, bias = latent_factors(family)
    with torch.inference_mode():
        x = latents[0] if latents.dim() == 4 else latents
        if x.shape[0] != len(factors):
            raise ValueError(f"a preview needs {len(factors)}-channel latents, not {x.shape[0]}")
        x = x.detach().to(device="cpu", dtype=torch.float32)
        rgb = torch.einsum("chw,cr->hwr", x, torch.tensor(factors)) + torch.tensor(bias)
        # The map lands roughly in [-1, 1]; show it in [0, 255].
        rgb = ((rgb + 1.0) / 2.0).clamp(0.0, 1.0).mul(255.0).round().to(torch.uint8)
        return rgb.numpy()
