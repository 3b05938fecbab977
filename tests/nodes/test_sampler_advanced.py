"""UNet Sampler (Advanced), ComfyUI's KSamplerAdvanced: a run split in two (the SDXL base → refiner pattern) equals
one UNet Sampler run; start/end steps, added noise and leftover noise land on the noise levels they name (checked
with an oracle "UNet" that predicts the exact noise of a zero image, so a latent is the noise times the sigma it is
at); and the inputs are validated."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from nodegraph.models.offline import ensure_offline

ensure_offline()

from nodegraph.core.errors import NodeError  # noqa: E402
from nodegraph.core.graph import Workflow  # noqa: E402
from nodegraph.core.validate import validate  # noqa: E402
from nodegraph.engine import Executor, RunSettings  # noqa: E402
from nodegraph.models.conditioning import Conditioning  # noqa: E402
from nodegraph.models.configs import load_config  # noqa: E402
from nodegraph.models.families import get_family  # noqa: E402
from nodegraph.models.sampling import sample  # noqa: E402
from nodegraph.models.schedulers import build_scheduler  # noqa: E402

pytestmark = [pytest.mark.filterwarnings("ignore:__array:DeprecationWarning"),
              pytest.mark.filterwarnings("ignore::FutureWarning")]

SEED = 3
SIZE = 64
#: Another seed must move the single run's latents by more than this (so equality could fail).
FAR = 1e-2


# --- graphs ----------------------------------------------------------------------------------------------------------
def graph(ckpt: str) -> Workflow:
    """Load Checkpoint, an empty latent and the two prompts, to add samplers to."""
    wf = Workflow()
    wf.add_node("LoadCheckpoint", "ckpt", inputs={"ckpt_name": ckpt})
    wf.add_node("EmptyLatentImage", "latent", inputs={"width": SIZE, "height": SIZE, "batch_size": 1})
    wf.add_node("CLIPTextEncode", "positive", inputs={"text": "a lighthouse at dusk"})
    wf.add_node("CLIPTextEncode", "negative", inputs={"text": "blurry"})
    wf.connect("ckpt", "CLIP", "positive", "clip")
    wf.connect("ckpt", "CLIP", "negative", "clip")
    return wf


def add_sampler(wf: Workflow, node_id: str, node_type: str, latent: tuple[str, str], **inputs) -> None:
    wf.add_node(node_type, node_id, inputs=inputs)
    for source, target in [(("ckpt", "MODEL"), "model"), (("positive", "CONDITIONING"), "positive"),
                           (("negative", "CONDITIONING"), "negative"), (latent, "latent_image")]:
        wf.connect(*source, node_id, target)


def advanced(**inputs) -> dict:
    """UNet Sampler (Advanced) inputs: ComfyUI's defaults, then `inputs`."""
    return {"add_noise": "enable", "noise_seed": SEED, "steps": 25, "cfg": 1.0, "sampler_name": "euler",
            "scheduler": "normal", "start_at_step": 0, "end_at_step": 10000, "return_with_leftover_noise": "disable",
            **inputs}


def run(wf: Workflow, registry, manager, tmp_path: Path, targets):
    settings = RunSettings(output_dir=tmp_path / "output", device="cpu", services={"models": manager})
    result = Executor(registry).run(wf, targets=list(targets), settings=settings)
    assert result.ok, (result.status, result.message, result.details, result.problems)
    return {node: result.outputs[node]["LATENT"] for node in targets}


