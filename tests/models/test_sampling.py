"""The sampler against diffusers' own pipelines on the same loaded (tiny, float32) models, schedulers built the same
way, the same prompt embeddings and ``torch.Generator("cpu").manual_seed(seed)``: the latents must match, and another
seed (or strength) must move the reference by far more than the tolerance. Then every sampler/schedule combination,
progress and cancellation, errors, and the latent preview."""

from __future__ import annotations

import inspect

import numpy as np
import pytest
import torch

from nodegraph.models.offline import ensure_offline

ensure_offline()

import diffusers  # noqa: E402

from nodegraph.core.errors import Cancelled, NodeError  # noqa: E402
from nodegraph.models import synthetic  # noqa: E402
from nodegraph.models.conditioning import Conditioning  # noqa: E402
from nodegraph.models.configs import load_config  # noqa: E402
from nodegraph.models.loader import load_checkpoint  # noqa: E402
from nodegraph.models.preview import latent_preview  # noqa: E402
from nodegraph.models.sampling import sample  # noqa: E402
from nodegraph.models.schedulers import SAMPLERS, SCHEDULES, build_scheduler, label, schedule_problem  # noqa: E402

pytestmark = [
    # diffusers' schedulers pass torch tensors to numpy 2 (harmless deprecation noise, thousands of lines).
    pytest.mark.filterwarnings("ignore:__array:DeprecationWarning"),
    # torchsde's Brownian interval compares float32 sigmas with their float64 copies.
    pytest.mark.filterwarnings("ignore:Should have ta>=t0:UserWarning"),
]

ATOL = 1e-5
#: Another seed or strength must move the reference by at least this many tolerances.
FAR = 100
SIZE = 64  # pixels: 8x8 latents
CFG = 5.0


# --- models ----------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Tiny models gain nothing from intra-op threads; on a busy 2-core machine they only slow each pass down."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def models(tmp_path_factory, tiny_checkpoints):
    """float32 tiny checkpoints (the session's shared files, see ``tiny_checkpoints``), loaded through the real loader
    on first use, by family."""
    folder = tmp_path_factory.mktemp("sampling")
    seeds = {"sd2-v": 1}

    class Models(dict):
        def __missing__(self, family):
            path = tiny_checkpoints.write(folder / f"tiny-{family}.safetensors", family, seed=seeds.get(family, 0))
            self[family] = load_checkpoint(path)
            return self[family]

    return Models()


def prompts(ck, seed=5):
    """Random stand-ins for encoded prompts (positive, negative) of the checkpoint's widths; SDXL gets pooled ones."""
    gen = torch.Generator().manual_seed(seed)
    width = ck.unet.config.cross_attention_dim
    sdxl = ck.unet.config.addition_embed_type == "text_time"

    def one():
        embeds = torch.randn(1, 77, width, generator=gen)
        return Conditioning(embeds, torch.randn(1, 1280, generator=gen) if sdxl else None)

    return one(), one()


