"""Image upscaling: with an upscale model (ESRGAN, Real-ESRGAN, SwinIR, … — a hires-fix's pixel upscaler), and by
plain resampling (ComfyUI's Upscale Image and Upscale Image By, with the same input names and results)."""

from nodegraph.core import Input, NodeError, Output, PortType, node

from ._common import file_fingerprint

_MAX_SIZE = 16384
_METHODS = ["nearest-exact", "bilinear", "area", "bicubic", "lanczos"]


@node(type="LoadUpscaleModel", display_name="Load Upscale Model", category="loaders",
      description="Load an upscale model (ESRGAN, Real-ESRGAN, SwinIR, HAT, DAT, … through spandrel) from the "
                  "upscale_models, ESRGAN, RealESRGAN or SwinIR folders.",
      inputs=[Input.string("model_name", None, file_kind="upscale_models",
                           tooltip="a file in an upscale models folder")],
      outputs=[Output("UPSCALE_MODEL", PortType.UPSCALE_MODEL)],
      fingerprint=file_fingerprint("upscale_models", "model_name"))
def load_upscale_model(ctx, model_name):
    """A handle on the file, after loading it (once, through the model cache) so a wrong file fails here."""
    from nodegraph.models.upscale import UpscaleModelHandle

    path = ctx.models.resolve("upscale_models", model_name)
    info = ctx.models.identify(path)
    if info.kind != "upscale_model":
        raise NodeError(f"{path.name} is not an upscale model (it was identified as: {info.kind})")
    if info.unsupported:
        raise NodeError(f"{path.name}: {info.unsupported}")
    model = ctx.models.upscale_model(path)
    return {"UPSCALE_MODEL": UpscaleModelHandle(path, model_name, model.architecture, model.scale)}


@node(type="UpscaleImageWithModel", display_name="Upscale Image (using Model)", category="image",
      description="Upscale images with an upscale model, tile by tile so large images fit in memory (the model's "
                  "scale: 4x models make a 1024 image 4096 pixels wide; follow with Upscale Image By to get 2x).",
      inputs=[Input.link("upscale_model", PortType.UPSCALE_MODEL), Input.link("image", PortType.IMAGE),
              Input.int("tile_size", 0, min=0, max=4096, step=64,
                        tooltip="tile side in pixels; 0 picks the largest that fits the GPU's free memory (tiles are "
                                "halved automatically if memory runs out)")],
      outputs=[Output("IMAGE", PortType.IMAGE)])
def upscale_image_with_model(ctx, upscale_model, image, tile_size):
    """Run the model over the images tile by tile on the model device, reporting progress per tile."""
    from nodegraph.models.handles import Images
    from nodegraph.models.upscale import upscale_image

    model = ctx.models.upscale_model(upscale_model.path)
    with ctx.models.use(model.module):
        pixels = upscale_image(model, image.pixels, tile=tile_size, progress=ctx.progress)
    return {"IMAGE": Images(pixels, image.info)}


@node(type="ImageScale", display_name="Upscale Image", category="image",
      description="Resize images to a size (ComfyUI's Upscale Image). A size of 0 follows the other one's aspect "
                  "ratio; both 0 leave the images as they are.",
      inputs=[Input.link("image", PortType.IMAGE), Input.choice("upscale_method", _METHODS),
              Input.int("width", 512, min=0, max=_MAX_SIZE), Input.int("height", 512, min=0, max=_MAX_SIZE),
              Input.choice("crop", ["disabled", "center"], tooltip="center: cut the images to the new aspect ratio "
                                                                   "first instead of stretching them")],
      outputs=[Output("IMAGE", PortType.IMAGE)])
def image_scale(ctx, image, upscale_method, width, height, crop):
    """Resample to width × height (centre-cropped to that aspect ratio first when `crop` is "center")."""
    _, old_height, old_width, _ = image.pixels.shape
    if not width and not height:
        return {"IMAGE": image}
    if not width:
        width = max(1, round(old_width * height / old_height))
    elif not height:
        height = max(1, round(old_height * width / old_width))
    return {"IMAGE": _resized(image, upscale_method, width, height, crop)}


@node(type="ImageScaleBy", display_name="Upscale Image By", category="image",
      description="Resize images by a factor (ComfyUI's Upscale Image By).",
      inputs=[Input.link("image", PortType.IMAGE), Input.choice("upscale_method", _METHODS),
              Input.float("scale_by", 1.0, min=0.01, max=8.0, step=0.01)],
      outputs=[Output("IMAGE", PortType.IMAGE)])
def image_scale_by(ctx, image, upscale_method, scale_by):
    """Resample each side to round(side × scale_by) pixels."""
    _, height, width, _ = image.pixels.shape
    size = max(1, round(width * scale_by)), max(1, round(height * scale_by))
    return {"IMAGE": _resized(image, upscale_method, *size, "disabled")}


def _resized(image, method, width, height, crop):
    """The images resampled to width × height, centre-cropped to that aspect ratio first when `crop` is "center".

    lanczos goes through Pillow on 8-bit pixels (as ComfyUI does: torch has no Lanczos filter); the other methods
    through torch's interpolate, without antialiasing, as ComfyUI."""
    import numpy
    import torch
    import torch.nn.functional as F
    from PIL import Image

    from nodegraph.models.handles import Images

    pixels = image.pixels.permute(0, 3, 1, 2)
    if crop == "center":
        old_height, old_width = pixels.shape[-2:]
        old_aspect, new_aspect = old_width / old_height, width / height
        left = round((old_width - old_width * new_aspect / old_aspect) / 2) if old_aspect > new_aspect else 0
        top = round((old_height - old_height * old_aspect / new_aspect) / 2) if old_aspect < new_aspect else 0
        pixels = pixels.narrow(-2, top, old_height - 2 * top).narrow(-1, left, old_width - 2 * left)
    if method == "lanczos":
        frames = []
        for frame in pixels.permute(0, 2, 3, 1).cpu().numpy():
            # ComfyUI truncates (astype) rather than rounds; doing the same keeps results identical to its node
            picture = Image.fromarray(numpy.clip(255.0 * frame, 0, 255).astype(numpy.uint8))
            resized = picture.resize((width, height), resample=Image.Resampling.LANCZOS)
            frames.append(torch.from_numpy(numpy.asarray(resized, dtype=numpy.float32) / 255.0))
        return Images(torch.stack(frames), image.info)
    resized = F.interpolate(pixels, size=(height, width), mode=method)
    return Images(resized.permute(0, 2, 3, 1).contiguous(), image.info)