def test_base_then_refiner_equals_one_run(models, node_registry, manager, tmp_path):
    """Steps 0-20 of 25 returned with leftover noise, then 20-25 without adding noise: one 25-step run, exactly."""
    wf = graph(models.name("sd1"))
    add_sampler(wf, "base", "UNetSamplerAdvanced", ("latent", "LATENT"),
                **advanced(end_at_step=20, return_with_leftover_noise="enable"))
    add_sampler(wf, "refiner", "UNetSamplerAdvanced", ("base", "LATENT"),
                **advanced(add_noise="disable", start_at_step=20))
    for node_id, seed in (("single", SEED), ("other_seed", SEED + 1)):
        add_sampler(wf, node_id, "UNetSampler", ("latent", "LATENT"), seed=seed, steps=25, cfg=1.0,
                    sampler_name="euler", scheduler="normal", denoise=1.0)
    out = run(wf, node_registry, manager, tmp_path, ["base", "refiner", "single", "other_seed"])
    split, single = out["refiner"].samples, out["single"].samples
    assert torch.equal(split, single), (split - single).abs().max()
    assert (out["other_seed"].samples - single).abs().max() > FAR
    # The base's latent is still noisy (sigma 0.61 at step 20 of 25); the finished one is not that far from it.
    assert out["base"].samples.std() > split.std() * 0.2
    assert out["refiner"].info.extra == (("Steps run", "20-25"),) and out["single"].info.extra == ()


def test_nothing_to_run_passes_the_latent_through(models, node_registry, manager, tmp_path):
    wf = graph(models.name("sd1"))
    add_sampler(wf, "base", "UNetSamplerAdvanced", ("latent", "LATENT"),
                **advanced(steps=4, end_at_step=2, return_with_leftover_noise="enable"))
    add_sampler(wf, "idle", "UNetSamplerAdvanced", ("base", "LATENT"), **advanced(steps=4, start_at_step=4))
    out = run(wf, node_registry, manager, tmp_path, ["base", "idle"])
    assert out["idle"] is out["base"]


def test_heun_split_equals_one_run(components):
    """A second-order sampler (two UNet passes a step) splits at a step boundary too."""
    ck = components("sd1")
    one = sample_sd1(ck, "heun", steps=6)
    base = sample_sd1(ck, "heun", steps=6, end_step=4, leftover_noise=True)
    assert torch.equal(sample_sd1(ck, "heun", steps=6, start_step=4, add_noise=False, init_latents=base), one)


def sample_sd1(ck, sampler, schedule="normal", **kwargs):
    positive, negative = (Conditioning(torch.randn(1, 77, ck.unet.config.cross_attention_dim,
                                                   generator=torch.Generator().manual_seed(s))) for s in (5, 6))
    return sample(unet=ck.unet, scheduler=build_scheduler(ck.scheduler_config, sampler, schedule), family=ck.family,
                  positive=positive, negative=negative, seed=SEED, cfg=5.0, width=SIZE, height=SIZE, **kwargs)


# --- where the noise is: an oracle UNet ------------------------------------------------------------------------------
class ZeroImageOracle(torch.nn.Module):
    """A stand-in UNet that predicts exactly the noise in its input when the clean image is zero: eps = input /
    sqrt(1 - ᾱ(t)) for both latent conventions (x0 + σ·ε scaled by 1/sqrt(1 + σ²), or sqrt(ᾱ)·x0 + sqrt(1 - ᾱ)·ε).
    Every step then lands exactly on (noise × the sigma it steps to), so a latent says which sigma it is at."""

    def __init__(self, scheduler_config):
        super().__init__()
        betas = torch.linspace(scheduler_config["beta_start"] ** 0.5, scheduler_config["beta_end"] ** 0.5,
                               scheduler_config["num_train_timesteps"], dtype=torch.float64) ** 2
        self.alphas_cumprod = torch.cumprod(1 - betas, 0)
        self.config = SimpleNamespace(in_channels=4, out_channels=4, time_cond_proj_dim=None,
                                      addition_embed_type=None)
        self.device, self.dtype = torch.device("cpu"), torch.float32

    def forward(self, sample, timestep, **kwargs):
        assert float(timestep) == round(float(timestep)), "the oracle needs whole training timesteps"
        alpha_cumprod = self.alphas_cumprod[int(round(float(timestep)))]
        return ((sample.double() / (1 - alpha_cumprod).sqrt()).float(),)


STEPS = 10  # linspace(0, 999, 10) and DPM++'s linspace(0, 999, 11) are whole timesteps


