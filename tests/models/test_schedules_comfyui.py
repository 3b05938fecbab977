"""Every schedule against ComfyUI's formulas, computed here from the model's betas the way ComfyUI's
``ModelSamplingDiscrete`` and schedulers do (float64 betas and cumulative product, float32 sigmas, log sigma
interpolated between training timesteps), independently of nodegraph's code: the sigmas a scheduler built by
``build_scheduler`` steps through after ``set_timesteps(steps)`` must equal them at 1, 2, 4, 10 and 30 steps for the
SD 1.x and SDXL configs, wherever ``comfyui_difference`` does not say why they cannot; another step count or
schedule must move them far past the tolerance. The plain names (normal, karras, …) must stay what diffusers' own
schedulers give from 2 steps on, the reference of diffusers' pipelines."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats
import torch

from nodegraph.models.offline import ensure_offline

ensure_offline()

from nodegraph.models.configs import load_config  # noqa: E402
from nodegraph.models.schedulers import (  # noqa: E402
    SAMPLERS,
    SCHEDULES,
    build_scheduler,
    comfyui_difference,
    comfyui_name,
    comfyui_sigmas,
    schedule_problem,
    scheduler_overrides,
)

pytestmark = pytest.mark.filterwarnings("ignore:__array:DeprecationWarning")

FAMILIES = ("sd1", "sdxl-base")
STEPS = (1, 2, 4, 10, 30)
#: Relative tolerance: float32 training sigmas from a float32 (diffusers) or float64 (ComfyUI) cumulative product
#: differ by up to 9e-6, and diffusers' "linspace" interpolates sigma where ComfyUI interpolates log sigma (3.3e-5 at
#: 30 steps).
RTOL = 1e-4
#: Another step count or schedule must move the sigmas by at least this many tolerances.
FAR = 100


# --- ComfyUI's formulas, from the betas ------------------------------------------------------------------------------
def training_sigmas(config) -> torch.Tensor:
    """sqrt((1 - ᾱ) / ᾱ) per training timestep: betas and ᾱ in float64, then float32 (as ComfyUI registers them)."""
    assert config["beta_schedule"] == "scaled_linear"
    betas = np.linspace(config["beta_start"] ** 0.5, config["beta_end"] ** 0.5, config["num_train_timesteps"]) ** 2
    alphas_cumprod = torch.tensor(np.cumprod(1.0 - betas), dtype=torch.float32)
    return ((1 - alphas_cumprod) / alphas_cumprod) ** 0.5


def sigma_of_timestep(sigmas: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """sigma(t): log sigma linear between the neighbouring training timesteps."""
    t = t.float().clamp(0, len(sigmas) - 1)
    below, above, frac = t.floor().long(), t.ceil().long(), t - t.floor()
    return (sigmas.log()[below] * (1 - frac) + sigmas.log()[above] * frac).exp()


def comfyui(schedule: str, steps: int, sigmas: torch.Tensor) -> list[float]:
    """ComfyUI's sigma list (ending in 0) for a model with these training sigmas (for "comfyui_karras", ComfyUI's
    "karras", and so on)."""
    schedule = comfyui_name(schedule)
    top, bottom = len(sigmas) - 1, 0  # the timesteps whose sigmas are the largest and the smallest
    sigma_min, sigma_max = sigmas[0].item(), sigmas[-1].item()
    if schedule == "normal":
        levels = sigma_of_timestep(sigmas, torch.linspace(top, bottom, steps)).tolist()
    elif schedule == "sgm_uniform":
        levels = sigma_of_timestep(sigmas, torch.linspace(top, bottom, steps + 1)[:steps]).tolist()
    elif schedule == "karras":
        ramp = torch.linspace(0, 1, steps)
        levels = ((sigma_max ** (1 / 7) * (1 - ramp) + sigma_min ** (1 / 7) * ramp) ** 7).tolist()
    elif schedule == "exponential":
        levels = torch.linspace(math.log(sigma_max), math.log(sigma_min), steps).exp().tolist()
    elif schedule == "simple":
        levels = [sigmas[len(sigmas) - 1 - int(i * len(sigmas) / steps)].item() for i in range(steps)]
    elif schedule == "ddim_uniform":
        stride = max(len(sigmas) // steps, 1)
        levels = [sigmas[t].item() for t in range(1, len(sigmas), stride)][::-1]
    elif schedule == "beta":
        quantiles = 1 - np.arange(steps) / steps
        timesteps = np.rint(scipy.stats.beta.ppf(quantiles, 0.6, 0.6) * top).astype(int)
        levels = [sigmas[t].item() for i, t in enumerate(timesteps) if i == 0 or t != timesteps[i - 1]]
    elif schedule == "kl_optimal":
        # ComfyUI divides by steps - 1 and gets NaN at 1 step; the formula's value there is sigma_max.
        ramp = torch.arange(steps, dtype=torch.float32) / max(steps - 1, 1)
        levels = (ramp * math.atan(sigma_min) + (1 - ramp) * math.atan(sigma_max)).tan().tolist()
    else:
        raise AssertionError(schedule)
    return [*levels, 0.0]


# --- ours ------------------------------------------------------------------------------------------------------------
def ours(family: str, sampler: str, schedule: str, steps: int) -> list[float]:
    """The distinct sigmas, in order, the scheduler steps through (second-order classes repeat each one)."""
    scheduler = build_scheduler(load_config(family, "scheduler"), sampler, schedule)
    scheduler.set_timesteps(steps)
    if hasattr(scheduler, "sigmas"):
        return torch.unique_consecutive(scheduler.sigmas.double()).tolist()
    # DDIM, PLMS and LCM step through whole training timesteps.
    sigmas = training_sigmas(load_config(family, "scheduler"))
    return [sigmas[t].item() for t in torch.unique_consecutive(scheduler.timesteps)]


def relative_difference(mine: list[float], reference: list[float]) -> float:
    """max |a - b| / b over the nonzero reference sigmas (the zeros must match exactly); inf for other lengths."""
    if len(mine) != len(reference):
        return math.inf
    a, b = np.array(mine), np.array(reference)
    if not np.array_equal(a[b == 0], b[b == 0]):
        return math.inf
    return float(np.max(np.abs(a - b)[b > 0] / b[b > 0]))


SUPPORTED = [(sampler, schedule) for sampler in SAMPLERS for schedule in SCHEDULES
             if schedule_problem(sampler, schedule) is None]
EXACT = [pair for pair in SUPPORTED if comfyui_difference(*pair) is None]
#: The schedules that follow ComfyUI on Euler: its own names, and comfyui_* where the plain name is diffusers'.
COMFYUI_SCHEDULES = [schedule for schedule in SCHEDULES if comfyui_difference("euler", schedule) is None]
#: The plain names that are diffusers' computation from 2 steps on.
DIFFUSERS_SCHEDULES = ["normal", "karras", "exponential", "sgm_uniform", "beta"]


# --- tests -----------------------------------------------------------------------------------------------------------
def test_every_comfyui_schedule_has_a_name_that_follows_comfyui_on_euler():
    assert {comfyui_name(schedule) for schedule in COMFYUI_SCHEDULES} == {
        "normal", "karras", "exponential", "sgm_uniform", "beta", "simple", "ddim_uniform", "kl_optimal"}


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("schedule", COMFYUI_SCHEDULES)
def test_euler_steps_through_comfyuis_sigmas(family, schedule):
    reference = training_sigmas(load_config(family, "scheduler"))
    worst = 0.0
    for steps in STEPS:
        mine, theirs = ours(family, "euler", schedule, steps), comfyui(schedule, steps, reference)
        difference = relative_difference(mine, theirs)
        assert difference <= RTOL, (steps, mine, theirs)
        worst = max(worst, difference)
    print(f"\n[max relative sigma difference] {family} euler {schedule}: {worst:.2g}")


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize(("sampler", "schedule"), EXACT)
def test_samplers_comfyui_does_not_flag_step_through_its_sigmas(family, sampler, schedule):
    reference = training_sigmas(load_config(family, "scheduler"))
    for steps in STEPS:
        mine, theirs = ours(family, sampler, schedule, steps), comfyui(schedule, steps, reference)
        assert relative_difference(mine, theirs) <= RTOL, (steps, mine, theirs)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize(("sampler", "schedule"), SUPPORTED)
def test_one_step_starts_where_comfyui_starts(family, sampler, schedule):
    """At 1 step every sampler takes ComfyUI's first sigma: sigma_max (ddim_uniform's is the second training sigma),
    where diffusers' linspace spacing gives timestep 0 and leaves the image noise."""
    reference = training_sigmas(load_config(family, "scheduler"))
    first = comfyui(schedule, 1, reference)[0]
    assert ours(family, sampler, schedule, 1)[0] == pytest.approx(first, rel=RTOL)
    assert first == pytest.approx(reference[-1].item() if schedule != "ddim_uniform" else reference[1].item())