def init_latents(seed=7):
    return torch.randn(1, 4, SIZE // 8, SIZE // 8, generator=torch.Generator().manual_seed(seed))


def ours(ck, sampler, schedule="normal", *, seed=1, steps=4, cfg=CFG, size=SIZE, conds=None, **kwargs):
    positive, negative = conds or prompts(ck)
    return sample(unet=ck.unet, scheduler=build_scheduler(ck.scheduler_config, sampler, schedule), family=ck.family,
                  positive=positive, negative=negative, seed=seed, steps=steps, cfg=cfg, width=size, height=size,
                  **kwargs)


def reference(ck, pipeline_class, sampler, schedule="normal", *, seed=1, steps=4, cfg=CFG, batch_size=1, **kwargs):
    """diffusers' own pipeline on the same components, with the prompt embeddings passed in (no prompt encoding)."""
    scheduler = build_scheduler(ck.scheduler_config, sampler, schedule)
    positive, negative = prompts(ck)
    call = {"prompt_embeds": positive.embeds, "negative_prompt_embeds": negative.embeds}
    if ck.family.base == "sdxl":
        pipe = pipeline_class(vae=ck.vae, text_encoder=None, text_encoder_2=None, tokenizer=None, tokenizer_2=None,
                              unet=ck.unet, scheduler=scheduler, add_watermarker=False,
                              **({"requires_aesthetics_score": True} if ck.family.name == "sdxl-refiner" else {}))
        call.update(pooled_prompt_embeds=positive.pooled, negative_pooled_prompt_embeds=negative.pooled)
    else:
        pipe = pipeline_class(vae=ck.vae, text_encoder=ck.text_encoders["text_encoder"],
                              tokenizer=ck.tokenizers["tokenizer"], unet=ck.unet, scheduler=scheduler,
                              safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    if "image" not in kwargs:
        kwargs.setdefault("height", SIZE)
        kwargs.setdefault("width", SIZE)
    with torch.no_grad():
        return pipe(**call, **kwargs, num_inference_steps=steps, guidance_scale=cfg, num_images_per_prompt=batch_size,
                    generator=torch.Generator("cpu").manual_seed(seed), output_type="latent").images


def max_diff(a, b):
    return (a.double() - b.double()).abs().max().item()


def assert_matches(what, mine, ref, moved):
    """`mine` equals `ref` within ATOL, while `moved` (the reference with another seed or strength) is far from it."""
    diff, far = max_diff(mine, ref), max_diff(moved, ref)
    print(f"\n[max |diff|] {what}: {diff:.3g} (changed seed/strength/scale: {far:.3g})")
    assert mine.shape == ref.shape
    assert diff <= ATOL, f"{what}: differs from diffusers by {diff}"
    assert far > FAR * ATOL, f"{what}: another seed moves the reference by only {far}"


# --- equal to diffusers ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("sampler", "schedule"), [
    ("euler", "normal"), ("euler_ancestral", "normal"), ("dpmpp_2m", "karras"), ("ddim", "normal"),
    ("dpmpp_2m_sde", "karras"), ("heun", "normal"), ("pndm", "normal"),
])
def test_sd1_text_to_image_equals_stable_diffusion_pipeline(models, sampler, schedule):
    ck = models["sd1"]
    assert ck.scheduler_config["_class_name"] == "PNDMScheduler"  # swapped with from_config, as diffusers users do
    ref = reference(ck, diffusers.StableDiffusionPipeline, sampler, schedule)
    assert_matches(f"SD1 {label(sampler, schedule)}", ours(ck, sampler, schedule), ref,
                   reference(ck, diffusers.StableDiffusionPipeline, sampler, schedule, seed=2))


def test_sd1_batch_of_two_draws_noise_like_the_pipeline(models):
    ck = models["sd1"]
    ref = reference(ck, diffusers.StableDiffusionPipeline, "euler_ancestral", batch_size=2)
    mine = ours(ck, "euler_ancestral", batch_size=2)
    assert_matches("SD1 Euler a, batch of 2", mine, ref,
                   reference(ck, diffusers.StableDiffusionPipeline, "euler_ancestral", batch_size=2, seed=2))
    assert max_diff(mine[0], mine[1]) > FAR * ATOL  # each image of the batch has its own noise


def test_float16_weights_equal_the_pipeline(model_files):
    """The session's float16 fixture file: noise is drawn on the CPU in the UNet's dtype, embeddings are cast to it."""
    ck = load_checkpoint(model_files["sd1"])
    assert ck.unet.dtype == torch.float16
    mine = ours(ck, "euler_ancestral", size=32)
    assert mine.dtype == torch.float16
    ref = reference(ck, diffusers.StableDiffusionPipeline, "euler_ancestral", height=32, width=32)
    assert_matches("SD1 float16 Euler a", mine, ref,
                   reference(ck, diffusers.StableDiffusionPipeline, "euler_ancestral", height=32, width=32, seed=2))


@pytest.mark.parametrize("sampler", ["euler", "ddim"])
def test_sd2_v_prediction_equals_stable_diffusion_pipeline(models, sampler):
    ck = models["sd2-v"]
    assert ck.family.prediction == "v"
    assert ck.scheduler_config["prediction_type"] == "v_prediction"
    assert build_scheduler(ck.scheduler_config, sampler, "normal").config.prediction_type == "v_prediction"
    ref = reference(ck, diffusers.StableDiffusionPipeline, sampler)
    assert_matches(f"SD2 v-prediction {label(sampler)}", ours(ck, sampler), ref,
                   reference(ck, diffusers.StableDiffusionPipeline, sampler, seed=2))


@pytest.mark.parametrize("sampler", ["euler", "euler_ancestral"])
def test_sdxl_base_equals_stable_diffusion_xl_pipeline(models, sampler):
    ck = models["sdxl-base"]
    ref = reference(ck, diffusers.StableDiffusionXLPipeline, sampler)
    assert_matches(f"SDXL base {label(sampler)}", ours(ck, sampler), ref,
                   reference(ck, diffusers.StableDiffusionXLPipeline, sampler, seed=2))


