"""The built-in nodes end to end, against diffusers' own pipelines on the same weights.

Graphs run through the real Executor and registry (or ``python -m nodegraph`` for the CLI tests) on tiny float32
checkpoints in the real single-file format; the reference is a diffusers pipeline assembled from components loaded
separately from the same file, with the scheduler built from the same config, the same prompt strings and
``torch.Generator("cpu").manual_seed(seed)``. The decoded images must agree within ATOL on float pixels, and next
to each equivalence another seed / prompt / LoRA strength / VAE / embedding must move the reference by far more
(so the comparison could fail).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from nodegraph.models.offline import ensure_offline
from tests.reference import reference_pipeline

ensure_offline()

import diffusers  # noqa: E402

from nodegraph.core.graph import Workflow  # noqa: E402
from nodegraph.core.workflow_io import load, save  # noqa: E402
from nodegraph.engine import (  # noqa: E402
    CancelToken,
    Executor,
    NodeFinished,
    Progress,
    RunCancelled,
    RunSettings,
)
from nodegraph.images import read_png_text, read_png_workflow, to_uint8  # noqa: E402
from nodegraph.models.synthetic import write_diffusers_config, write_embedding  # noqa: E402

pytestmark = [
    # diffusers' schedulers hand torch tensors to numpy 2: harmless deprecation noise.
    pytest.mark.filterwarnings("ignore:__array:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::FutureWarning"),
    # peft notes that a second LoRA joins the first as another adapter: what a LoRA stack is.
    pytest.mark.filterwarnings("ignore:Already found a `peft_config` attribute:UserWarning"),
]

ROOT = Path(__file__).resolve().parents[2]
TXT2IMG = ROOT / "resources" / "workflows" / "txt2img.json"

#: Max abs difference allowed on float pixels in [0, 1].
ATOL = 1e-4
#: A change of seed, prompt, strength, VAE or embedding must move the reference by more than FAR × ATOL.
FAR = 100
SIZE = 64
STEPS = 4
CFG = 5.0
SEED = 1
PROMPT = "a photo of a cat sitting on a windowsill"
NEGATIVE = "blurry, lowres"

#: What each comparison observed, printed at the end of the module (run with -s to see it).
OBSERVED: list[str] = []


@pytest.fixture(scope="module", autouse=True)
def _report_observed():
    yield
    print("\n[max |diff| observed, vs diffusers / vs the changed reference]")
    for line in OBSERVED:
        print("  " + line)


# --- graphs ----------------------------------------------------------------------------------------------------------
def add_branch(wf: Workflow, suffix: str = "", *, model=("ckpt", "MODEL"), clip=("ckpt", "CLIP"), vae=("ckpt", "VAE"),
               latent=("latent", "LATENT"), prompt=PROMPT, negative=NEGATIVE, seed=SEED, steps=STEPS, cfg=CFG,
               sampler="euler", schedule="normal", denoise=1.0) -> str:
    """Prompt encoders, a UNet Sampler and a VAE Decode fed from the given outputs; returns the decode node's id."""
    positive, negative_id = f"positive{suffix}", f"negative{suffix}"
    sample, decode = f"sample{suffix}", f"decode{suffix}"
    wf.add_node("CLIPTextEncode", positive, inputs={"text": prompt})
    wf.add_node("CLIPTextEncode", negative_id, inputs={"text": negative})
    wf.add_node("UNetSampler", sample, inputs={"seed": seed, "steps": steps, "cfg": cfg, "sampler_name": sampler,
                                               "scheduler": schedule, "denoise": denoise})
    wf.add_node("VAEDecode", decode)
    for src, dst in [(clip, (positive, "clip")), (clip, (negative_id, "clip")), (model, (sample, "model")),
                     ((positive, "CONDITIONING"), (sample, "positive")),
                     ((negative_id, "CONDITIONING"), (sample, "negative")), (latent, (sample, "latent_image")),
                     ((sample, "LATENT"), (decode, "samples")), (vae, (decode, "vae"))]:
        wf.connect(*src, *dst)
    return decode


