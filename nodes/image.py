"""Image nodes: load a picture (and its alpha as an inpainting mask), save PNGs with metadata, preview."""

from pathlib import Path

from nodegraph.core import Input, NodeError, Output, PortType, node
from nodegraph.paths import app_home


def _image_path(name: str) -> Path:
    path = Path(name).expanduser()
    if path.is_absolute():
        return path
    in_inputs = app_home() / "input" / path
    return in_inputs if in_inputs.exists() else path


def _image_fingerprint(settings, image):
    path = _image_path(image or "")
    try:
        stat = path.stat()
    except OSError:
        return None
    return f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"


def _check_image(image):
    if image and not _image_path(image).is_file():
        return {"image": f"{image}: no such image (looked in the data folder's input/ and the current folder)"}
    return {}


@node(type="LoadImage", display_name="Load Image", category="image",
      description="Load a picture; its alpha channel becomes a mask (transparent = 1, the area to repaint).",
      inputs=[Input.string("image", None, tooltip="a path, or a file name in the data folder's input/")],
      outputs=[Output("IMAGE", PortType.IMAGE), Output("MASK", PortType.MASK)],
      fingerprint=_image_fingerprint, check=_check_image)
def load_image(ctx, image):
    """Pixels in [0, 1] shaped [1, height, width, 3], and a [1, height, width] mask."""
    import numpy
    import torch
    from PIL import Image, ImageOps, UnidentifiedImageError

    from nodegraph.models.handles import Images

    path = _image_path(image)
    try:
        with Image.open(path) as opened:
            picture = ImageOps.exif_transpose(opened)
            rgba = picture.convert("RGBA")
            has_alpha = "A" in picture.getbands() or "transparency" in picture.info
    except (OSError, UnidentifiedImageError) as error:
        raise NodeError(f"{path.name}: cannot read the image ({error})") from None
    array = torch.from_numpy(numpy.asarray(rgba, dtype=numpy.float32) / 255.0)
    mask = 1.0 - array[..., 3] if has_alpha else torch.zeros(array.shape[:2])
    return {"IMAGE": Images(array[None, ..., :3].contiguous()), "MASK": mask[None]}


def _parameters(ctx, info) -> str:
    from nodegraph.images import a1111_parameters
    from nodegraph.models.schedulers import SAMPLERS, SCHEDULES

    if info is None:
        return a1111_parameters({"prompt": ""})
    sampler = SAMPLERS[info.sampler].label if info.sampler in SAMPLERS else info.sampler
    schedule = SCHEDULES.get(info.schedule, info.schedule)
    prompt = info.prompt + "".join(f" <lora:{name}:{strength:g}>" for name, strength in info.loras)
    model_hash = ctx.models.file_hash(info.model_path)[:10] if info.model_path and info.model_path.is_file() else ""
    return a1111_parameters({
        "prompt": prompt, "negative_prompt": info.negative_prompt, "Steps": info.steps, "Sampler": sampler,
        "Schedule type": schedule, "CFG scale": f"{info.cfg:g}", "Seed": info.seed,
        "Size": f"{info.width}x{info.height}", "Model hash": model_hash, "Model": Path(info.model_name).stem,
        "Denoising strength": f"{info.denoise:g}" if info.denoise < 1 else "",
        "Clip skip": info.clip_skip if info.clip_skip > 1 else "",
        **dict(info.extra)})


def _save(ctx, images, folder: Path, prefix: str) -> list[str]:
    from nodegraph.images import next_free_path, to_uint8, workflow_chunks, write_png

    chunks = workflow_chunks(ctx.workflow, _parameters(ctx, images.info))
    written = []
    for pixels in images.pixels:
        path = next_free_path(folder, prefix)
        write_png(path, to_uint8(pixels), chunks)
        ctx.add_file(path)
        written.append(str(path))
    return written


@node(type="SaveImage", display_name="Save Image", category="image",
      description="Save PNGs (<prefix>_00001_.png, never overwriting) into the output folder, with the workflow and "
                  "AUTOMATIC1111-style parameters embedded.",
      inputs=[Input.link("images", PortType.IMAGE), Input.string("filename_prefix", "nodegraph")],
      output_node=True)
def save_image(ctx, images, filename_prefix):
    """Write one PNG per image of the batch."""
    if ctx.output_dir is None:
        raise NodeError("no output folder is set")
    if Path(filename_prefix).is_absolute() or ".." in Path(filename_prefix).parts:
        raise NodeError(f"filename_prefix {filename_prefix!r} must stay inside the output folder")
    _save(ctx, images, ctx.output_dir, filename_prefix)
    return {}


@node(type="PreviewImage", display_name="Preview Image", category="image",
      description="Show images without keeping them (written to the data folder's temp/).",
      inputs=[Input.link("images", PortType.IMAGE)], output_node=True)
def preview_image(ctx, images):
    """Write the images as temporary PNGs for the viewer."""
    _save(ctx, images, app_home() / "temp", "preview")
    return {}