@pytest.mark.parametrize(("sampler", "schedule"), [("euler_ancestral", "normal"), ("dpmpp_2m", "karras"),
                                                   ("heun", "karras"), ("ddim", "normal")])
def test_img2img_equals_img2img_pipeline(models, sampler, schedule):
    ck = models["sd1"]
    init = init_latents()
    ref = reference(ck, diffusers.StableDiffusionImg2ImgPipeline, sampler, schedule, image=init, strength=0.6, steps=5)
    mine = ours(ck, sampler, schedule, steps=5, init_latents=init, denoise=0.6)
    assert_matches(f"SD1 img2img 0.6 {label(sampler, schedule)}", mine, ref,
                   reference(ck, diffusers.StableDiffusionImg2ImgPipeline, sampler, schedule, image=init,
                             strength=0.6, steps=5, seed=2))
    other_strength = reference(ck, diffusers.StableDiffusionImg2ImgPipeline, sampler, schedule, image=init,
                               strength=0.8, steps=5)
    assert max_diff(other_strength, ref) > FAR * ATOL


def test_sdxl_refiner_img2img_uses_aesthetic_score_time_ids(models):
    ck = models["sdxl-refiner"]
    init = init_latents()
    call = {"image": init, "strength": 0.6, "steps": 5}
    ref = reference(ck, diffusers.StableDiffusionXLImg2ImgPipeline, "euler_ancestral", **call)
    assert_matches("SDXL refiner img2img Euler a", ours(ck, "euler_ancestral", steps=5, init_latents=init,
                                                        denoise=0.6), ref,
                   reference(ck, diffusers.StableDiffusionXLImg2ImgPipeline, "euler_ancestral", seed=2, **call))


