"""The upscaling nodes in graphs: Load Upscale Model → Upscale Image (using Model) on tiny real-format model files in
ComfyUI's and AUTOMATIC1111's folders, and ComfyUI's Upscale Image / Upscale Image By resampling semantics."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import save_file

from nodegraph.core.graph import Workflow
from nodegraph.engine import Executor, RunSettings
from nodegraph.engine.events import Progress
from nodegraph.models.discovery import ModelFolders
from nodegraph.models.handles import Images
from nodegraph.models.manager import ModelManager
from nodegraph.models.synthetic import write_embedding
from nodegraph.models.upscale import import_spandrel

pytestmark = [pytest.mark.filterwarnings("ignore:torch.meshgrid:UserWarning")]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models gain nothing from intra-op threads; on a busy 2-core machine they only slow them down."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def nets():
    """A tiny 2x Real-ESRGAN Compact and a tiny 4x ESRGAN built from spandrel's own classes."""
    import_spandrel()
    from spandrel.architectures.Compact import Compact
    from spandrel.architectures.ESRGAN import ESRGAN

    torch.manual_seed(1)
    compact = Compact(num_in_ch=3, num_out_ch=3, num_feat=8, num_conv=2, upscale=2).eval()
    torch.manual_seed(0)
    esrgan = ESRGAN(in_nc=3, out_nc=3, num_filters=8, num_blocks=1, scale=4).eval()
    with torch.no_grad():  # default initialisation fades the signal to a flat image; a gain of 2 keeps its structure
        for layer in esrgan.modules():
            if isinstance(layer, torch.nn.Conv2d):
                layer.weight.mul_(2.0)
    return {"compact": compact, "esrgan": esrgan}


