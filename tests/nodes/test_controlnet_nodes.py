"""ControlNet graphs end to end, against diffusers' StableDiffusionControlNetPipeline on the same tiny weights.

The graph Load Checkpoint → CLIP Text Encode ×2 → Load ControlNet Model + Load Image → Apply ControlNet → UNet Sampler
→ VAE Decode runs through the real executor on a tiny float32 SD 1.x checkpoint and tiny ControlNet files in
lllyasviel's and diffusers' single-file layouts; the reference pipeline is assembled from components loaded apart
from the same files, with the same scheduler config, prompts, control image and CPU generator seed. Next to each
equality another control image or seed must move the result far past the tolerance (so the comparison could fail).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from nodegraph.models.offline import ensure_offline

ensure_offline()

import diffusers  # noqa: E402

from nodegraph.core.graph import Workflow  # noqa: E402
from nodegraph.engine import Executor, RunSettings  # noqa: E402
from nodegraph.models.controlnet import load_controlnet  # noqa: E402
from nodegraph.models.schedulers import build_scheduler  # noqa: E402
from nodegraph.models.synthetic.controlnet import write_controlnet  # noqa: E402

pytestmark = [pytest.mark.filterwarnings("ignore:__array:DeprecationWarning"),
              pytest.mark.filterwarnings("ignore::FutureWarning")]

#: Max abs difference allowed on float pixels in [0, 1] between the graph and diffusers' pipeline.
ATOL = 1e-5
#: A changed control image, ControlNet or seed must move the mean |diff| of the pixels past this (100 × ATOL).
VISIBLE = 100 * ATOL
SIZE, STEPS, CFG, SEED = 64, 4, 5.0, 1
PROMPT, NEGATIVE = "a photo of a cat sitting on a windowsill", "blurry, lowres"
OBSERVED: list[str] = []


@pytest.fixture(scope="module", autouse=True)
def _report_observed():
    # One intra-op thread: the tiny models gain nothing from more, and on a busy 2-core machine OpenMP's spinning
    # threads make each forward pass many times slower.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
    print("\n[ControlNet: max |diff| vs diffusers / mean |diff| of the changed input]")
    for line in OBSERVED:
        print("  " + line)


@pytest.fixture(scope="module")
def files(models, tmp_path_factory):
    """The control images and ControlNet files (in the models root's controlnet/ folder), written once."""
    folder = models.root / "controlnet"
    pictures = tmp_path_factory.mktemp("control-images")
    y, x = np.mgrid[0:SIZE, 0:SIZE]
    disc = ((x - 30) ** 2 + (y - 34) ** 2 < 18 ** 2).astype(np.float32)
    stripes = ((x // 8) % 2).astype(np.float32) * (y > 20)
    paths = {"cn": write_controlnet(folder / "tiny-cn-sd1.safetensors", "sd1", "ldm", seed=5),
             "cn-b": write_controlnet(folder / "tiny-cn-sd1-b.safetensors", "sd1", "diffusers", seed=6),
             "cn-sdxl": write_controlnet(folder / "tiny-cn-sdxl.safetensors", "sdxl-base", "diffusers", seed=7)}
    for name, mask in {"disc": disc, "stripes": stripes}.items():
        rgb = np.stack([mask, mask, mask], axis=-1) * 255
        paths[name] = pictures / f"{name}.png"
        Image.fromarray(rgb.astype(np.uint8)).save(paths[name])
    return paths


def graph(ckpt: str, controls=(), *, seed=SEED, old_apply_on_positive=False) -> Workflow:
    """The text-to-image graph with one Apply ControlNet per entry of `controls`, chained:
    ``(controlnet file in the controlnet folder, image path, strength, start, end)``."""
    wf = Workflow()
    wf.add_node("LoadCheckpoint", "ckpt", inputs={"ckpt_name": ckpt, "prediction": "auto"})
    wf.add_node("EmptyLatentImage", "latent", inputs={"width": SIZE, "height": SIZE, "batch_size": 1})
    wf.add_node("CLIPTextEncode", "positive", inputs={"text": PROMPT})
    wf.add_node("CLIPTextEncode", "negative", inputs={"text": NEGATIVE})
    wf.connect("ckpt", "CLIP", "positive", "clip")
    wf.connect("ckpt", "CLIP", "negative", "clip")
    positive, negative = ("positive", "CONDITIONING"), ("negative", "CONDITIONING")
    for index, (controlnet, image, strength, start, end) in enumerate(controls):
        load, hint, apply = f"cn{index}", f"hint{index}", f"apply{index}"
        name = controlnet if isinstance(controlnet, str) else Path(controlnet).name  # a str: an absolute path
        wf.add_node("LoadControlNet", load, inputs={"control_net_name": name})
        wf.add_node("LoadImage", hint, inputs={"image": str(image)})
        if old_apply_on_positive:
            wf.add_node("ApplyControlNetSimple", apply, inputs={"strength": strength})
            wf.connect(*positive, apply, "conditioning")
            positive = (apply, "CONDITIONING")
        else:
            wf.add_node("ApplyControlNet", apply, inputs={"strength": strength, "start_percent": start,
                                                          "end_percent": end})
            wf.connect(*positive, apply, "positive")
            wf.connect(*negative, apply, "negative")
            positive, negative = (apply, "positive"), (apply, "negative")
        wf.connect(load, "CONTROL_NET", apply, "control_net")
        wf.connect(hint, "IMAGE", apply, "image")
    wf.add_node("UNetSampler", "sample", inputs={"seed": seed, "steps": STEPS, "cfg": CFG, "sampler_name": "euler",
                                                 "scheduler": "normal", "denoise": 1.0})
    wf.add_node("VAEDecode", "decode")
    for src, dst in [(("ckpt", "MODEL"), ("sample", "model")), (positive, ("sample", "positive")),
                     (negative, ("sample", "negative")), (("latent", "LATENT"), ("sample", "latent_image")),
                     (("sample", "LATENT"), ("decode", "samples")), (("ckpt", "VAE"), ("decode", "vae"))]:
        wf.connect(*src, *dst)
    return wf


def run(wf: Workflow, node_registry, manager, tmp_path, ok=True):
    settings = RunSettings(output_dir=tmp_path / "output", device="cpu", services={"models": manager})
    result = Executor(node_registry).run(wf, targets=["decode"], settings=settings)
    if ok:
        assert result.ok, (result.status, result.message, result.details, result.problems)
        return result.outputs["decode"]["IMAGE"].pixels.numpy()
    assert not result.ok
    return result


@pytest.fixture(scope="module")
def reference(components, files):
    """``reference(controlnets, images, **kwargs)``: diffusers' ControlNet pipeline's float image [1, H, W, 3]."""
    ck = components("sd1")
    loaded = {key: load_controlnet(files[key]) for key in ("cn", "cn-b")}

    def generate(controlnets, images, *, seed=SEED, **kwargs):
        nets = [loaded[key] for key in controlnets]
        controlnet = nets[0] if len(nets) == 1 else diffusers.MultiControlNetModel(nets)
        pipe = diffusers.StableDiffusionControlNetPipeline(
            vae=ck.vae, text_encoder=ck.text_encoders["text_encoder"], tokenizer=ck.tokenizers["tokenizer"],
            unet=ck.unet, controlnet=controlnet, scheduler=build_scheduler(ck.scheduler_config, "euler", "normal"),
            safety_checker=None, feature_extractor=None, requires_safety_checker=False)
        pipe.set_progress_bar_config(disable=True)
        pictures = [Image.open(files[key]).convert("RGB") for key in images]
        with torch.no_grad():
            return pipe(PROMPT, negative_prompt=NEGATIVE, image=pictures[0] if len(pictures) == 1 else pictures,
                        height=SIZE, width=SIZE, num_inference_steps=STEPS, guidance_scale=CFG,
                        generator=torch.Generator("cpu").manual_seed(seed), output_type="np", **kwargs).images

    return generate


def diff(a, b) -> float:
    return float(np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)).max())


def mean_diff(a, b) -> float:
    return float(np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)).mean())


