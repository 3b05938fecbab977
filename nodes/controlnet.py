"""ControlNet nodes (ComfyUI's names and semantics): load a ControlNet, apply it to conditionings, and the Canny edge
preprocessor that makes its most common control image.

A ControlNet travels on the conditioning: Apply ControlNet adds an entry (ControlNet, control image, strength, start
and end) to the positive and the negative conditioning, the old single-conditioning Apply to the one it is given;
chained Apply nodes stack entries, whose residuals add up in the sampler.
"""

from dataclasses import replace

from nodegraph.core import Input, NodeError, Output, PortType, node

from ._common import file_fingerprint

#: The text-embedding width of each model line's conditionings (the SDXL refiner's is 1280: no ControlNet fits it).
_CONDITIONING_LINE = {768: "SD 1.x", 1024: "SD 2.x", 2048: "SDXL", 1280: "SDXL refiner"}


@node(type="LoadControlNet", display_name="Load ControlNet Model", category="loaders",
      description="Load a ControlNet (SD 1.x, SD 2.x or SDXL; lllyasviel's .pth/.safetensors files, diffusers' "
                  "single files or folders) from the controlnet folders.",
      inputs=[Input.string("control_net_name", None, file_kind="controlnet",
                           tooltip="a file in a controlnet folder (models/controlnet, models/ControlNet)")],
      outputs=[Output("CONTROL_NET", PortType.CONTROL_NET)],
      fingerprint=file_fingerprint("controlnet", "control_net_name"))
def load_controlnet(ctx, control_net_name):
    """Load the ControlNet now (through the model cache), so a broken file fails here, and hand out its handle."""
    from nodegraph.models.controlnet import WIDTH_TO_BASE, ControlNetHandle

    path = ctx.models.resolve("controlnet", control_net_name)
    info = ctx.models.identify(path)
    if info.kind != "controlnet":
        raise NodeError(f"{path.name} is a {info.kind}, not a ControlNet")
    module = ctx.models.controlnet(path)
    width = module.config.cross_attention_dim
    return {"CONTROL_NET": ControlNetHandle(path, control_net_name, WIDTH_TO_BASE.get(width, info.family), width)}


def _controlled(conditioning, control_net, control):
    """`conditioning` with `control` added, after checking the ControlNet reads text embeddings of its width."""
    from nodegraph.models.controlnet import base_label

    width = conditioning.embeds.shape[-1]
    if width != control_net.context_width:
        line = _CONDITIONING_LINE.get(width, f"a model with {width}-wide text embeddings")
        raise NodeError(f"control_net: {control_net.path.name} is a ControlNet for {base_label(control_net.base)} "
                        f"models, but the conditioning comes from {line} (its text encoder); load a ControlNet made "
                        f"for that model")
    return replace(conditioning, controls=(*conditioning.controls, control))


def _check_percents(strength, start_percent, end_percent):
    if start_percent > end_percent:
        return {"end_percent": f"ends ({end_percent}) before it starts ({start_percent})"}
    return {}


def _control_image(image):
    """The control image's pixels, checked: RGB, [B, H, W, 3]."""
    pixels = image.pixels
    if pixels.dim() != 4 or pixels.shape[-1] != 3:
        raise NodeError(f"image: a control image is an RGB image, not shaped {tuple(pixels.shape)}")
    return pixels


@node(type="ApplyControlNet", display_name="Apply ControlNet", category="conditioning",
      description="Guide the image with a ControlNet and a control image (edges, depth, pose …) on the positive and "
                  "the negative conditioning (ComfyUI's Apply ControlNet). Chain several to stack them.",
      inputs=[Input.link("positive", PortType.CONDITIONING), Input.link("negative", PortType.CONDITIONING),
              Input.link("control_net", PortType.CONTROL_NET), Input.link("image", PortType.IMAGE),
              Input.float("strength", 1.0, min=0.0, max=10.0, step=0.01,
                          tooltip="how strongly the ControlNet steers (its residuals are multiplied by this)"),
              Input.float("start_percent", 0.0, min=0.0, max=1.0, step=0.001,
                          tooltip="the fraction of the steps after which it starts acting"),
              Input.float("end_percent", 1.0, min=0.0, max=1.0, step=0.001,
                          tooltip="the fraction of the steps after which it stops acting"),
              Input.link("vae", PortType.VAE, optional=True,
                         tooltip="accepted for ComfyUI workflows; SD 1.x/2.x/SDXL ControlNets take the image as is")],
      outputs=[Output("positive", PortType.CONDITIONING), Output("negative", PortType.CONDITIONING)],
      check=_check_percents)