def test_the_comparison_can_fail():
    """ComfyUI's sigmas for another step count (cut to the same length) or another schedule are far past the
    tolerance from ours; only simple and sgm_uniform are near twins (whole vs fractional timesteps, 2.8e-3 apart)."""
    reference = training_sigmas(load_config("sd1", "scheduler"))
    for schedule in COMFYUI_SCHEDULES:
        for steps in STEPS[1:]:
            mine = ours("sd1", "euler", schedule, steps)
            one_more = comfyui(schedule, steps + 1, reference)[:steps] + [0.0]
            assert relative_difference(mine, one_more) > FAR * RTOL, (schedule, steps)
            for other in COMFYUI_SCHEDULES:
                twins = {comfyui_name(schedule), comfyui_name(other)} == {"simple", "sgm_uniform"}
                far = 10 * RTOL if twins else FAR * RTOL
                if other != schedule and steps > 2:
                    assert relative_difference(mine, comfyui(other, steps, reference)) > far, (schedule, other, steps)


def test_samplers_that_keep_diffusers_schedules_say_why():
    flagged = {pair: comfyui_difference(*pair) for pair in SUPPORTED if comfyui_difference(*pair)}
    for (sampler, _), reason in flagged.items():
        assert SAMPLERS[sampler].label in reason and "\n" not in reason, reason
    assert "leading" in flagged[("ddim", "normal")]
    assert "999, 749, 500, 250" in flagged[("dpmpp_2m", "normal")]
    assert "drops the second to last" in flagged[("dpm_2", "comfyui_karras")]
    assert "comfyui_normal is ComfyUI's" in flagged[("euler", "normal")]
    assert ("euler", "comfyui_normal") not in flagged and ("dpmpp_2m", "karras") not in flagged
    # What a flagged pair differs in is real: DPM++ 2M's normal at 4 steps is not ComfyUI's.
    reference = training_sigmas(load_config("sd1", "scheduler"))
    assert relative_difference(ours("sd1", "dpmpp_2m", "normal", 4), comfyui("normal", 4, reference)) > FAR * RTOL