def oracle_run(sampler, **kwargs):
    config = load_config("sd1", "scheduler")
    conds = Conditioning(torch.zeros(1, 77, 8)), Conditioning(torch.zeros(1, 77, 8))
    scheduler = build_scheduler(config, sampler, "normal")
    latents = sample(unet=ZeroImageOracle(config), scheduler=scheduler, family=get_family("sd1"),
                     positive=conds[0], negative=conds[1], seed=SEED, steps=STEPS, cfg=1.0, width=SIZE,
                     height=SIZE, **kwargs)
    return latents.double(), scheduler


def noise() -> torch.Tensor:
    """The noise sample() draws first for SEED."""
    return torch.randn(1, 4, SIZE // 8, SIZE // 8, generator=torch.Generator("cpu").manual_seed(SEED)).double()


def sigma_after(sampler, step):
    """The sigma the schedule of `sampler` is at before `step` (its training sigma at that step's timestep)."""
    scheduler = build_scheduler(load_config("sd1", "scheduler"), sampler, "normal")
    scheduler.set_timesteps(STEPS)
    alpha_cumprod = scheduler.alphas_cumprod[int(scheduler.timesteps[step])].double()
    return ((1 - alpha_cumprod) / alpha_cumprod).sqrt().item()


def start_excess(sampler) -> float:
    """How far above its first sigma a run from pure noise starts: exactly there for the k-diffusion ports (noise ×
    sigma_max); diffusers starts the others from unit noise, a little more than sqrt(1 - ᾱ) at the first timestep
    (0.23% at timestep 999), i.e. at sigma × sqrt(1 + sigma²) / sigma in x0 + σ·ε terms."""
    if sampler in ("euler", "euler_ancestral", "heun", "lms"):
        return 1.0
    first = sigma_after(sampler, 0)
    return (1 + first**2) ** 0.5 / first


@pytest.mark.parametrize("sampler", ["euler", "dpmpp_2m", "ddim"])
def test_leftover_noise_is_at_the_end_steps_sigma(sampler):
    """Ending at step 6 of 10 with leftover noise hands on noise × sigma(step 6), in ComfyUI's x0 + σ·ε convention
    whatever the scheduler keeps (Euler: that; DPM++ 2M and DDIM: scaled by sqrt(ᾱ), converted back)."""
    latents, _ = oracle_run(sampler, end_step=6, leftover_noise=True)
    sigma = sigma_after(sampler, 6) * start_excess(sampler)
    assert torch.allclose(latents, noise() * sigma, rtol=1e-4, atol=1e-5), (latents / noise()).mean()
    assert latents.std().item() == pytest.approx(noise().std().item() * sigma, rel=1e-4)
    assert abs(sigma - sigma_after(sampler, 5)) > 0.1 and abs(sigma - sigma_after(sampler, 7)) > 0.1
    # The whole run ends on sigma 0 (DDIM on the first training sigma, 0.03).
    full, _ = oracle_run(sampler)
    assert full.abs().max() < (0.05 if sampler == "ddim" else 1e-4) * noise().abs().max()


@pytest.mark.parametrize("sampler", ["euler", "euler_ancestral", "dpmpp_2m", "heun", "lms"])
def test_ending_early_without_leftover_finishes_the_image(sampler):
    """ComfyUI sets the last sigma to 0 when it ends early without leftover noise: the oracle's image, 0."""
    latents, scheduler = oracle_run(sampler, end_step=6)
    assert latents.abs().max() < 1e-4
    assert scheduler.sigmas[-1] == 0 and len(torch.unique_consecutive(scheduler.sigmas)) == 7


@pytest.mark.parametrize("sampler", ["euler", "dpmpp_2m", "ddim"])
def test_start_step_adds_the_noise_at_its_sigma(sampler):
    """Noise added at step 3 (from a zero image) and the run stopped at step 7 with leftover noise: noise × sigma 7;
    that latent continued from step 7 without adding noise reaches 0 as the whole run does."""
    stopped, _ = oracle_run(sampler, start_step=3, end_step=7, leftover_noise=True)
    assert torch.allclose(stopped, noise() * sigma_after(sampler, 7), rtol=1e-4, atol=1e-5)
    first, _ = oracle_run(sampler, start_step=3, end_step=4, leftover_noise=True)
    assert torch.allclose(first, noise() * sigma_after(sampler, 4), rtol=1e-4, atol=1e-5)
    finished, _ = oracle_run(sampler, start_step=7, add_noise=False, init_latents=stopped.float())
    assert finished.abs().max() < (0.05 if sampler == "ddim" else 1e-4) * noise().abs().max()


def test_add_noise_disabled_starts_from_the_latent_as_given():
    """The input is taken to be at the start step's sigma already: nothing is added, and the oracle's steps scale it
    down to the next sigmas (here: the latent itself is the noise × sigma 5)."""
    given = noise() * sigma_after("euler", 5)
    latents, _ = oracle_run("euler", start_step=5, end_step=8, add_noise=False, leftover_noise=True,
                            init_latents=given.float())
    assert torch.allclose(latents, noise() * sigma_after("euler", 8), rtol=1e-4, atol=1e-5)


# --- inputs ----------------------------------------------------------------------------------------------------------
def test_sample_refuses_what_cannot_run():
    with pytest.raises(NodeError, match="leaves no step"):
        oracle_run("euler", start_step=6, end_step=6)
    with pytest.raises(NodeError, match="cannot end at step 6 of 10: PNDMScheduler runs whole"):
        oracle_run("pndm", end_step=6, leftover_noise=True)
    with pytest.raises(NodeError, match="cannot end at step 6 of 10"):
        oracle_run("ddim", end_step=6)
    with pytest.raises(ValueError, match="denoise"):
        oracle_run("euler", start_step=2, denoise=0.5, init_latents=torch.zeros(1, 4, 4, 4))


def test_inputs_are_comfyuis_and_validated(node_registry, models):
    node_def = node_registry.get("UNetSamplerAdvanced")
    assert node_def.display_name == "UNet Sampler (Advanced)"
    assert [spec.name for spec in node_def.inputs] == [
        "model", "positive", "negative", "latent_image", "add_noise", "noise_seed", "steps", "cfg", "sampler_name",
        "scheduler", "start_at_step", "end_at_step", "return_with_leftover_noise"]
    assert node_def.input("add_noise").choices == ("enable", "disable")
    assert node_def.input("return_with_leftover_noise").choices == ("disable", "enable")
    assert (node_def.input("end_at_step").default, node_def.input("start_at_step").max) == (10000, 10000)
    assert node_def.input("scheduler").choices == node_registry.get("UNetSampler").input("scheduler").choices

    def problems(**inputs):
        wf = graph(models.name("sd1"))
        add_sampler(wf, "s", "UNetSamplerAdvanced", ("latent", "LATENT"), **advanced(**inputs))
        return {(p.port, p.code): p.message for p in validate(wf, node_registry, require_output=False)
                if p.node_id == "s"}

    assert problems() == {}
    assert problems(start_at_step=30, end_at_step=10) == {}  # nothing to run: passes through, as in ComfyUI
    assert set(problems(add_noise="maybe")) == {("add_noise", "invalid_choice")}
    assert set(problems(start_at_step=-1)) == {("start_at_step", "out_of_range")}
    assert set(problems(return_with_leftover_noise="yes")) == {("return_with_leftover_noise", "invalid_choice")}
    assert set(problems(scheduler="linear_quadratic")) == {("scheduler", "invalid_choice")}
    assert "does not support the karras" in problems(sampler_name="euler_ancestral",
                                                     scheduler="karras")[("scheduler", "invalid_value")]
    early = problems(sampler_name="ddim", end_at_step=20)[("end_at_step", "invalid_value")]
    assert "ending at step 20 of 25" in early and "return_with_leftover_noise" in early
    assert problems(sampler_name="ddim", end_at_step=20, return_with_leftover_noise="enable") == {}
    assert problems(sampler_name="ddim", end_at_step=25) == {}
    assert "PLMS" in problems(sampler_name="pndm", end_at_step=20,
                              return_with_leftover_noise="enable")[("end_at_step", "invalid_value")]