def _mask():
    mask = torch.zeros(1, 1, SIZE // 8, SIZE // 8)
    mask[..., 2:6, 3:7] = 1.0
    return mask


@pytest.mark.parametrize("denoise", [1.0, 0.6])
def test_noise_mask_blends_like_the_inpaint_pipeline(models, denoise):
    ck = models["sd1"]
    init, mask = init_latents(), _mask()
    call = {"image": init, "mask_image": mask, "masked_image_latents": init, "height": SIZE, "width": SIZE,
            "strength": denoise, "steps": 5}
    ref = reference(ck, diffusers.StableDiffusionInpaintPipeline, "euler_ancestral", **call)
    mine = ours(ck, "euler_ancestral", steps=5, init_latents=init, denoise=denoise, noise_mask=mask)
    assert_matches(f"SD1 noise mask, denoise {denoise}", mine, ref,
                   reference(ck, diffusers.StableDiffusionInpaintPipeline, "euler_ancestral", seed=2, **call))
    assert torch.equal(mine * (1 - mask), init * (1 - mask))  # the kept region is the image, exactly


def test_inpainting_unet_takes_mask_and_masked_image_like_the_inpaint_pipeline(models):
    ck = models["sd1-inpaint"]
    assert ck.unet.config.in_channels == 9
    init, mask, masked = init_latents(), _mask(), init_latents(seed=8)
    call = {"image": init, "mask_image": mask, "masked_image_latents": masked, "height": SIZE, "width": SIZE,
            "steps": 5}
    ref = reference(ck, diffusers.StableDiffusionInpaintPipeline, "euler", **call)
    mine = ours(ck, "euler", steps=5, init_latents=init, masked_image_latents=masked, noise_mask=mask)
    assert_matches("SD1 inpainting model", mine, ref,
                   reference(ck, diffusers.StableDiffusionInpaintPipeline, "euler", seed=2, **call))
    # init latents stand in for the masked image's latents when those are not passed (ComfyUI's way)
    assert torch.equal(ours(ck, "euler", steps=5, init_latents=masked, noise_mask=mask), mine)
    with pytest.raises(NodeError, match="inpainting model"):
        ours(ck, "euler", steps=2)


def test_guidance_embedding_unet_equals_the_pipeline_with_lcm(models):
    """An LCM-distilled UNet takes the guidance scale as ``timestep_cond`` and runs no classifier-free guidance."""
    ck = models["sd1"]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(3)
        unet = diffusers.UNet2DConditionModel.from_config({**synthetic.unet_config("sd1"), "time_cond_proj_dim": 32})
    unet.eval().requires_grad_(False)
    distilled = type(ck)(ck.info, ck.family, unet, ck.vae, ck.text_encoders, ck.tokenizers, ck.scheduler_config)
    ref = reference(distilled, diffusers.StableDiffusionPipeline, "lcm", cfg=3.0)
    assert_matches("LCM with a guidance embedding", ours(distilled, "lcm", cfg=3.0), ref,
                   reference(distilled, diffusers.StableDiffusionPipeline, "lcm", cfg=5.0))


# --- every sampler and schedule --------------------------------------------------------------------------------------
SUPPORTED = [(s, sch) for s in SAMPLERS for sch in SCHEDULES if schedule_problem(s, sch) is None]
UNSUPPORTED = [(s, sch) for s in SAMPLERS for sch in SCHEDULES if schedule_problem(s, sch) is not None]


def test_every_supported_combination_runs_and_gives_finite_latents(models):
    assert len(SUPPORTED) >= 50, SUPPORTED
    ck = models["sd1"]
    conds = prompts(ck)
    shape = (1, 4, 4, 4)
    for sampler, schedule in SUPPORTED:
        latents = ours(ck, sampler, schedule, steps=3, cfg=1.0, size=32, conds=conds)
        assert latents.shape == shape and torch.isfinite(latents).all(), label(sampler, schedule)


@pytest.mark.parametrize("sampler", list(SAMPLERS))
def test_every_sampler_runs_with_v_prediction_and_cfg(models, sampler):
    ck = models["sd2-v"]
    latents = ours(ck, sampler, steps=2, size=32)
    assert torch.isfinite(latents).all()


def test_unsupported_combinations_are_explained():
    assert ("euler_ancestral", "karras") in UNSUPPORTED and ("lcm", "sgm_uniform") in UNSUPPORTED
    for sampler, schedule in UNSUPPORTED:
        message = schedule_problem(sampler, schedule)
        assert SAMPLERS[sampler].label in message and schedule in message
        with pytest.raises(ValueError, match="does not support"):
            build_scheduler({}, sampler, schedule)
    assert "unknown sampler" in schedule_problem("euler_b", "normal")
    assert "unknown schedule" in schedule_problem("euler", "linear_quadratic")


def test_schedule_support_table_follows_the_diffusers_classes():
    for name, spec in SAMPLERS.items():
        parameters = inspect.signature(getattr(diffusers, spec.class_name).__init__).parameters
        flags = {"karras": "use_karras_sigmas", "exponential": "use_exponential_sigmas", "beta": "use_beta_sigmas"}
        for schedule, flag in flags.items():
            assert (schedule in spec.schedules) == (flag in parameters), (name, schedule)
        assert "timestep_spacing" in parameters


def test_schedules_set_the_documented_config():
    config = load_config("sd1", "scheduler")
    assert build_scheduler(config, "dpmpp_2m", "karras").config.use_karras_sigmas
    assert build_scheduler(config, "deis", "exponential").config.use_exponential_sigmas
    assert build_scheduler(config, "uni_pc", "beta").config.use_beta_sigmas
    assert build_scheduler(config, "euler", "sgm_uniform").config.timestep_spacing == "trailing"
    assert build_scheduler(config, "dpmpp_2m_sde", "normal").config.algorithm_type == "sde-dpmsolver++"
    # "normal" is a plain from_config: the same config as a diffusers user's swap …
    plain = diffusers.EulerDiscreteScheduler.from_config(config)
    assert dict(build_scheduler(config, "euler").config) == dict(plain.config)
    # … but a config that turned Karras on does not make "Euler" mean "Euler Karras"
    assert not build_scheduler({**config, "use_karras_sigmas": True}, "euler").config.use_karras_sigmas
    assert build_scheduler({**config, "use_karras_sigmas": True}, "euler", "beta").config.use_beta_sigmas


def test_labels_are_automatic1111s():
    assert label("dpmpp_2m", "karras") == "DPM++ 2M Karras"
    assert label("euler_ancestral") == "Euler a"
    assert label("pndm") == "PLMS"
    assert label("dpmpp_2m_sde", "exponential") == "DPM++ 2M SDE Exponential"


def test_dpmpp_sde_brownian_noise_follows_the_seed_not_the_global_rng(models):
    ck = models["sd1"]
    first = ours(ck, "dpmpp_sde", "karras", steps=3, size=32)
    torch.manual_seed(12345)
    assert torch.equal(ours(ck, "dpmpp_sde", "karras", steps=3, size=32), first)
    assert max_diff(ours(ck, "dpmpp_sde", "karras", steps=3, size=32, seed=2), first) > FAR * ATOL


# --- progress, cancellation, inputs ----------------------------------------------------------------------------------
class CountingUnet(torch.nn.Module):
    """The UNet, counting its forward passes."""

    def __init__(self, unet):
        super().__init__()
        self.inner, self.calls = unet, 0

    def __getattr__(self, name):
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self.inner, name)

    def forward(self, *args, **kwargs):
        self.calls += 1
        return self.inner(*args, **kwargs)


