"""Latent nodes: an empty latent, VAE encode/decode, latent upscaling and the inpainting mask."""

from dataclasses import replace

from nodegraph.core import Input, Output, PortType, node

from ._common import vae_module

_MAX_SIZE = 16384


@node(type="EmptyLatentImage", display_name="Empty Latent Image", category="latent",
      description="A blank latent of the given size: the sampler starts from pure noise (text to image).",
      inputs=[Input.int("width", 512, min=64, max=_MAX_SIZE, step=8, multiple_of=8),
              Input.int("height", 512, min=64, max=_MAX_SIZE, step=8, multiple_of=8),
              Input.int("batch_size", 1, min=1, max=64)],
      outputs=[Output("LATENT", PortType.LATENT)])
def empty_latent_image(ctx, width, height, batch_size):
    """Zeros shaped [batch, 4, height / 8, width / 8], marked empty."""
    import torch

    from nodegraph.models.handles import Latent

    return {"LATENT": Latent(torch.zeros(batch_size, 4, height // 8, width // 8), is_empty=True)}


@node(type="VAEDecode", display_name="VAE Decode", category="latent",
      description="Decode latents into an image (retrying in float32 if half precision would give a black image).",
      inputs=[Input.link("samples", PortType.LATENT), Input.link("vae", PortType.VAE)],
      outputs=[Output("IMAGE", PortType.IMAGE)])
def vae_decode(ctx, samples, vae):
    """latents / scaling factor → VAE → pixels in [0, 1], [batch, height, width, 3] on the CPU.

    The factor is the one the latents were scaled with (their model's), not the VAE's own: a VAE override file does
    not say which model line it is for."""
    from nodegraph.models.devices import decode_latents
    from nodegraph.models.handles import Images

    module = vae_module(ctx, vae)
    with ctx.models.use(module) as device:
        latents = samples.samples.to(device) / (samples.scale or module.config.scaling_factor)
        image = decode_latents(module, latents)
    pixels = (image / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1).cpu()
    return {"IMAGE": Images(pixels, samples.info)}


@node(type="VAEEncode", display_name="VAE Encode", category="latent",
      description="Encode an image into latents (the distribution's mean), for image to image and inpainting.",
      inputs=[Input.link("pixels", PortType.IMAGE), Input.link("vae", PortType.VAE)],
      outputs=[Output("LATENT", PortType.LATENT)])
def vae_encode(ctx, pixels, vae):
    """pixels in [0, 1] → [-1, 1] → VAE encoder mean × scaling factor (cropped to multiples of 8)."""
    import torch

    from nodegraph.models.handles import Latent

    module = vae_module(ctx, vae)
    image = pixels.pixels
    height, width = image.shape[1] // 8 * 8, image.shape[2] // 8 * 8
    image = image[:, :height, :width, :].permute(0, 3, 1, 2) * 2 - 1
    with ctx.models.use(module) as device, torch.inference_mode():
        latents = module.encode(image.to(device, module.dtype)).latent_dist.mode()
    factor = module.config.scaling_factor
    return {"LATENT": Latent((latents * factor).float().cpu(), scale=factor)}


@node(type="UpscaleLatent", display_name="Upscale Latent", category="latent",
      description="Resize latents (for a second, higher-resolution pass: hires fix).",
      inputs=[Input.link("samples", PortType.LATENT),
              Input.choice("upscale_method", ["nearest-exact", "bilinear", "area", "bicubic"]),
              Input.int("width", 1024, min=64, max=_MAX_SIZE, step=8, multiple_of=8),
              Input.int("height", 1024, min=64, max=_MAX_SIZE, step=8, multiple_of=8)],
      outputs=[Output("LATENT", PortType.LATENT)])
def upscale_latent(ctx, samples, upscale_method, width, height):
    """Interpolate the latents (and any mask) to width / 8 × height / 8."""
    import torch.nn.functional as F

    size = (height // 8, width // 8)
    kwargs = {"align_corners": False} if upscale_method in ("bilinear", "bicubic") else {}
    latents = F.interpolate(samples.samples, size=size, mode=upscale_method, **kwargs)
    mask = samples.noise_mask
    if mask is not None:
        mask = F.interpolate(mask, size=size, mode="nearest-exact")
    return {"LATENT": replace(samples, samples=latents, noise_mask=mask, is_empty=False)}


@node(type="SetLatentNoiseMask", display_name="Inpaint Mask", category="latent",
      description="Repaint only where the mask is white (1): the sampler keeps the rest of the latent.",
      inputs=[Input.link("samples", PortType.LATENT), Input.link("mask", PortType.MASK)],
      outputs=[Output("LATENT", PortType.LATENT)])
def set_latent_noise_mask(ctx, samples, mask):
    """Attach the mask, resized to the latent's resolution, to the latent."""
    import torch.nn.functional as F

    if mask.dim() == 2:
        mask = mask[None]
    latent_size = samples.samples.shape[-2:]
    resized = F.interpolate(mask[:, None].float(), size=latent_size, mode="bilinear", align_corners=False)
    return {"LATENT": replace(samples, noise_mask=resized.clamp(0, 1), is_empty=False)}