def base_graph(ckpt: str, *, prediction: str = "auto", size: int = SIZE) -> Workflow:
    """A Load Checkpoint and an Empty Latent Image, to add branches to."""
    wf = Workflow()
    wf.add_node("LoadCheckpoint", "ckpt", inputs={"ckpt_name": ckpt, "prediction": prediction})
    wf.add_node("EmptyLatentImage", "latent", inputs={"width": size, "height": size, "batch_size": 1})
    return wf


def txt2img(ckpt: str, *, prediction: str = "auto", **branch) -> Workflow:
    wf = base_graph(ckpt, prediction=prediction)
    add_branch(wf, **branch)
    return wf


def run_graph(wf: Workflow, registry, manager, tmp_path: Path, targets=("decode",), executor=None, **kwargs):
    """Run `wf` to `targets` with a fresh executor (no outputs cached from other tests); the run must finish."""
    executor = executor or Executor(registry)
    settings = RunSettings(output_dir=tmp_path / "output", device="cpu", services={"models": manager})
    result = executor.run(wf, targets=list(targets), settings=settings, **kwargs)
    assert result.ok, (result.status, result.message, result.details, result.problems)
    return result


def pixels(result, node: str = "decode") -> np.ndarray:
    """The float pixels [B, H, W, 3] of a VAE Decode node's IMAGE output."""
    return result.outputs[node]["IMAGE"].pixels.numpy()


# --- diffusers' reference -------------------------------------------------------------------------------------------
pipeline = reference_pipeline


def generate(pipe, *, prompt=PROMPT, negative=NEGATIVE, seed=SEED, steps=STEPS, cfg=CFG, **kwargs) -> np.ndarray:
    """The pipeline's float image [B, H, W, 3] (``output_type="np"``)."""
    if "image" not in kwargs:
        kwargs.setdefault("height", SIZE)
        kwargs.setdefault("width", SIZE)
    if prompt is not None:
        kwargs.update(prompt=prompt, negative_prompt=negative)
    with torch.no_grad():
        return pipe(**kwargs, num_inference_steps=steps, guidance_scale=cfg,
                    generator=torch.Generator("cpu").manual_seed(seed), output_type="np").images


def max_diff(a, b) -> float:
    return float(np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)).max())


def assert_equivalent(what: str, mine: np.ndarray, ref: np.ndarray, **moved: np.ndarray) -> None:
    """`mine` equals `ref` within ATOL, and each changed reference in `moved` is far from `ref`."""
    assert mine.shape == ref.shape, (mine.shape, ref.shape)
    diff = max_diff(mine, ref)
    far = {name: max_diff(other, ref) for name, other in moved.items()}
    OBSERVED.append(f"{what}: {diff:.3g}; " + ", ".join(f"{name} → {value:.3g}" for name, value in far.items()))
    assert diff <= ATOL, f"{what}: the graph's image differs from diffusers' by {diff}"
    assert ref.std() > 0.02, f"{what}: the reference image is nearly flat (std {ref.std()}), the test proves nothing"
    for name, value in far.items():
        assert value > FAR * ATOL, f"{what}: changing the {name} moves the reference by only {value}"


# --- 1. text to image ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("sampler", "schedule"), [
    ("euler", "normal"), ("euler_ancestral", "normal"), ("dpmpp_2m", "karras"), ("ddim", "normal")])
def test_sd1_txt2img_equals_stable_diffusion_pipeline(sampler, schedule, models, node_registry, manager, components,
                                                      tmp_path):
    result = run_graph(txt2img(models.name("sd1"), sampler=sampler, schedule=schedule), node_registry, manager,
                       tmp_path)
    pipe = pipeline(components("sd1"), sampler, schedule)
    ref = generate(pipe)
    assert_equivalent(f"SD1 txt2img {sampler}/{schedule}", pixels(result), ref,
                      seed=generate(pipe, seed=SEED + 1), prompt=generate(pipe, prompt="a red house by the sea"))