def test_apply_controlnet_equals_controlnet_pipeline(models, files, node_registry, manager, reference, tmp_path):
    mine = run(graph(models.name("sd1"), [(files["cn"], files["disc"], 1.0, 0.0, 1.0)]), node_registry, manager,
               tmp_path)
    ref = reference(["cn"], ["disc"])
    other_image = run(graph(models.name("sd1"), [(files["cn"], files["stripes"], 1.0, 0.0, 1.0)]), node_registry,
                      manager, tmp_path)
    other_seed = reference(["cn"], ["disc"], seed=SEED + 1)
    plain = run(graph(models.name("sd1")), node_registry, manager, tmp_path)
    OBSERVED.append(f"SD1 Apply ControlNet (lllyasviel layout): {diff(mine, ref):.3g}; other control image → "
                    f"{mean_diff(other_image, mine):.3g}, no ControlNet → {mean_diff(plain, mine):.3g}, "
                    f"other seed → {mean_diff(other_seed, ref):.3g}")
    assert mine.shape == ref.shape == (1, SIZE, SIZE, 3)
    assert diff(mine, ref) <= ATOL
    assert ref.std() > 0.02, "the reference image is nearly flat: the test proves nothing"
    assert mean_diff(other_image, mine) > VISIBLE, "the control image does not visibly change the result"
    assert mean_diff(plain, mine) > VISIBLE
    assert mean_diff(other_seed, ref) > VISIBLE


