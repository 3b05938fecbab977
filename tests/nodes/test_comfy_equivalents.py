"""The nodes that give ComfyUI's built-ins an equivalent here: VAE Encode (for Inpainting), Upscale Latent's crop and
automatic sizes, Upscale Latent By, LoRA (model only) and Note, each checked against a reference computed apart."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from nodegraph.core.graph import Workflow
from nodegraph.engine import Executor, RunSettings
from nodegraph.models.handles import Latent

pytestmark = [pytest.mark.filterwarnings("ignore:__array:DeprecationWarning"),
              pytest.mark.filterwarnings("ignore::FutureWarning")]


def run(wf: Workflow, registry, manager, tmp_path, targets):
    result = Executor(registry).run(wf, targets=targets, settings=RunSettings(
        output_dir=tmp_path, device="cpu", services={"models": manager}))
    assert result.ok, (result.message, result.problems)
    return result


def test_vae_encode_for_inpaint_greys_the_hole_and_grows_the_mask(models, node_registry, manager, components,
                                                                  tmp_path):
    rng = np.random.default_rng(3)
    rgba = rng.integers(0, 256, (68, 72, 4), dtype=np.uint8)  # not multiples of 8: centre-cropped to 64 × 72
    rgba[..., 3] = 255
    rgba[20:36, 30:44, 3] = 0
    Image.fromarray(rgba, "RGBA").save(tmp_path / "hole.png")
    wf = Workflow()
    wf.add_node("LoadCheckpoint", "ckpt", inputs={"ckpt_name": models.name("sd1")})
    wf.add_node("LoadImage", "image", inputs={"image": str(tmp_path / "hole.png")})
    wf.add_node("VAEEncodeForInpaint", "encode", inputs={"grow_mask_by": 6})
    for source, target in [("image.IMAGE", "encode.pixels"), ("image.MASK", "encode.mask"),
                           ("ckpt.VAE", "encode.vae")]:
        wf.connect(*source.split("."), *target.split("."))
    latent = run(wf, node_registry, manager, tmp_path, ["encode"]).outputs["encode"]["LATENT"]

    # The reference, from the documented rules: crop (68 % 8) // 2 = 2 rows from the top, grey the hole (0.5) and
    # encode the mean with diffusers' own VAE; the mask grown by 6 pixels (3 before, 2 after, each axis).
    pixels = rgba[2:66, :, :3].astype(np.float32) / 255
    hole = (rgba[2:66, :, 3] == 0).astype(np.float32)
    greyed = pixels * (1 - hole[..., None]) + 0.5 * hole[..., None]
    vae = components("sd1").vae
    with torch.no_grad():
        x = torch.from_numpy(greyed).permute(2, 0, 1)[None] * 2 - 1
        expected = vae.encode(x).latent_dist.mode() * vae.config.scaling_factor
    assert torch.allclose(latent.samples, expected, atol=1e-5)
    grown = np.zeros_like(hole)
    for dy in range(-3, 3):
        for dx in range(-3, 3):
            grown = np.maximum(grown, np.roll(np.pad(hole, 3), (-dy, -dx), (0, 1))[3:-3, 3:-3])
    expected_mask = F.interpolate(torch.from_numpy(grown)[None, None], size=(8, 9), mode="bilinear")
    assert torch.allclose(latent.noise_mask, expected_mask, atol=1e-6)
    assert 0 < float(latent.noise_mask.mean()) < 1


def _latent(height=8, width=12, seed=0):
    return Latent(torch.randn(1, 4, height, width, generator=torch.Generator().manual_seed(seed)))


def test_upscale_latent_crops_to_the_new_aspect_and_follows_it_when_one_size_is_zero(node_registry):
    upscale = node_registry["UpscaleLatent"].run
    samples = _latent()
    cropped = upscale(None, samples=samples, upscale_method="bilinear", width=64, height=64, crop="center")
    # 12 × 8 → square: two latent columns cut from each side, then resized to 8 × 8.
    expected = F.interpolate(samples.samples[..., 2:10], size=(8, 8), mode="bilinear", align_corners=False)
    assert torch.equal(cropped["LATENT"].samples, expected)
    follow = upscale(None, samples=samples, upscale_method="nearest-exact", width=0, height=128, crop="disabled")
    assert follow["LATENT"].samples.shape[-2:] == (16, 24)
    same = upscale(None, samples=samples, upscale_method="bilinear", width=0, height=0, crop="disabled")
    assert same["LATENT"] is samples


def test_upscale_latent_by_rounds_each_side(node_registry):
    result = node_registry["UpscaleLatentBy"].run(None, samples=_latent(8, 11), upscale_method="bicubic", scale_by=1.5)
    assert result["LATENT"].samples.shape[-2:] == (12, 16)


def test_model_only_lora_equals_lora_with_text_encoder_strength_zero(models, node_registry, manager, tmp_path):
    def graph(model_only: bool) -> Workflow:
        wf = Workflow()
        wf.add_node("LoadCheckpoint", "ckpt", inputs={"ckpt_name": models.name("sd1")})
        if model_only:
            wf.add_node("LoadLoRAModelOnly", "lora", inputs={"lora_name": models.name("lora"), "strength_model": 0.8})
        else:
            wf.add_node("LoadLoRA", "lora", inputs={"lora_name": models.name("lora"), "strength_model": 0.8,
                                                    "strength_clip": 0.0})
            wf.connect("ckpt", "CLIP", "lora", "clip")
        wf.connect("ckpt", "MODEL", "lora", "model")
        wf.add_node("CLIPTextEncode", "text", inputs={"text": "a cat"})
        wf.add_node("EmptyLatentImage", "latent", inputs={"width": 64, "height": 64, "batch_size": 1})
        wf.add_node("UNetSampler", "sample", inputs={"seed": 4, "steps": 2, "cfg": 1.0})
        wf.add_node("Note", "note", inputs={"text": "notes never run"})
        for source, target in [("ckpt.CLIP", "text.clip"), ("lora.MODEL", "sample.model"),
                               ("text.CONDITIONING", "sample.positive"), ("text.CONDITIONING", "sample.negative"),
                               ("latent.LATENT", "sample.latent_image")]:
            wf.connect(*source.split("."), *target.split("."))
        return wf

    results = [run(graph(flag), node_registry, manager, tmp_path, ["sample"]) for flag in (True, False)]
    assert torch.equal(*(r.outputs["sample"]["LATENT"].samples for r in results))
    assert "note" not in results[0].outputs
    plain = graph(False)
    plain.nodes["lora"].inputs["strength_model"] = 0.0
    unpatched = run(plain, node_registry, manager, tmp_path, ["sample"]).outputs["sample"]["LATENT"].samples
    assert not torch.equal(unpatched, results[0].outputs["sample"]["LATENT"].samples)