@pytest.fixture(scope="module")
def root(nets, tmp_path_factory):
    """A models root holding ComfyUI's upscale_models/ and AUTOMATIC1111's ESRGAN/ folders, and a picture."""
    root = tmp_path_factory.mktemp("upscale-root")
    (root / "upscale_models").mkdir()
    (root / "ESRGAN").mkdir()
    compact = {k: v.contiguous() for k, v in nets["compact"].state_dict().items()}
    torch.save({"params": compact}, root / "upscale_models" / "2x-compact.pth")
    save_file({k: v.contiguous() for k, v in nets["esrgan"].state_dict().items()}, root / "ESRGAN" / "4x-esrgan.sft")
    write_embedding(root / "upscale_models" / "not-an-upscaler.safetensors", "safetensors", family="sd1", vectors=1,
                    seed=2)
    pixels = np.random.default_rng(0).integers(0, 256, (40, 52, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(root / "picture.png")
    return root


@pytest.fixture(scope="module")
def upscale_manager(root):
    return ModelManager(ModelFolders([root]), device="cpu")


def _run(wf, registry, manager, tmp_path, targets, events=None):
    executor = Executor(registry, sink=(events.append if events is not None else lambda event: None))
    return executor.run(wf, targets=targets, settings=RunSettings(output_dir=tmp_path, device="cpu",
                                                                  services={"models": manager}))


def _graph(root, model_name, tile_size=0):
    wf = Workflow()
    wf.add_node("LoadImage", "image", inputs={"image": str(root / "picture.png")})
    wf.add_node("LoadUpscaleModel", "loader", inputs={"model_name": model_name})
    wf.add_node("UpscaleImageWithModel", "upscale", inputs={"tile_size": tile_size})
    wf.add_node("ImageScaleBy", "half", inputs={"upscale_method": "area", "scale_by": 0.5})
    wf.connect("loader", "UPSCALE_MODEL", "upscale", "upscale_model")
    wf.connect("image", "IMAGE", "upscale", "image")
    wf.connect("upscale", "IMAGE", "half", "image")
    return wf


def test_the_nodes_take_comfyuis_input_names(node_registry):
    names = {t: [spec.name for spec in node_registry[t].inputs] for t in
             ("LoadUpscaleModel", "UpscaleImageWithModel", "ImageScale", "ImageScaleBy")}
    assert names == {"LoadUpscaleModel": ["model_name"],
                     "UpscaleImageWithModel": ["upscale_model", "image", "tile_size"],
                     "ImageScale": ["image", "upscale_method", "width", "height", "crop"],
                     "ImageScaleBy": ["image", "upscale_method", "scale_by"]}
    assert node_registry["LoadUpscaleModel"].input("model_name").file_kind == "upscale_models"
    assert node_registry["ImageScale"].input("upscale_method").choices == (
        "nearest-exact", "bilinear", "area", "bicubic", "lanczos")
    assert node_registry["UpscaleImageWithModel"].output("IMAGE").type == "IMAGE"


@pytest.mark.parametrize("model_name, net, scale", [("2x-compact.pth", "compact", 2), ("4x-esrgan.sft", "esrgan", 4)])
def test_upscale_with_a_model_in_a_graph(root, nets, node_registry, upscale_manager, tmp_path, model_name, net,
                                         scale):
    events = []
    result = _run(_graph(root, model_name), node_registry, upscale_manager, tmp_path, ["upscale", "half"], events)
    assert result.ok, (result.message, result.problems)
    upscaled = result.outputs["upscale"]["IMAGE"].pixels
    assert upscaled.shape == (1, 40 * scale, 52 * scale, 3)
    pixels = torch.from_numpy(np.asarray(Image.open(root / "picture.png"), dtype=np.float32) / 255)
    with torch.no_grad():
        expected = nets[net](pixels.permute(2, 0, 1)[None].contiguous()).clamp(0, 1).permute(0, 2, 3, 1)
    assert (upscaled - expected).abs().max() <= 1e-6
    assert result.outputs["half"]["IMAGE"].pixels.shape == (1, 20 * scale, 26 * scale, 3)
    assert any(isinstance(e, Progress) and e.node_id == "upscale" and e.step == e.total == 1 for e in events)

    # tiled by hand: progress per tile, and the model is not loaded again
    loads = upscale_manager.cache.loads
    events.clear()
    tiled = _run(_graph(root, model_name, tile_size=32), node_registry, upscale_manager, tmp_path, ["upscale"],
                 events)
    assert tiled.ok, tiled.message
    assert upscale_manager.cache.loads == loads
    steps = [e for e in events if isinstance(e, Progress) and e.node_id == "upscale"]
    assert len(steps) == steps[-1].total == 6  # 40 × 52 pixels in 32-pixel tiles overlapping by 16: 2 × 3
    # the tiny ESRGAN's receptive field is wider than a quarter of the overlap: close, not exact (measured 7e-4)
    assert (tiled.outputs["upscale"]["IMAGE"].pixels - expected).abs().max() <= 2e-3


def test_the_loader_refuses_a_file_that_is_no_upscale_model(root, node_registry, upscale_manager, tmp_path):
    result = _run(_graph(root, "not-an-upscaler.safetensors"), node_registry, upscale_manager, tmp_path, ["upscale"])
    assert not result.ok
    assert "not-an-upscaler.safetensors is not an upscale model (it was identified as: embedding)" in result.message
    assert "Traceback" not in result.message


def _images(height=30, width=44, batch=2, seed=0):
    return Images(torch.rand(batch, height, width, 3, generator=torch.Generator().manual_seed(seed)))


def test_image_scale_sizes_crop_and_methods(node_registry):
    scale = node_registry["ImageScale"].run
    images = _images()
    assert scale(None, image=images, upscale_method="bilinear", width=0, height=0, crop="disabled")["IMAGE"] is images
    follow = scale(None, image=images, upscale_method="nearest-exact", width=0, height=45, crop="disabled")["IMAGE"]
    assert follow.pixels.shape == (2, 45, 66, 3)  # 44 × 45 / 30 = 66
    follow = scale(None, image=images, upscale_method="nearest-exact", width=22, height=0, crop="disabled")["IMAGE"]
    assert follow.pixels.shape == (2, 15, 22, 3)
    # center crop: 44 × 30 to a square cuts round((44 - 30) / 2) = 7 columns from each side, then resizes
    square = scale(None, image=images, upscale_method="bilinear", width=60, height=60, crop="center")["IMAGE"]
    expected = F.interpolate(images.pixels.permute(0, 3, 1, 2)[..., 7:37], size=(60, 60), mode="bilinear")
    assert torch.equal(square.pixels, expected.permute(0, 2, 3, 1))
    for method in ("nearest-exact", "area", "bicubic"):
        out = scale(None, image=images, upscale_method=method, width=70, height=50, crop="disabled")["IMAGE"]
        reference = F.interpolate(images.pixels.permute(0, 3, 1, 2), size=(50, 70), mode=method)
        assert torch.equal(out.pixels, reference.permute(0, 2, 3, 1))


def test_lanczos_is_pillows_on_8_bit_pixels(node_registry):
    images = _images(batch=1)
    out = node_registry["ImageScale"].run(None, image=images, upscale_method="lanczos", width=70, height=50,
                                          crop="disabled")["IMAGE"]
    eight_bit = np.clip(255.0 * images.pixels[0].numpy(), 0, 255).astype(np.uint8)
    reference = np.asarray(Image.fromarray(eight_bit).resize((70, 50), Image.Resampling.LANCZOS), np.float32) / 255
    assert out.pixels.shape == (1, 50, 70, 3)
    assert np.array_equal(out.pixels[0].numpy(), reference)
    bicubic = node_registry["ImageScale"].run(None, image=images, upscale_method="bicubic", width=70, height=50,
                                              crop="disabled")["IMAGE"]
    assert (bicubic.pixels[0].numpy() - reference).std() > 1e-3  # the comparison above can tell the filters apart


def test_image_scale_by_rounds_each_side(node_registry):
    scale_by = node_registry["ImageScaleBy"].run
    out = scale_by(None, image=_images(30, 45), upscale_method="bicubic", scale_by=1.5)["IMAGE"]
    assert out.pixels.shape == (2, 45, 68, 3)  # round(67.5) = 68
    out = scale_by(None, image=_images(30, 45), upscale_method="lanczos", scale_by=0.5)["IMAGE"]
    assert out.pixels.shape == (2, 15, 22, 3)  # round(22.5) = 22 (banker's rounding, as ComfyUI's Python round)


def test_inspect_and_models_show_upscale_models(root, capsys):
    from argparse import Namespace

    from nodegraph.cli.model_commands import inspect_command, models_command

    assert inspect_command(Namespace(file=str(root / "ESRGAN" / "4x-esrgan.sft"), prediction=None, json=False)) == 0
    text = capsys.readouterr().out
    assert "kind: upscale_model" in text and "variant: ESRGAN" in text and "4x upscaler" in text
    assert models_command(Namespace(models_dir=[str(root)], json=False)) == 0
    text = capsys.readouterr().out
    assert "2x-compact.pth  [RealESRGAN Compact 2x upscaler]" in text and "4x-esrgan.sft  [ESRGAN 4x upscaler]" in text