def test_stacked_controlnets_equal_multicontrolnet_pipeline(models, files, node_registry, manager, reference,
                                                            tmp_path):
    controls = [(files["cn"], files["disc"], 0.8, 0.0, 1.0), (files["cn-b"], files["stripes"], 0.6, 0.0, 1.0)]
    mine = run(graph(models.name("sd1"), controls), node_registry, manager, tmp_path)
    ref = reference(["cn", "cn-b"], ["disc", "stripes"], controlnet_conditioning_scale=[0.8, 0.6])
    first_only = reference(["cn"], ["disc"], controlnet_conditioning_scale=0.8)
    OBSERVED.append(f"SD1 two stacked ControlNets (lllyasviel + diffusers layouts): {diff(mine, ref):.3g}; "
                    f"without the second → {mean_diff(first_only, ref):.3g}")
    assert diff(mine, ref) <= ATOL
    assert mean_diff(first_only, ref) > VISIBLE


def test_start_and_end_percent_limit_the_steps(models, files, node_registry, manager, reference, tmp_path):
    name, cn, disc = models.name("sd1"), files["cn"], files["disc"]
    late = run(graph(name, [(cn, disc, 1.0, 0.5, 1.0)]), node_registry, manager, tmp_path)
    ref = reference(["cn"], ["disc"], control_guidance_start=0.5, control_guidance_end=1.0)
    plain = run(graph(name), node_registry, manager, tmp_path)
    never = run(graph(name, [(cn, disc, 1.0, 0.0, 0.0)]), node_registry, manager, tmp_path)
    strength_zero = run(graph(name, [(cn, disc, 0.0, 0.0, 1.0)]), node_registry, manager, tmp_path)
    whole = run(graph(name, [(cn, disc, 1.0, 0.0, 1.0)]), node_registry, manager, tmp_path)
    OBSERVED.append(f"SD1 ControlNet on steps 50-100%: {diff(late, ref):.3g}; end 0% vs none: {diff(never, plain)}, "
                    f"strength 0 vs none: {diff(strength_zero, plain)}")
    assert diff(late, ref) <= ATOL
    assert diff(never, plain) == 0
    assert diff(strength_zero, plain) == 0
    assert mean_diff(late, plain) > VISIBLE and mean_diff(late, whole) > VISIBLE