def test_sd2_v_prediction_txt2img_equals_stable_diffusion_pipeline(models, node_registry, manager, components,
                                                                   tmp_path):
    ck = components("sd2-v")
    assert ck.family.name == "sd2-v"  # "768-v" in the file name: the documented v-prediction rule
    pipe = pipeline(ck, "dpmpp_2m", "karras")
    assert pipe.scheduler.config.prediction_type == "v_prediction"
    ref = generate(pipe)
    name = models.name("sd2-v")
    result = run_graph(txt2img(name, sampler="dpmpp_2m", schedule="karras"), node_registry, manager, tmp_path)
    as_epsilon = run_graph(txt2img(name, prediction="epsilon", sampler="dpmpp_2m", schedule="karras"), node_registry,
                           manager, tmp_path)
    assert_equivalent("SD2 768-v txt2img dpmpp_2m/karras", pixels(result), ref, seed=generate(pipe, seed=SEED + 1),
                      prediction=pixels(as_epsilon))


def test_sdxl_txt2img_equals_stable_diffusion_xl_pipeline(models, node_registry, manager, components, tmp_path):
    ck = components("sdxl")
    assert ck.family.name == "sdxl-base"
    result = run_graph(txt2img(models.name("sdxl")), node_registry, manager, tmp_path)
    pipe = pipeline(ck, "euler")
    ref = generate(pipe)  # negative_prompt given: diffusers does not zero it (force_zeros_for_empty_prompt)
    assert_equivalent("SDXL base txt2img euler", pixels(result), ref, seed=generate(pipe, seed=SEED + 1),
                      prompt=generate(pipe, prompt="a red house by the sea"))


# --- 2. image to image -----------------------------------------------------------------------------------------------
def write_picture(path: Path) -> Path:
    """A SIZE × SIZE PNG with gradients and noise."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:SIZE, 0:SIZE] / SIZE
    picture = np.stack([x, y, 1 - x * y], axis=-1) * 0.7 + rng.random((SIZE, SIZE, 3)) * 0.3
    Image.fromarray((picture * 255).round().astype(np.uint8)).save(path)
    return path


def encode_reference(vae, path: Path) -> torch.Tensor:
    """What VAE Encode gives: the distribution's mean of the picture in [-1, 1], times the scaling factor."""
    with torch.no_grad():
        image = torch.from_numpy(np.asarray(Image.open(path), dtype=np.float32) / 255).permute(2, 0, 1)[None]
        return vae.encode(image * 2 - 1).latent_dist.mode() * vae.config.scaling_factor


def test_img2img_equals_img2img_pipeline(models, node_registry, manager, components, tmp_path):
    source = write_picture(tmp_path / "input.png")
    steps, strength = 5, 0.6

    wf = base_graph(models.name("sd1"))
    wf.add_node("LoadImage", "load", inputs={"image": str(source)})
    wf.add_node("VAEEncode", "encode")
    wf.connect("load", "IMAGE", "encode", "pixels")
    wf.connect("ckpt", "VAE", "encode", "vae")
    add_branch(wf, latent=("encode", "LATENT"), steps=steps, denoise=strength)
    result = run_graph(wf, node_registry, manager, tmp_path, targets=("encode", "decode"))
    latents = result.outputs["encode"]["LATENT"].samples

    ck = components("sd1")
    assert max_diff(latents, encode_reference(ck.vae, source)) <= ATOL

    pipe = pipeline(ck, cls=diffusers.StableDiffusionImg2ImgPipeline)
    ref = generate(pipe, image=latents, strength=strength, steps=steps)  # 4-channel latents are used as they are
    assert_equivalent("img2img denoise 0.6", pixels(result), ref,
                      seed=generate(pipe, image=latents, strength=strength, steps=steps, seed=SEED + 1),
                      strength=generate(pipe, image=latents, strength=0.8, steps=steps))


