"""Upscale models through spandrel: identification, safe loading and tiled upscaling, on tiny files in the real
formats, written from spandrel's own architecture classes (the original ESRGAN key layout, Real-ESRGAN Compact in
its released ``params`` pickle wrapper, SwinIR) and compared with those modules' own forward pass."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from nodegraph.core.errors import Cancelled
from nodegraph.models import upscale
from nodegraph.models.errors import ModelError, UnsafeModelError
from nodegraph.models.identify import identify
from nodegraph.models.synthetic.pickles import write_malicious_pickle
from nodegraph.models.upscale import (
    auto_tile_size,
    estimate_tile_bytes,
    import_spandrel,
    load_upscale_model,
    upscale_image,
)

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.usefixtures("one_thread"),
              pytest.mark.filterwarnings("ignore:torch.meshgrid:UserWarning")]


def _modules():
    """Tiny networks of spandrel's architectures, with default initialisation under fixed seeds."""
    import_spandrel()
    from spandrel.architectures.Compact import Compact
    from spandrel.architectures.ESRGAN import ESRGAN
    from spandrel.architectures.RestoreFormer import RestoreFormer
    from spandrel.architectures.SwinIR import SwinIR

    torch.manual_seed(0)
    esrgan = ESRGAN(in_nc=3, out_nc=3, num_filters=8, num_blocks=1, scale=4)
    with torch.no_grad():  # default initialisation fades the signal through ESRGAN's 20 layers to a flat image, which
        for layer in esrgan.modules():  # would prove nothing: a gain of 2 makes the output follow the input
            if isinstance(layer, torch.nn.Conv2d):
                layer.weight.mul_(2.0)
    torch.manual_seed(1)
    compact = Compact(num_in_ch=3, num_out_ch=3, num_feat=8, num_conv=2, upscale=2)
    torch.manual_seed(2)
    swinir = SwinIR(upscale=2, in_chans=3, img_size=16, window_size=4, img_range=1.0, depths=[1], embed_dim=12,
                    num_heads=[2], mlp_ratio=2, upsampler="pixelshuffle", resi_connection="1conv")
    torch.manual_seed(3)
    face = RestoreFormer(n_embed=16, embed_dim=32, ch=32, ch_mult=(1, 1), num_res_blocks=1, z_channels=32)
    return {name: module.eval() for name, module in
            {"esrgan": esrgan, "compact": compact, "swinir": swinir, "face": face}.items()}


@pytest.fixture(scope="module")
def nets():
    return _modules()


@pytest.fixture(scope="module")
def files(nets, tmp_path_factory):
    """The model files: safetensors as written by safetensors, pickles as plain ``torch.save`` state dicts."""
    folder = tmp_path_factory.mktemp("upscale")

    def state(name):
        return {key: value.contiguous() for key, value in nets[name].state_dict().items()}

    paths = {"esrgan": folder / "4x-tiny-esrgan.safetensors", "esrgan-pth": folder / "4x-tiny-esrgan.pth",
             "compact-pth": folder / "2x-tiny-compact.pth", "swinir": folder / "2x-tiny-swinir.safetensors",
             "face": folder / "tiny-restoreformer.safetensors"}
    save_file(state("esrgan"), paths["esrgan"])
    torch.save(state("esrgan"), paths["esrgan-pth"])
    torch.save({"params": state("compact")}, paths["compact-pth"])  # the Real-ESRGAN release wrapper
    save_file(state("swinir"), paths["swinir"])
    save_file(state("face"), paths["face"])
    return paths


def _image(height=70, width=90, batch=2, seed=0):
    return torch.rand(batch, height, width, 3, generator=torch.Generator().manual_seed(seed))


def _reference(net, pixels):
    """The network's own forward pass on [batch, height, width, 3] pixels, clamped as upscalers' outputs are."""
    with torch.no_grad():
        return net(pixels.permute(0, 3, 1, 2).contiguous()).clamp(0, 1).permute(0, 2, 3, 1)


@pytest.mark.parametrize("key, variant, scale", [("esrgan", "ESRGAN", 4), ("esrgan-pth", "ESRGAN", 4),
                                                 ("compact-pth", "RealESRGAN Compact", 2), ("swinir", "SwinIR", 2)])
def test_identify_names_the_architecture_and_scale(files, key, variant, scale):
    info = identify(files[key])
    assert (info.kind, info.variant, info.family, info.unsupported) == ("upscale_model", variant, "unknown", None)
    assert f"{scale}x upscaler" in info.notes
    assert info.to_json()["kind"] == "upscale_model"