@pytest.mark.parametrize(("sampler", "denoise", "expected_total"), [("euler", 1.0, 5), ("heun", 1.0, 5),
                                                                     ("pndm", 1.0, 5), ("dpm_2", 0.6, 3)])
def test_progress_is_called_once_per_step(models, sampler, denoise, expected_total):
    ck = models["sd1"]
    seen = []
    latents = ours(ck, sampler, steps=5, size=32, init_latents=torch.zeros(1, 4, 4, 4), denoise=denoise,
                   progress=lambda step, total, x: seen.append((step, total, x.clone())))
    assert [(s, t) for s, t, _ in seen] == [(i, expected_total) for i in range(1, expected_total + 1)]
    assert torch.equal(seen[-1][2], latents)
    assert latents.is_inference()  # ran under torch.inference_mode


@pytest.mark.parametrize(("sampler", "passes_per_step"), [("euler", 1), ("heun", 2)])
def test_cancelled_from_progress_stops_within_one_step(models, sampler, passes_per_step):
    ck = models["sd1"]
    unet = CountingUnet(ck.unet)
    positive, negative = prompts(ck)

    def progress(step, total, latents):
        if step == 2:
            raise Cancelled()

    with pytest.raises(Cancelled):
        sample(unet=unet, scheduler=build_scheduler(ck.scheduler_config, sampler, "normal"), family=ck.family,
               positive=positive, negative=negative, seed=1, steps=10, cfg=CFG, width=32, height=32,
               progress=progress)
    assert unet.calls <= 2 * passes_per_step


def test_user_errors_are_node_errors(models):
    ck = models["sd1"]
    with pytest.raises(NodeError, match="leaves no step"):
        ours(ck, "euler", steps=4, init_latents=init_latents(), denoise=0.1)
    with pytest.raises(NodeError, match="noise mask needs"):
        ours(ck, "euler", steps=2, noise_mask=_mask())
    with pytest.raises(NodeError, match="multiples of 8"):
        ours(ck, "euler", steps=2, size=36)
    with pytest.raises(ValueError, match="shaped"):
        ours(ck, "euler", steps=2, init_latents=torch.zeros(1, 4, 5, 5), denoise=0.5)
    sdxl = models["sdxl-base"]
    with pytest.raises(NodeError, match="pooled"):
        ours(sdxl, "euler", steps=2, conds=(Conditioning(torch.zeros(1, 77, 2048)),) * 2)


def test_prompts_of_different_lengths_run_as_two_passes(models):
    ck = models["sd1"]
    positive, negative = prompts(ck)
    long = Conditioning(torch.cat([positive.embeds, negative.embeds], dim=1))
    latents = ours(ck, "euler", steps=2, size=32, conds=(long, negative))
    assert torch.isfinite(latents).all()
    assert max_diff(latents, ours(ck, "euler", steps=2, size=32, conds=(positive, negative))) > FAR * ATOL


# --- preview ---------------------------------------------------------------------------------------------------------
def test_preview_is_an_rgb_image_at_latent_resolution():
    latents = torch.randn(2, 4, 8, 12, generator=torch.Generator().manual_seed(0))
    image = latent_preview(latents, "sd1")
    assert image.shape == (8, 12, 3) and image.dtype == np.uint8
    assert latent_preview(latents[0], "sd1").tolist() == image.tolist()
    other = latent_preview(torch.randn(1, 4, 8, 12, generator=torch.Generator().manual_seed(1)), "sd1")
    assert np.abs(other.astype(int) - image.astype(int)).max() > 50
    assert not np.array_equal(latent_preview(latents, "sdxl-base"), image)  # SDXL's own factors and bias
    # Zero latents are mid-grey, shifted by SDXL's bias.
    zero = torch.zeros(1, 4, 2, 2)
    assert latent_preview(zero, "sd2").tolist() == [[[128, 128, 128]] * 2] * 2
    assert latent_preview(zero, "sdxl").tolist()[0][0] == [141, 125, 127]