# --- 3. LoRA ---------------------------------------------------------------------------------------------------------
def add_lora(wf: Workflow, node_id: str, lora_name: str, strength_model: float, strength_clip: float,
             model=("ckpt", "MODEL"), clip=("ckpt", "CLIP")) -> tuple[tuple[str, str], tuple[str, str]]:
    wf.add_node("LoadLoRA", node_id, inputs={"lora_name": lora_name, "strength_model": strength_model,
                                             "strength_clip": strength_clip})
    wf.connect(*model, node_id, "model")
    wf.connect(*clip, node_id, "clip")
    return (node_id, "MODEL"), (node_id, "CLIP")


def test_lora_strengths_equal_load_lora_weights_with_set_adapters(models, node_registry, manager, components,
                                                                 tmp_path):
    wf = base_graph(models.name("sd1"))
    model, clip = add_lora(wf, "lora", models.name("lora"), 0.7, 0.3)
    add_branch(wf, model=model, clip=clip)
    result = run_graph(wf, node_registry, manager, tmp_path)

    pipe = pipeline(components("sd1", fresh=True))
    pipe.load_lora_weights(str(models["lora"]), adapter_name="x")
    images = {}
    for key, weights in {"ref": (0.7, 0.3), "unet strength": (0.35, 0.3), "text strength": (0.7, 1.0)}.items():
        pipe.set_adapters(["x"], adapter_weights=[{"unet": weights[0], "text_encoder": weights[1]}])
        images[key] = generate(pipe)
    ref = images.pop("ref")
    pipe.disable_lora()
    assert_equivalent("LoRA 0.7/0.3", pixels(result), ref, **images, **{"LoRA (off)": generate(pipe)})


def test_two_branches_with_different_lora_stacks_equal_separate_runs(models, node_registry, manager, components,
                                                                     tmp_path):
    lora, lora_b = models.name("lora"), models.name("lora-b")

    def branch_a(wf):
        model, clip = add_lora(wf, "lora_a", lora, 0.7, 0.3)
        return add_branch(wf, "_a", model=model, clip=clip)

    def branch_b(wf):  # a stack of two
        model, clip = add_lora(wf, "lora_b1", lora, 1.0, 1.0)
        model, clip = add_lora(wf, "lora_b2", lora_b, 0.5, 0.5, model=model, clip=clip)
        return add_branch(wf, "_b", model=model, clip=clip)

    def branch_c(wf):  # no LoRA: the patches of the other branches must be off
        return add_branch(wf, "_c")

    branches = [branch_a, branch_b, branch_c]
    together = base_graph(models.name("sd1"))
    targets = [make(together) for make in branches]
    joint = run_graph(together, node_registry, manager, tmp_path, targets=targets)
    plain = generate(pipeline(components("sd1")))
    separate = {}
    for make, target in zip(branches, targets, strict=True):
        wf = base_graph(models.name("sd1"))
        make(wf)
        separate[target] = pixels(run_graph(wf, node_registry, manager, tmp_path, targets=[target]), target)
    for target in targets:
        others = {f"stack of {other}": separate[other] for other in targets if other != target}
        assert_equivalent(f"LoRA branch {target} in one graph vs its own run", pixels(joint, target),
                          separate[target], **others)
    assert_equivalent("branch without LoRA vs the plain pipeline", separate["decode_c"], plain)


# --- 4. embeddings ---------------------------------------------------------------------------------------------------
def embedding_reference(components, path: Path, token: str, prompt: str) -> np.ndarray:
    pipe = pipeline(components("sd1", fresh=True))
    pipe.load_textual_inversion(str(path), token=token)
    return generate(pipe, prompt=prompt)


def test_embedding_node_equals_load_textual_inversion(models, node_registry, manager, components, tmp_path):
    prompt = "a photo of myemb sitting on a windowsill"
    wf = base_graph(models.name("sd1"))
    wf.add_node("LoadEmbedding", "embedding", inputs={"embedding_name": models.name("embedding"), "token": "myemb"})
    wf.connect("ckpt", "CLIP", "embedding", "clip")
    add_branch(wf, clip=("embedding", "CLIP"), prompt=prompt)
    result = run_graph(wf, node_registry, manager, tmp_path)
    ref = embedding_reference(components, models["embedding"], "myemb", prompt)
    other = embedding_reference(components, models["embedding-b"], "myemb", prompt)
    assert_equivalent("Embedding node (token myemb)", pixels(result), ref, embedding=other)