def test_identify_without_spandrel_falls_back_to_key_names(files, monkeypatch):
    def missing(path=None):
        raise ModelError(path, "no spandrel")

    monkeypatch.setattr(upscale, "import_spandrel", missing)
    esrgan, compact = identify(files["esrgan"]), identify(files["compact-pth"])
    assert (esrgan.variant, compact.variant) == ("ESRGAN", "RealESRGAN Compact")
    assert "4x upscaler" in esrgan.notes and "2x upscaler" in compact.notes
    assert any("pip install --no-deps" in note for note in esrgan.notes)


def _basicsr_x2plus_tensors(features=8, growth=32):
    """RealESRGAN_x2plus's key layout (BasicSR RRDBNet, one block): a 4x network fed a pixel-unshuffled image
    (12 input channels), hence a 2x upscaler."""
    tensors = {"conv_first.weight": torch.zeros(features, 12, 3, 3), "conv_body.weight": torch.zeros(features,
                                                                                                     features, 3, 3)}
    for rdb in (1, 2, 3):
        for conv in range(1, 6):
            out = features if conv == 5 else growth
            tensors[f"body.0.rdb{rdb}.conv{conv}.weight"] = torch.zeros(out, features + (conv - 1) * growth, 3, 3)
            tensors[f"body.0.rdb{rdb}.conv{conv}.bias"] = torch.zeros(out)
    for name in ("conv_up1", "conv_up2", "conv_hr"):
        tensors[f"{name}.weight"] = torch.zeros(features, features, 3, 3)
    tensors["conv_last.weight"] = torch.zeros(3, features, 3, 3)
    for name in ("conv_first", "conv_body", "conv_up1", "conv_up2", "conv_hr", "conv_last"):
        tensors[f"{name}.bias"] = torch.zeros(tensors[f"{name}.weight"].shape[0])
    return tensors


@pytest.mark.parametrize("with_spandrel", [True, False])
def test_the_basicsr_layout_with_pixel_unshuffle_is_a_2x_esrgan(tmp_path, monkeypatch, with_spandrel):
    path = tmp_path / "RealESRGAN_x2plus.pth"
    torch.save({"params_ema": _basicsr_x2plus_tensors()}, path)
    if not with_spandrel:
        monkeypatch.setattr(upscale, "import_spandrel", lambda path=None: (_ for _ in ()).throw(ModelError(path, "")))
    info = identify(path)
    assert (info.kind, info.variant) == ("upscale_model", "ESRGAN") and "2x upscaler" in info.notes
    if with_spandrel:  # sizes that are no multiple of 4 are padded for the unshuffle, and cropped back
        model = load_upscale_model(path)
        assert model.scale == 2 and model.descriptor.size_requirements.multiple_of == 4
        assert upscale_image(model, _image(9, 11, batch=1)).shape == (1, 18, 22, 3)


def test_a_face_restorer_is_recognised_but_refused(files):
    info = identify(files["face"])
    assert info.kind == "upscale_model" and "face restoration" in info.unsupported
    with pytest.raises(ModelError, match="tiny-restoreformer.safetensors: a face restoration model"):
        load_upscale_model(files["face"])


@pytest.mark.parametrize("key, net", [("esrgan", "esrgan"), ("esrgan-pth", "esrgan"), ("compact-pth", "compact"),
                                      ("swinir", "swinir")])
def test_untiled_upscale_equals_the_networks_own_forward_pass(files, nets, key, net):
    model = load_upscale_model(files[key])
    pixels = _image(37, 45)  # odd sizes: nothing is padded away
    result = upscale_image(model, pixels)
    assert result.shape == (2, 37 * model.scale, 45 * model.scale, 3) and result.dtype == torch.float32
    assert (result - _reference(nets[net], pixels)).abs().max() <= 1e-6
    # the comparison can fail: another image moves the reference far past the tolerance
    assert (result - _reference(nets[net], _image(37, 45, seed=1))).abs().max() > 0.1


def test_tiles_blend_to_the_untiled_result(files, nets):
    pixels = _image(70, 90)
    compact = load_upscale_model(files["compact-pth"])
    reference = _reference(nets["compact"], pixels)
    calls = []
    tiled = upscale_image(compact, pixels, tile=32, overlap=16, progress=lambda i, n: calls.append((i, n)))
    # 4 × 5 tiles per image; the receptive field (4 px) is within a quarter of the overlap: exact
    assert calls[-1] == (40, 40) and len(calls) == 40
    assert (tiled - reference).abs().max() <= 1e-6
    # too little overlap for the receptive field shows at the seams: the check above can fail
    assert (upscale_image(compact, pixels, tile=32, overlap=4) - reference).abs().max() > 1e-4

    # ESRGAN's receptive field (about 17 px) is wider than a quarter of these overlaps: the seams come close, closer
    # as the overlap grows (measured: 7.1e-4 with 16 px of overlap, 5.3e-6 with 32 px)
    esrgan = load_upscale_model(files["esrgan"])
    reference = _reference(nets["esrgan"], pixels)
    tiled = upscale_image(esrgan, pixels, tile=64, overlap=32)
    assert tiled.shape == (2, 280, 360, 3)
    assert (tiled - reference).abs().max() <= 1e-5
    assert (upscale_image(esrgan, pixels, tile=32, overlap=16) - reference).abs().max() <= 2e-3