def apply_controlnet(ctx, positive, negative, control_net, image, strength, start_percent, end_percent, vae):
    """Add one control entry, shared by both conditionings (so the sampler runs it once on the guidance batch);
    strength 0 passes both through unchanged, as in ComfyUI."""
    from nodegraph.models.conditioning import Control

    if strength == 0:
        return {"positive": positive, "negative": negative}
    control = Control(control_net, _control_image(image), strength, start_percent, end_percent)
    return {"positive": _controlled(positive, control_net, control),
            "negative": _controlled(negative, control_net, control)}


@node(type="ApplyControlNetSimple", display_name="Apply ControlNet (Old)", category="conditioning",
      description="Guide the image with a ControlNet on one conditioning only, over the whole run (ComfyUI's old "
                  "Apply ControlNet): usually the positive prompt's.",
      inputs=[Input.link("conditioning", PortType.CONDITIONING), Input.link("control_net", PortType.CONTROL_NET),
              Input.link("image", PortType.IMAGE),
              Input.float("strength", 1.0, min=0.0, max=10.0, step=0.01,
                          tooltip="how strongly the ControlNet steers (its residuals are multiplied by this)")],
      outputs=[Output("CONDITIONING", PortType.CONDITIONING)])
def apply_controlnet_simple(ctx, conditioning, control_net, image, strength):
    """Add one control entry to this conditioning; strength 0 passes it through unchanged."""
    from nodegraph.models.conditioning import Control

    if strength == 0:
        return {"CONDITIONING": conditioning}
    control = Control(control_net, _control_image(image), strength, 0.0, 1.0)
    return {"CONDITIONING": _controlled(conditioning, control_net, control)}


def _check_thresholds(low_threshold, high_threshold):
    if low_threshold > high_threshold:
        return {"high_threshold": f"must be at least low_threshold ({low_threshold})"}
    return {}


#: Luma weights (ITU-R BT.601, as OpenCV and ComfyUI's kornia use) for the grayscale image edges are found on.
_LUMA = (0.299, 0.587, 0.114)
#: The Gaussian smoothing before the gradients (ComfyUI's: sigma 1).
CANNY_SIGMA = 1.0


def canny_edges(pixels, low_threshold, high_threshold):
    """White-on-black Canny edges of float RGB pixels [B, H, W, 3] in [0, 1], as the same shape (float32 0/1).

    scikit-image's ``feature.canny`` on the BT.601 grayscale image, Gaussian sigma 1, hysteresis thresholds on the
    Sobel gradient magnitude of that 0..1 image (ComfyUI's scale: 0.4 / 0.8 by default)."""
    import numpy
    import torch
    from skimage.feature import canny

    gray = (pixels.double().numpy() * numpy.asarray(_LUMA)).sum(axis=-1)
    edges = numpy.stack([canny(plane, sigma=CANNY_SIGMA, low_threshold=low_threshold,
                               high_threshold=high_threshold, mode="nearest") for plane in gray])
    return torch.from_numpy(edges.astype(numpy.float32))[..., None].repeat(1, 1, 1, 3).contiguous()


@node(type="Canny", display_name="Canny", category="image",
      description="Find the edges of an image (white lines on black): the control image of Canny ControlNets.",
      inputs=[Input.link("image", PortType.IMAGE),
              Input.float("low_threshold", 0.4, min=0.01, max=0.99, step=0.01,
                          tooltip="weaker edges are dropped; between the thresholds only edges touching strong "
                                  "ones are kept"),
              Input.float("high_threshold", 0.8, min=0.01, max=0.99, step=0.01,
                          tooltip="stronger edges are always kept")],
      outputs=[Output("IMAGE", PortType.IMAGE)], check=_check_thresholds)
def canny_node(ctx, image, low_threshold, high_threshold):
    """Edges of each image of the batch."""
    from nodegraph.models.handles import Images

    return {"IMAGE": Images(canny_edges(image.pixels, low_threshold, high_threshold))}