@pytest.mark.parametrize("reference", ["embedding:tinyemb", "tinyemb"])
def test_embedding_named_in_the_prompt_equals_load_textual_inversion(reference, models, node_registry, manager,
                                                                     components, tmp_path):
    models["embedding-b"]  # another embedding in the folder, not named: must not be picked up
    template = "a photo of {} sitting on a windowsill"
    result = run_graph(txt2img(models.name("sd1"), prompt=template.format(reference)), node_registry, manager,
                       tmp_path)
    ref = embedding_reference(components, models["embedding"], "tinyemb", template.format("tinyemb"))
    other = embedding_reference(components, models["embedding-b"], "tinyemb", template.format("tinyemb"))
    assert_equivalent(f"Embedding from the folder as {reference!r}", pixels(result), ref, embedding=other)


def test_an_edited_folder_embedding_is_not_served_from_the_cache(models, node_registry, manager, components,
                                                                 tmp_path):
    """A prompt naming a folder embedding re-encodes when that file changes (as a re-trained embedding does)."""
    path = models.root / "embeddings" / "retrained.safetensors"
    write_embedding(path, "safetensors", family="sd1", vectors=2, seed=31)
    wf = txt2img(models.name("sd1"), prompt="a photo of embedding:retrained sitting on a windowsill")
    executor = Executor(node_registry)
    first = run_graph(wf, node_registry, manager, tmp_path, executor=executor)
    again = run_graph(wf, node_registry, manager, tmp_path, executor=executor)
    assert again.executed == []  # nothing changed: all from the cache
    write_embedding(path, "safetensors", family="sd1", vectors=2, seed=32)
    later = path.stat().st_mtime_ns + 10**9
    os.utime(path, ns=(later, later))  # a distinct modification time, whatever the clock's resolution
    edited = run_graph(wf, node_registry, manager, tmp_path, executor=executor)
    assert {"positive", "sample", "decode"} <= set(edited.executed)
    ref = embedding_reference(components, path, "retrained", "a photo of retrained sitting on a windowsill")
    assert_equivalent("Folder embedding after editing the file", pixels(edited), ref,
                      **{"embedding (before the edit)": pixels(first)})


# --- 5. VAE override -------------------------------------------------------------------------------------------------
def test_vae_override_equals_pipeline_given_that_vae(models, node_registry, manager, components, tmp_path):
    wf = base_graph(models.name("sd1"))
    wf.add_node("LoadVAE", "vae", inputs={"vae_name": models.name("vae")})
    add_branch(wf, vae=("vae", "VAE"))
    result = run_graph(wf, node_registry, manager, tmp_path)

    ck = components("sd1")
    ref = generate(pipeline(ck, vae=vae_from_single_file(models["vae"], "sd1", tmp_path)))
    assert_equivalent("VAE override", pixels(result), ref, VAE=generate(pipeline(ck)))


def vae_from_single_file(path: Path, family: str, tmp_path: Path):
    """A standalone VAE file loaded by diffusers itself, with the family's config (and so its scaling factor)."""
    config = write_diffusers_config(tmp_path / f"{family}-config", family)
    return diffusers.AutoencoderKL.from_single_file(str(path), config=str(config), subfolder="vae",
                                                    local_files_only=True)