def test_out_of_memory_retries_with_smaller_tiles_and_cancel_stops(files, nets, monkeypatch):
    model = load_upscale_model(files["compact-pth"])
    original = type(model.descriptor).__call__
    sizes = []

    def limited(descriptor, image):
        sizes.append(image.shape[-1])
        if image.shape[-1] > 40:
            raise RuntimeError("CUDA out of memory. Tried to allocate 20.00 GiB")
        return original(descriptor, image)

    monkeypatch.setattr(type(model.descriptor), "__call__", limited)
    pixels = _image(70, 90, batch=1)
    result = upscale_image(model, pixels, tile=64, overlap=16)
    assert sizes[0] == 64 and max(sizes[1:]) == 32
    assert (result - _reference(nets["compact"], pixels)).abs().max() <= 1e-6

    def cancel(done, total):
        raise Cancelled()

    with pytest.raises(Cancelled):
        upscale_image(model, pixels, tile=32, overlap=16, progress=cancel)


def test_automatic_tiles_fit_a_4x_upscale_of_1024_pixels_in_8_gb(nets):
    """A real-size 4x ESRGAN (64 features, 23 blocks) in float16 on an 8 GB card with 7 GB free."""
    import_spandrel()
    from spandrel import ModelLoader
    from spandrel.architectures.ESRGAN import ESRGAN

    descriptor = ModelLoader().load_from_state_dict(ESRGAN(num_filters=64, num_blocks=23, scale=4).state_dict())
    descriptor.to(torch.float16)
    model = upscale.UpscaleModel(Path("4x.pth"), descriptor, descriptor.model, "ESRGAN", 4)
    weights = sum(t.numel() * t.element_size() for t in descriptor.model.parameters())
    tile = auto_tile_size(model, 7 * 1024**3 // 2)
    assert 256 <= tile <= 1024 and tile % 8 == 0
    assert weights + estimate_tile_bytes(model, tile) < 8 * 1024**3
    # a tile of a 1024² image at that size; the whole image at once would not fit the same budget
    assert estimate_tile_bytes(model, 1024) > 7 * 1024**3 // 2


def test_pickles_go_through_the_safe_loader(files, tmp_path):
    marker = tmp_path / "ran.txt"
    bad = write_malicious_pickle(tmp_path / "4x-evil.pth", marker)
    with pytest.raises(UnsafeModelError, match="4x-evil.pth: refused"):
        load_upscale_model(bad)
    with pytest.raises(UnsafeModelError):
        identify(bad)
    assert not marker.exists()


def test_a_file_that_is_no_upscaler_is_refused_clearly(tmp_path):
    path = tmp_path / "odd.safetensors"
    save_file({"foo.weight": torch.zeros(2, 2)}, path)
    with pytest.raises(ModelError, match="odd.safetensors: not an upscale model of an architecture spandrel knows"):
        load_upscale_model(path)


def test_missing_spandrel_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "spandrel", None)
    with pytest.raises(ModelError, match=r'4x.pth: upscale models need the spandrel package.*'
                                         r'pip install --no-deps "spandrel>=0.4.2,<0.5"'):
        import_spandrel("4x.pth")


@pytest.mark.skipif(importlib.util.find_spec("torchvision") is not None, reason="torchvision is installed here")
def test_without_torchvision_no_stand_in_stays_behind():
    import_spandrel()
    assert "spandrel.architectures.RestoreFormer" in sys.modules
    assert not [name for name in sys.modules if name.startswith("torchvision")]


def test_spandrel_imports_with_a_broken_torchvision_and_leaves_no_stand_in(tmp_path):
    """In a fresh interpreter whose torchvision is broken (as PyPI's CUDA build next to a CPU torch): spandrel
    imports, and neither the broken modules nor the stand-ins stay in sys.modules."""
    broken = tmp_path / "torchvision"
    broken.mkdir()
    (broken / "__init__.py").write_text("raise RuntimeError('operator torchvision::nms does not exist')\n")
    script = textwrap.dedent("""
        import sys
        from nodegraph.models.upscale import import_spandrel
        spandrel = import_spandrel()
        assert "spandrel.architectures.LaMa" in sys.modules
        print(sorted(name for name in sys.modules if name.startswith("torchvision")))
    """)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