# --- one step: ComfyUI's first sigma (sigma_max), not diffusers' linspace timestep 0 ---------------------------------
class RecordingUnet(CountingUnet):
    """The UNet, recording the timestep and the standard deviation of the input of each forward pass."""

    def __init__(self, unet):
        super().__init__(unet)
        self.seen = []

    def forward(self, sample, timestep, *args, **kwargs):
        self.seen.append((float(timestep), sample.double().std().item()))
        return super().forward(sample, timestep, *args, **kwargs)


@pytest.mark.parametrize("sampler", ["euler", "euler_ancestral", "dpmpp_2m", "ddim", "lcm"])
def test_one_step_starts_from_sigma_max(models, sampler):
    """diffusers' linspace spacing puts a 1-step run at timestep 0 (sigma 0.03: the output stays noise, as 1-4 step
    models showed); ComfyUI's schedules start at sigma_max, the last training timestep, and so does sample()."""
    ck = models["sd1"]
    unet = RecordingUnet(ck.unet)
    scheduler = build_scheduler(ck.scheduler_config, sampler, "normal")
    positive, negative = prompts(ck)
    latents = sample(unet=unet, scheduler=scheduler, family=ck.family, positive=positive, negative=negative, seed=1,
                     steps=1, cfg=1.0, width=32, height=32)
    assert [t for t, _ in unet.seen] == [999.0]
    if hasattr(scheduler, "sigmas"):
        alphas_cumprod = scheduler.alphas_cumprod.double()
        sigma_max = ((1 - alphas_cumprod[-1]) / alphas_cumprod[-1]).sqrt().item()
        assert scheduler.sigmas[0].item() == pytest.approx(sigma_max, rel=1e-6) and sigma_max > 14
        assert scheduler.sigmas[-1].item() == 0.0
    # The UNet saw unit-variance noise: sigma_max noise, scaled by 1 / sqrt(sigma_max² + 1) (or VP noise for DDIM/LCM).
    assert unet.seen[0][1] == pytest.approx(1.0, abs=0.25)
    assert torch.isfinite(latents).all()


def test_one_step_equals_the_pipeline_given_the_same_scheduler(models):
    ck = models["sd1"]
    ref = reference(ck, diffusers.StableDiffusionPipeline, "euler", steps=1)
    assert_matches("SD1 Euler, 1 step", ours(ck, "euler", steps=1), ref,
                   reference(ck, diffusers.StableDiffusionPipeline, "euler", steps=1, seed=2))


# --- prompt editing: the text switches at the step AUTOMATIC1111 switches it --------------------------------------
def test_prompt_editing_switches_the_conditioning_at_its_step(models):
    """"[cat:dog:0.25]" at 4 steps is "cat" for steps 0-1 and "dog" for steps 2-3 (AUTOMATIC1111's rule: int(0.25 × 4)
    = 1, and its step counter is 1 at the first two steps). The reference runs the two texts as two partial runs
    chained (steps 0-1, then 2-3 without new noise), which equals one run exactly for Euler."""
    from nodegraph.models.prompt_encoder import encode_prompt

    ck = models["sd1"]

    def encode(text):
        return encode_prompt(text, family=ck.family, tokenizers=ck.tokenizers, text_encoders=ck.text_encoders)

    negative = encode("blurry")
    edited = encode("a photo of a [cat:dog:0.25] on a sofa")
    assert edited.is_scheduled

    def run(positive, **kwargs):
        return sample(unet=ck.unet, scheduler=build_scheduler(ck.scheduler_config, "euler", "normal"),
                      family=ck.family, positive=positive, negative=negative, seed=3, steps=4, cfg=5.0, width=32,
                      height=32, **kwargs)

    mine = run(edited)
    first = run(encode("a photo of a cat on a sofa"), end_step=2, leftover_noise=True)
    reference = run(encode("a photo of a dog on a sofa"), init_latents=first, start_step=2, add_noise=False)
    assert torch.allclose(mine, reference, atol=1e-5), (mine - reference).abs().max()
    only_cat = run(encode("a photo of a cat on a sofa"))
    assert (only_cat - reference).abs().max() > 100 * 1e-5  # the switch is visible: the test can fail