def test_vae_override_on_sdxl_keeps_sdxl_latent_scale(models, node_registry, manager, components, tmp_path):
    """A VAE file does not say which model line it is for; with an SDXL checkpoint, encoding, sampling and decoding
    must still use SDXL's factor (0.13025), as SDXL pipelines given the VAE with SDXL's config do."""
    source = write_picture(tmp_path / "input.png")
    steps, strength = 5, 0.6
    wf = base_graph(models.name("sdxl"))
    wf.add_node("LoadVAE", "vae", inputs={"vae_name": models.name("vae")})
    wf.add_node("LoadImage", "load", inputs={"image": str(source)})
    wf.add_node("VAEEncode", "encode")
    wf.connect("load", "IMAGE", "encode", "pixels")
    wf.connect("vae", "VAE", "encode", "vae")
    targets = [add_branch(wf, "_t2i", vae=("vae", "VAE")),
               add_branch(wf, "_i2i", vae=("vae", "VAE"), latent=("encode", "LATENT"), steps=steps, denoise=strength)]
    result = run_graph(wf, node_registry, manager, tmp_path, targets=targets)

    vae = vae_from_single_file(models["vae"], "sdxl-base", tmp_path)
    assert vae.config.scaling_factor == 0.13025
    ck = components("sdxl")
    ref = generate(pipeline(ck, vae=vae))
    assert_equivalent("SDXL txt2img with a VAE override", pixels(result, "decode_t2i"), ref,
                      VAE=generate(pipeline(ck)))
    img2img = pipeline(ck, vae=vae, cls=diffusers.StableDiffusionXLImg2ImgPipeline)
    latents = encode_reference(vae, source)
    ref = generate(img2img, image=latents, strength=strength, steps=steps)
    assert_equivalent("SDXL img2img with a VAE override", pixels(result, "decode_i2i"), ref,
                      seed=generate(img2img, image=latents, strength=strength, steps=steps, seed=SEED + 1))


# --- 6. CLIP skip ----------------------------------------------------------------------------------------------------
def penultimate_embeds(ck, text: str) -> torch.Tensor:
    """final_layer_norm(hidden_states[-2]): diffusers' clip_skip=1, computed by hand (its own path needs
    ``text_model``, which transformers 5's CLIPTextModel no longer has)."""
    tokenizer, encoder = ck.tokenizers["tokenizer"], ck.text_encoders["text_encoder"]
    ids = tokenizer(text, padding="max_length", max_length=77, truncation=True, return_tensors="pt").input_ids
    with torch.no_grad():
        hidden = encoder(ids, output_hidden_states=True).hidden_states[-2]
        return encoder.final_layer_norm(hidden)


def test_clip_skip_equals_pipeline_fed_penultimate_layer_embeddings(models, node_registry, manager, components,
                                                                   tmp_path):
    wf = base_graph(models.name("sd1"))
    wf.add_node("CLIPSetLastLayer", "skip", inputs={"stop_at_clip_layer": -2})
    wf.connect("ckpt", "CLIP", "skip", "clip")
    add_branch(wf, clip=("skip", "CLIP"))
    result = run_graph(wf, node_registry, manager, tmp_path)

    ck = components("sd1")
    pipe = pipeline(ck)
    ref = generate(pipe, prompt=None, prompt_embeds=penultimate_embeds(ck, PROMPT),
                   negative_prompt_embeds=penultimate_embeds(ck, NEGATIVE))
    assert_equivalent("CLIP skip -2", pixels(result), ref, **{"CLIP skip (none)": generate(pipe)})


# --- 7-8. the CLI: a seed sweep re-runs only the sampler and what follows; PNG metadata ------------------------------
TXT2IMG_SETTINGS = ("--set", "latent.width=64", "--set", "latent.height=64", "--set", "sample.steps=4")


def read_png(path: str | Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


@pytest.fixture(scope="module")
def sweep(models, cli, tmp_path_factory):
    """``nodegraph run txt2img.json --sweep sample.seed=1,2 --json`` on the tiny SD 1.x checkpoint."""
    folder = tmp_path_factory.mktemp("sweep")
    done = cli("run", str(TXT2IMG), "--set", f"ckpt.ckpt_name={models.name('sd1')}", *TXT2IMG_SETTINGS,
               "--sweep", "sample.seed=1,2", "--json", "--models-dir", str(models.root),
               "--output-dir", str(folder / "output"), "--device", "cpu", home=folder / "home")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)["runs"], folder