def test_old_apply_on_the_positive_prompt_only(models, files, node_registry, manager, tmp_path):
    name, cn, disc = models.name("sd1"), files["cn"], files["disc"]
    positive_only = run(graph(name, [(cn, disc, 1.0, 0.0, 1.0)], old_apply_on_positive=True), node_registry, manager,
                        tmp_path)
    both = run(graph(name, [(cn, disc, 1.0, 0.0, 1.0)]), node_registry, manager, tmp_path)
    plain = run(graph(name), node_registry, manager, tmp_path)
    assert np.isfinite(positive_only).all()
    assert mean_diff(positive_only, both) > VISIBLE and mean_diff(positive_only, plain) > VISIBLE


def test_a_controlnet_for_another_model_line_is_refused_naming_the_node(models, files, node_registry, manager,
                                                                         tmp_path):
    result = run(graph(models.name("sd1"), [(files["cn-sdxl"], files["disc"], 1.0, 0.0, 1.0)]), node_registry,
                 manager, tmp_path, ok=False)
    assert result.failed_node == "apply0"
    assert "tiny-cn-sdxl.safetensors" in result.message and "SDXL" in result.message
    assert "SD 1.x" in result.message
    assert "Traceback" not in result.message


def test_load_controlnet_refuses_other_files(models, files, node_registry, manager, tmp_path):
    misfiled = tmp_path / "not-a-controlnet.safetensors"
    misfiled.write_bytes(models["lora"].read_bytes())
    wf = graph(models.name("sd1"), [(str(misfiled), files["disc"], 1.0, 0.0, 1.0)])
    result = run(wf, node_registry, manager, tmp_path, ok=False)
    assert result.failed_node == "cn0"
    assert "not-a-controlnet.safetensors is a lora, not a ControlNet" in result.message


def test_canny_matches_scikit_image(node_registry, manager, tmp_path):
    from skimage.feature import canny

    rng = np.random.default_rng(3)
    y, x = np.mgrid[0:48, 0:40]
    picture = np.zeros((48, 40, 3))
    picture[10:30, 8:28] = [0.9, 0.6, 0.2]  # a rectangle …
    picture[(x - 28) ** 2 + (y - 34) ** 2 < 60] = [0.1, 0.3, 1.0]  # … a disc over it, and a little noise
    picture = np.clip(picture + rng.normal(0, 0.02, picture.shape), 0, 1)
    path = tmp_path / "shapes.png"
    Image.fromarray((picture * 255).round().astype(np.uint8)).save(path)

    wf = Workflow()
    wf.add_node("LoadImage", "load", inputs={"image": str(path)})
    wf.add_node("Canny", "canny", inputs={"low_threshold": 0.4, "high_threshold": 0.8})
    wf.connect("load", "IMAGE", "canny", "image")
    settings = RunSettings(output_dir=tmp_path / "output", device="cpu", services={"models": manager})
    result = Executor(node_registry).run(wf, targets=["canny"], settings=settings)
    assert result.ok, result.message
    edges = result.outputs["canny"]["IMAGE"].pixels.numpy()

    pixels = np.asarray(Image.open(path), dtype=np.float32) / 255
    gray = pixels.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    expected = canny(gray, sigma=1.0, low_threshold=0.4, high_threshold=0.8, mode="nearest")
    assert edges.shape == (1, 48, 40, 3) and edges.dtype == np.float32
    assert set(np.unique(edges)) == {0.0, 1.0}
    assert (edges[0] == expected[..., None]).all()
    assert 40 < expected.sum() < 48 * 40 / 4  # edges were found, not everything

    wf.node("canny").inputs.update(low_threshold=0.9, high_threshold=0.5)
    result = Executor(node_registry).run(wf, targets=["canny"], settings=settings)
    assert result.status == "invalid"
    assert any(p.port == "high_threshold" for p in result.problems)
