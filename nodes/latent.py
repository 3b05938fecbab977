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
    image = pixels.pixels
    height, width = image.shape[1] // 8 * 8, image.shape[2] // 8 * 8
    return {"LATENT": _encode(ctx, vae, image[:, :height, :width, :])}


def _encode(ctx, vae, image):
    """Latents of [batch, height, width, 3] pixels in [0, 1] (sizes multiples of 8), scaled by the VAE's factor."""
    import torch

    from nodegraph.models.handles import Latent

    module = vae_module(ctx, vae)
    image = image.permute(0, 3, 1, 2) * 2 - 1
    with ctx.models.use(module) as device, torch.inference_mode():
        latents = module.encode(image.to(device, module.dtype)).latent_dist.mode()
    factor = module.config.scaling_factor
    return Latent((latents * factor).float().cpu(), scale=factor)


@node(type="VAEEncodeForInpaint", display_name="VAE Encode (for Inpainting)", category="latent",
      description="Encode an image for inpainting with a regular model: the masked area is greyed out before "
                  "encoding and the mask, grown by a few pixels, becomes the latent's noise mask (ComfyUI's node of "
                  "the same name).",
      inputs=[Input.link("pixels", PortType.IMAGE), Input.link("vae", PortType.VAE), Input.link("mask", PortType.MASK),
              Input.int("grow_mask_by", 6, min=0, max=64, tooltip="pixels added around the mask so the repainted "
                                                                  "area blends in")],
      outputs=[Output("LATENT", PortType.LATENT)])
def vae_encode_for_inpaint(ctx, pixels, vae, mask, grow_mask_by):
    """Centre-crop to multiples of 8, grey (0.5) the pixels under the rounded mask, encode, and attach the grown
    mask resized to the latent grid."""
    import math

    import torch
    import torch.nn.functional as F

    image = pixels.pixels.clone()
    _, full_height, full_width, _ = image.shape
    mask = F.interpolate(mask.reshape(-1, 1, *mask.shape[-2:]).float(), size=(full_height, full_width),
                         mode="bilinear")
    height, width = full_height // 8 * 8, full_width // 8 * 8
    top, left = (full_height % 8) // 2, (full_width % 8) // 2
    image = image[:, top:top + height, left:left + width, :]
    mask = mask[:, :, top:top + height, left:left + width]
    if grow_mask_by:
        kernel = torch.ones(1, 1, grow_mask_by, grow_mask_by)
        grown = F.conv2d(mask.round(), kernel, padding=math.ceil((grow_mask_by - 1) / 2)).clamp(0, 1)
        grown = grown[:, :, :height, :width]
    else:
        grown = mask
    keep = (1.0 - mask.round()).permute(0, 2, 3, 1)
    latent = _encode(ctx, vae, (image - 0.5) * keep + 0.5)
    noise_mask = F.interpolate(grown.round(), size=latent.samples.shape[-2:], mode="bilinear", align_corners=False)
    return {"LATENT": replace(latent, noise_mask=noise_mask.clamp(0, 1))}


_UPSCALE_METHODS = ["nearest-exact", "bilinear", "area", "bicubic"]


@node(type="UpscaleLatent", display_name="Upscale Latent", category="latent",
      description="Resize latents (for a second, higher-resolution pass: hires fix). A size of 0 follows the other "
                  "one's aspect ratio; both 0 leave the latent as it is.",
      inputs=[Input.link("samples", PortType.LATENT), Input.choice("upscale_method", _UPSCALE_METHODS),
              Input.int("width", 1024, min=0, max=_MAX_SIZE, step=8, multiple_of=8),
              Input.int("height", 1024, min=0, max=_MAX_SIZE, step=8, multiple_of=8),
              Input.choice("crop", ["disabled", "center"], tooltip="center: cut the latent to the new aspect ratio "
                                                                   "first instead of stretching it")],
      outputs=[Output("LATENT", PortType.LATENT)])
def upscale_latent(ctx, samples, upscale_method, width, height, crop):
    """Interpolate the latents (and any mask) to width / 8 × height / 8 (sizes under 64 are raised to 64, as
    ComfyUI's Upscale Latent does)."""
    latent_height, latent_width = samples.samples.shape[-2:]
    if not width and not height:
        return {"LATENT": samples}
    if not width:
        height = max(64, height)
        width = max(64, round(latent_width * height / latent_height))
    elif not height:
        width = max(64, width)
        height = max(64, round(latent_height * width / latent_width))
    return {"LATENT": _resized(samples, upscale_method, max(64, width) // 8, max(64, height) // 8, crop)}


@node(type="UpscaleLatentBy", display_name="Upscale Latent By", category="latent",
      description="Resize latents by a factor (hires fix at 1.5× or 2×).",
      inputs=[Input.link("samples", PortType.LATENT), Input.choice("upscale_method", _UPSCALE_METHODS),
              Input.float("scale_by", 1.5, min=0.01, max=8.0, step=0.01)],
      outputs=[Output("LATENT", PortType.LATENT)])
def upscale_latent_by(ctx, samples, upscale_method, scale_by):
    """Interpolate the latents (and any mask) to round(size × scale_by) latent pixels."""
    latent_height, latent_width = samples.samples.shape[-2:]
    size = max(1, round(latent_width * scale_by)), max(1, round(latent_height * scale_by))
    return {"LATENT": _resized(samples, upscale_method, *size, "disabled")}


def _resized(samples, method, latent_width, latent_height, crop):
    """The latent (and its mask) interpolated to latent_width × latent_height, centre-cropped to that aspect ratio
    first when `crop` is "center"."""
    import torch.nn.functional as F

    latents, mask = samples.samples, samples.noise_mask
    if crop == "center":
        old_height, old_width = latents.shape[-2:]
        old_aspect, new_aspect = old_width / old_height, latent_width / latent_height
        left = round((old_width - old_width * new_aspect / old_aspect) / 2) if old_aspect > new_aspect else 0
        top = round((old_height - old_height * old_aspect / new_aspect) / 2) if old_aspect < new_aspect else 0
        latents = latents.narrow(-2, top, old_height - 2 * top).narrow(-1, left, old_width - 2 * left)
        if mask is not None and mask.shape[-2:] == (old_height, old_width):
            mask = mask.narrow(-2, top, old_height - 2 * top).narrow(-1, left, old_width - 2 * left)
    size = (latent_height, latent_width)
    kwargs = {"align_corners": False} if method in ("bilinear", "bicubic") else {}
    latents = F.interpolate(latents, size=size, mode=method, **kwargs)
    if mask is not None:
        mask = F.interpolate(mask, size=size, mode="nearest-exact")
    return replace(samples, samples=latents, noise_mask=mask, is_empty=False)


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