def test_seed_sweep_reruns_only_sampler_decode_and_save(sweep, components):
    runs, _ = sweep
    assert [run["overrides"]["sample.seed"] for run in runs] == [1, 2]
    assert [run["status"] for run in runs] == ["finished", "finished"]
    assert sorted(runs[0]["executed"]) == ["ckpt", "decode", "latent", "negative", "positive", "sample", "save"]
    assert runs[0]["cached"] == []
    assert runs[1]["executed"] == ["sample", "decode", "save"]
    assert sorted(runs[1]["cached"]) == ["ckpt", "latent", "negative", "positive"]

    # The saved images are diffusers' (rounded to 8 bits), one per seed.
    workflow = load(TXT2IMG)
    pipe = pipeline(components("sd1"), "euler")
    for run, seed in zip(runs, (1, 2), strict=True):
        [png] = run["outputs"]["save"]
        assert Path(png).name == f"txt2img_0000{seed}_.png"
        ref = to_uint8(generate(pipe, prompt=workflow.nodes["positive"].inputs["text"],
                                negative=workflow.nodes["negative"].inputs["text"], seed=seed, steps=4,
                                cfg=workflow.nodes["sample"].inputs["cfg"])[0])
        saved = read_png(png)
        assert saved.shape == (SIZE, SIZE, 3)
        assert np.abs(saved.astype(int) - ref.astype(int)).max() <= 1  # the same floats, rounded
    assert np.abs(read_png(runs[0]["outputs"]["save"][0]).astype(int)
                  - read_png(runs[1]["outputs"]["save"][0]).astype(int)).max() > 10


def test_png_metadata_has_both_chunks_and_the_workflow_reruns_to_the_same_pixels(sweep, models, cli):
    runs, folder = sweep
    png = Path(runs[1]["outputs"]["save"][0])
    chunks = read_png_text(png)
    assert {"nodegraph", "parameters"} <= set(chunks)
    workflow = load(TXT2IMG)
    parameters = chunks["parameters"]
    lines = parameters.splitlines()
    assert lines[0] == workflow.nodes["positive"].inputs["text"]
    assert lines[1] == "Negative prompt: " + workflow.nodes["negative"].inputs["text"]
    model_hash = hashlib.sha256(models["sd1"].read_bytes()).hexdigest()[:10]
    for expected in ("Steps: 4", "Sampler: Euler", "CFG scale: 7", "Seed: 2", "Size: 64x64",
                     f"Model hash: {model_hash}", "Model: tiny-sd1"):
        assert re.search(rf"(^|, ){re.escape(expected)}(,|$)", lines[2]), (expected, parameters)

    embedded = read_png_workflow(png)
    assert embedded.nodes["sample"].inputs["seed"] == 2
    assert embedded.nodes["ckpt"].inputs["ckpt_name"] == models.name("sd1")
    saved = folder / "from-png.json"
    save(embedded, saved)
    again = folder / "again"
    done = cli("run", str(saved), "--models-dir", str(models.root), "--output-dir", str(again), "--device", "cpu",
               home=folder / "home")
    assert done.returncode == 0, done.stderr
    [rerun] = sorted(again.glob("*.png"))
    assert np.array_equal(read_png(rerun), read_png(png))


# --- 9. nodegraph demo -----------------------------------------------------------------------------------------------
def test_demo_writes_a_png_with_both_chunks_and_says_where(cli, tmp_path):
    home = tmp_path / "home"
    done = cli("demo", "--set", "sample.steps=2", "--set", "latent.width=64", "--set", "latent.height=64",
               "--device", "cpu", home=home)
    assert done.returncode == 0, done.stderr
    assert (home / "models" / "checkpoints" / "demo-tiny-random.safetensors").is_file()
    assert "noise" in done.stderr
    printed = [Path(match) for match in re.findall(r"(\S+\.png)", done.stdout)]
    assert printed, done.stdout
    png = printed[0]
    assert png.is_file() and png.parent == home / "output"
    assert {"nodegraph", "parameters"} <= set(read_png_text(png))
    assert "Steps: 2" in read_png_text(png)["parameters"]
    assert read_png(png).shape == (64, 64, 3)