def test_comfyui_sigmas_is_comfyuis_formula_for_every_schedule():
    """The module's own formula (what the scheduler is handed) against this file's, on ComfyUI's training sigmas
    (this file computes in float32 as ComfyUI does, the module in float64)."""
    reference = training_sigmas(load_config("sd1", "scheduler"))
    for schedule in COMFYUI_SCHEDULES:
        schedule = comfyui_name(schedule)
        for steps in (*STEPS, 150):
            mine = comfyui_sigmas(schedule, steps, reference.numpy()).tolist()
            assert relative_difference(mine, comfyui(schedule, steps, reference)) <= 1e-5, (schedule, steps)
    assert len(comfyui_sigmas("ddim_uniform", 30, reference.numpy())) == 32  # ComfyUI's takes a step more here
    assert len(comfyui_sigmas("beta", 150, reference.numpy())) == 150  # … and its beta drops a repeated timestep
    with pytest.raises(ValueError, match="unknown schedule"):
        comfyui_sigmas("linear_quadratic", 4, reference.numpy())


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize(("sampler", "schedule"), [pair for pair in SUPPORTED if pair[1] in DIFFUSERS_SCHEDULES])
def test_plain_names_are_what_diffusers_schedulers_give_from_two_steps_on(family, sampler, schedule):
    """The reference of diffusers' pipelines: the stock diffusers class, from the family's config with the flags the
    schedule names (no nodegraph subclass), steps through the very same timesteps and sigmas."""
    import diffusers

    config = load_config(family, "scheduler")
    for steps in STEPS[1:]:
        mine = build_scheduler(config, sampler, schedule)
        mine.set_timesteps(steps)
        stock = getattr(diffusers, SAMPLERS[sampler].class_name).from_config(
            config, **scheduler_overrides(config, sampler, schedule))
        stock.set_timesteps(steps)
        assert torch.equal(mine.timesteps, stock.timesteps), (steps, mine.timesteps, stock.timesteps)
        if hasattr(stock, "sigmas"):
            assert torch.equal(mine.sigmas, stock.sigmas), steps


def test_plain_names_equal_comfyuis_under_the_sd1_config_for_euler():
    """Under SD 1.x's linspace spacing diffusers' normal, karras and exponential are ComfyUI's (sgm_uniform and beta
    are not: diffusers rounds the one and takes AUTOMATIC1111's formula for the other)."""
    reference = training_sigmas(load_config("sd1", "scheduler"))
    for schedule in ("normal", "karras", "exponential"):
        for steps in STEPS:
            assert relative_difference(ours("sd1", "euler", schedule, steps),
                                       comfyui(schedule, steps, reference)) <= RTOL, (schedule, steps)
    assert relative_difference(ours("sdxl-base", "euler", "normal", 4),
                               comfyui("normal", 4, training_sigmas(load_config("sdxl-base", "scheduler")))) > 0.1