# --- 10. pre-flight --------------------------------------------------------------------------------------------------
def test_preflight_reports_wrong_family_lora_and_bad_width_naming_node_and_port(models, cli, tmp_path):
    workflow = load(TXT2IMG)
    workflow.set_input("ckpt", "ckpt_name", models.name("sd1"))
    workflow.set_input("latent", "width", 100)
    workflow.add_node("LoadLoRA", "lora", inputs={"lora_name": models.name("lora-sdxl"), "strength_model": 1.0,
                                                  "strength_clip": 1.0})
    workflow.connect("ckpt", "MODEL", "lora", "model")
    workflow.connect("ckpt", "CLIP", "lora", "clip")
    workflow.connect("lora", "MODEL", "sample", "model")
    path = tmp_path / "wrong.json"
    save(workflow, path)

    done = cli("validate", str(path), "--models-dir", str(models.root), home=tmp_path / "home")
    assert done.returncode == 2, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    lora_lines = [line for line in lines if "node 'lora', port 'lora_name'" in line]
    width_lines = [line for line in lines if "node 'latent', port 'width'" in line]
    assert len(lora_lines) == 1 and "SDXL" in lora_lines[0], lines
    assert len(width_lines) == 1 and "multiple of 8" in width_lines[0], lines

    ran = cli("run", str(path), "--models-dir", str(models.root), "--output-dir", str(tmp_path / "out"),
              "--device", "cpu", home=tmp_path / "home")
    assert ran.returncode == 2
    assert "node 'lora', port 'lora_name'" in ran.stderr and "node 'latent', port 'width'" in ran.stderr
    assert not (tmp_path / "out").exists()


# --- 11. cancellation ------------------------------------------------------------------------------------------------
def test_cancel_during_sampling_stops_within_one_step_and_the_next_run_works(models, node_registry, manager,
                                                                            components, tmp_path):
    steps = 6
    # The cancelled run has a LoRA: it must be off again for the next run.
    cancelled_wf = base_graph(models.name("sd1"))
    model, clip = add_lora(cancelled_wf, "lora", models.name("lora"), 1.0, 1.0)
    add_branch(cancelled_wf, model=model, clip=clip, steps=steps)
    events: list = []
    first_step, cancel_sent = threading.Event(), threading.Event()

    def sink(event):
        events.append(event)
        if isinstance(event, Progress) and not first_step.is_set():
            first_step.set()
            cancel_sent.wait(60)  # hold the sampler until the other thread has cancelled

    executor = Executor(node_registry, sink=sink)
    token = CancelToken()
    settings = RunSettings(output_dir=tmp_path / "output", device="cpu", services={"models": manager})
    outcome = {}
    worker = threading.Thread(target=lambda: outcome.update(
        result=executor.run(cancelled_wf, targets=["decode"], settings=settings, cancel=token)))
    worker.start()
    assert first_step.wait(120), "the sampler never reported a step"
    token.cancel()
    cancel_sent.set()
    worker.join(120)
    assert not worker.is_alive()
    result = outcome["result"]
    assert result.status == "cancelled"
    assert [(e.node_id, e.step, e.total) for e in events if isinstance(e, Progress)] == [("sample", 1, steps)]
    assert [e.node_id for e in events if isinstance(e, RunCancelled)] == ["sample"]
    assert not {"sample", "decode"} & {e.node_id for e in events if isinstance(e, NodeFinished)}

    events.clear()
    after = run_graph(txt2img(models.name("sd1"), steps=steps), node_registry, manager, tmp_path,
                      executor=executor, cancel=CancelToken())
    assert [e.step for e in events if isinstance(e, Progress)] == list(range(1, steps + 1))
    pipe = pipeline(components("sd1"))
    assert_equivalent("run after a cancelled LoRA run", pixels(after), generate(pipe, steps=steps),
                      seed=generate(pipe, steps=steps, seed=SEED + 1))

