"""Samplers and schedules by their AUTOMATIC1111 / ComfyUI names, built as diffusers schedulers.

A *sampler* (``euler``, ``dpmpp_2m``, …) picks a diffusers scheduler class plus a few config overrides; a *schedule*
(``normal``, ``karras``, …) picks the noise levels (sigmas) it steps through. :func:`build_scheduler` swaps the model
family's bundled scheduler config onto the chosen class exactly as a diffusers user swaps a pipeline's scheduler::

    scheduler = EulerDiscreteScheduler.from_config(pipe.scheduler.config)                     # "normal"
    scheduler = DPMSolverMultistepScheduler.from_config(pipe.scheduler.config, use_karras_sigmas=True)  # "karras"

The class it returns is a thin subclass of the diffusers class (same name, same config) whose ``set_timesteps(steps)``
produces the schedule, so a diffusers pipeline handed that scheduler runs the same steps as
:func:`nodegraph.models.sampling.sample`.

Schedules carry ComfyUI's names and follow ComfyUI's formulas (``comfy/samplers.py``; :func:`comfyui_sigmas` computes
them from the model's training sigmas) at every step count wherever the diffusers class lets them. Who gives the
sigmas (docs/schedules.md has the full table):

- **diffusers, unchanged** where its own computation already is ComfyUI's formula, so results stay bit for bit those
  of diffusers' pipelines: ``normal`` from 2 steps on for the k-diffusion ports (Euler, Euler a, Heun, DPM2, DPM2 a,
  LMS, DPM++ SDE) under a config with diffusers' "linspace" spacing (SD 1.x / 2.x); ``karras`` and ``exponential``
  (diffusers' formulas, with the model's full sigma range as ComfyUI takes it — diffusers takes the ends of its
  spaced timesteps, which differ at 1 step and under SDXL's "leading" spacing). linspace interpolates sigma linearly
  between training timesteps where ComfyUI interpolates log sigma: at most 3.3e-5 relative at 30 steps.
- **ComfyUI's list, handed to the class** everywhere else it can take one (Euler through ``sigmas=``, Euler a by
  setting its sigmas, the other classes with sigma-shape flags through their own Karras code path): ``normal`` at 1
  step (diffusers' linspace gives timestep 0, sigma 0.03: the image stays noise) or under another spacing (SDXL's
  "leading"), ``sgm_uniform`` (diffusers' "trailing" rounds to whole timesteps), ``beta`` (ComfyUI's beta-distributed
  training timesteps; diffusers' ``use_beta_sigmas`` is AUTOMATIC1111's formula, which spaces sigma itself),
  ``simple``, ``ddim_uniform`` and ``kl_optimal``.
- **diffusers' own schedule** where the class keeps it (:func:`comfyui_difference` says how it differs): ``normal``
  from 2 steps on for the multistep solvers (DPM++ 2M (SDE), UniPC, DEIS: their own spacing), DDIM and PLMS
  ("leading"); everything on DDIM, PLMS, DEIS and LCM, whose classes step through whole training timesteps or cannot
  end on sigma 0 (simple, ddim_uniform and kl_optimal are refused there). At 1 step every sampler starts from
  sigma_max, as ComfyUI does. ComfyUI also computes a step more and drops the second-to-last sigma for DPM2, DPM2 a
  and UniPC; here the schedule does not depend on the sampler.

ComfyUI's ``linear_quadratic`` (made for Mochi's flow-matching model) is not offered.

This module imports neither torch nor diffusers (nor numpy) at import time (node declarations and validation read
it); the scheduler class is imported only when one is built.
"""

from __future__ import annotations

import functools
import importlib.util
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from nodegraph.models.offline import import_diffusers

#: Schedule name (ComfyUI's) → what users read after the sampler's label ("" for normal, as AUTOMATIC1111 writes it).
SCHEDULES: dict[str, str] = {
    "normal": "",
    "karras": "Karras",
    "exponential": "Exponential",
    "sgm_uniform": "SGM Uniform",
    "beta": "Beta",
    "simple": "Simple",
    "ddim_uniform": "DDIM",
    "kl_optimal": "KL Optimal",
    "comfyui_normal": "Normal (ComfyUI)",
    "comfyui_karras": "Karras (ComfyUI)",
    "comfyui_exponential": "Exponential (ComfyUI)",
    "comfyui_sgm_uniform": "SGM Uniform (ComfyUI)",
    "comfyui_beta": "Beta (ComfyUI)",
}

#: The prefix of the schedules that follow ComfyUI's formula where the plain name follows diffusers'.
COMFYUI_PREFIX = "comfyui_"

#: Schedules that switch on a sigma-shape flag of the scheduler config (they are mutually exclusive in diffusers).
_SIGMA_FLAGS: dict[str, str] = {
    "karras": "use_karras_sigmas",
    "exponential": "use_exponential_sigmas",
    "beta": "use_beta_sigmas",
}

_ALL = frozenset(SCHEDULES)
_SPACING_ONLY = frozenset({"normal", "sgm_uniform"})
#: Schedules that only exist as a sigma list: classes that cannot take one do not run them.
_SIGMA_LIST_ONLY = frozenset({"simple", "ddim_uniform", "kl_optimal"} | {s for s in SCHEDULES
                                                                       if s.startswith(COMFYUI_PREFIX)})

#: ComfyUI's beta schedule's shape parameters (``beta_scheduler``'s defaults).
BETA_ALPHA = BETA_BETA = 0.6


@dataclass(frozen=True)
class SamplerSpec:
    """One sampler.

    Args:
        label: the AUTOMATIC1111 name ("DPM++ 2M").
        class_name: the diffusers scheduler class.
        overrides: config values set on top of the family's scheduler config.
        schedules: the schedules this class runs.
        requires: Python modules the class needs beyond diffusers (checked before building).
        sigma_input: how a sigma list reaches the class: "sigmas" (``set_timesteps(sigmas=…)``), "state" (its sigmas
            and timesteps are set after diffusers' own ``set_timesteps``), "flags" (through its Karras code path, the
            one place each class turns an arbitrary sigma list into its own step layout), or "" (the class keeps
            diffusers' own schedules: it steps through whole training timesteps, or cannot end on sigma 0).
        linspace_is_normal: diffusers' "linspace" spacing on this class is ComfyUI's "normal" (the k-diffusion
            ports; the multistep solvers space timesteps their own way).
    """

    label: str
    class_name: str
    overrides: Mapping[str, Any] = field(default_factory=dict)
    schedules: frozenset[str] = _ALL
    requires: tuple[str, ...] = ()
    sigma_input: str = "flags"
    linspace_is_normal: bool = True


_TIMESTEPS_ONLY: dict[str, Any] = {"sigma_input": "", "linspace_is_normal": False}

SAMPLERS: dict[str, SamplerSpec] = {
    "euler": SamplerSpec("Euler", "EulerDiscreteScheduler", sigma_input="sigmas"),
    # diffusers' ancestral Euler has no sigma-shape flags.
    "euler_ancestral": SamplerSpec("Euler a", "EulerAncestralDiscreteScheduler",
                                   schedules=_SPACING_ONLY | _SIGMA_LIST_ONLY, sigma_input="state"),
    "heun": SamplerSpec("Heun", "HeunDiscreteScheduler"),
    "dpm_2": SamplerSpec("DPM2", "KDPM2DiscreteScheduler"),
    "dpm_2_ancestral": SamplerSpec("DPM2 a", "KDPM2AncestralDiscreteScheduler"),
    "lms": SamplerSpec("LMS", "LMSDiscreteScheduler"),
    "dpmpp_2m": SamplerSpec("DPM++ 2M", "DPMSolverMultistepScheduler",
                            {"algorithm_type": "dpmsolver++", "solver_order": 2}, linspace_is_normal=False),
    "dpmpp_2m_sde": SamplerSpec("DPM++ 2M SDE", "DPMSolverMultistepScheduler",
                                {"algorithm_type": "sde-dpmsolver++", "solver_order": 2}, linspace_is_normal=False),
    # Its Brownian-tree noise needs torchsde; sample() seeds the tree with the node's seed.
    "dpmpp_sde": SamplerSpec("DPM++ SDE", "DPMSolverSDEScheduler", requires=("torchsde",)),
    "ddim": SamplerSpec("DDIM", "DDIMScheduler", schedules=_SPACING_ONLY, **_TIMESTEPS_ONLY),
    # AUTOMATIC1111's PLMS starts with lower-order multistep updates, not Runge-Kutta warm-up steps.
    "pndm": SamplerSpec("PLMS", "PNDMScheduler", {"skip_prk_steps": True}, schedules=_SPACING_ONLY,
                        **_TIMESTEPS_ONLY),
    # diffusers' default corrector, bh2 (ComfyUI's "uni_pc_bh2"); its bh1 (ComfyUI's "uni_pc") gives NaN on the
    # last step to sigma 0, so it is not offered.
    "uni_pc": SamplerSpec("UniPC", "UniPCMultistepScheduler", linspace_is_normal=False),
    # DEIS cannot step to sigma 0, so it ends every list it is handed on that list's last nonzero sigma (0.7 for
    # sgm_uniform at 4 steps): it keeps diffusers' own schedules, which end on the smallest training sigma.
    "deis": SamplerSpec("DEIS", "DEISMultistepScheduler", schedules=_ALL - _SIGMA_LIST_ONLY, **_TIMESTEPS_ONLY),
    # LCM computes its own timesteps from the distillation schedule: no other spacing applies.
    "lcm": SamplerSpec("LCM", "LCMScheduler", schedules=frozenset({"normal"}), **_TIMESTEPS_ONLY),
}

#: ComfyUI's KSampler computes one step more for these and drops the second-to-last sigma.
_COMFY_DISCARDS_PENULTIMATE = frozenset({"dpm_2", "dpm_2_ancestral", "uni_pc"})
#: Samplers whose class defaults to diffusers' "leading" spacing (the SD configs do not set one).
_LEADING_SPACING = frozenset({"ddim", "pndm"})


def label(sampler_name: str, schedule: str = "normal") -> str:
    """What AUTOMATIC1111 users read: ``label("dpmpp_2m", "karras")`` → "DPM++ 2M Karras", ``label("euler_ancestral")``
    → "Euler a". Unknown names are returned as given."""
    spec = SAMPLERS.get(sampler_name)
    name = spec.label if spec else sampler_name
    suffix = SCHEDULES.get(schedule, schedule)
    return f"{name} {suffix}" if suffix else name


def comfyui_name(schedule: str) -> str:
    """ComfyUI's name of a schedule: "comfyui_karras" → "karras"; other names are ComfyUI's already."""
    return schedule[len(COMFYUI_PREFIX):] if schedule.startswith(COMFYUI_PREFIX) else schedule


def schedule_problem(sampler_name: str, schedule: str) -> str | None:
    """Why `sampler_name` with `schedule` cannot run here, as a message for the user; None when it can.

    Covers unknown names, combinations the diffusers class cannot run (e.g. Euler a with Karras, DDIM with a schedule
    that exists only as a sigma list), and missing optional packages (torchsde for DPM++ SDE, scipy for the beta
    schedule). Imports nothing heavy.
    """
    spec = SAMPLERS.get(sampler_name)
    if spec is None:
        return f"unknown sampler {sampler_name!r}; known: {', '.join(SAMPLERS)}"
    if schedule not in SCHEDULES:
        return f"unknown schedule {schedule!r}; known: {', '.join(SCHEDULES)}"
    if schedule not in spec.schedules:
        supported = ", ".join(s for s in SCHEDULES if s in spec.schedules)
        return (f"the {spec.label} sampler does not support the {schedule} schedule "
                f"(supported: {supported}); pick another schedule or sampler")
    missing = [module for module in spec.requires if importlib.util.find_spec(module) is None]
    if schedule == "beta" and importlib.util.find_spec("scipy") is None:
        missing.append("scipy")
    if missing:
        return (f"{label(sampler_name, schedule)} needs the Python package{'s' if len(missing) > 1 else ''} "
                f"{', '.join(missing)}, which is not installed")
    return None


def comfyui_difference(sampler_name: str, schedule: str) -> str | None:
    """How the sigmas `sampler_name` steps through with `schedule` differ from ComfyUI's KSampler with the same names,
    as one sentence; None where they are ComfyUI's (within 1e-4 relative, at every step count).

    Only the schedule is compared: a diffusers solver and ComfyUI's of the same name may also differ in their update
    rule (ComfyUI's ``ddim`` is its Euler, for one). For an importer's warnings and the docs; None for combinations
    :func:`schedule_problem` refuses.
    """
    spec = SAMPLERS.get(sampler_name)
    if spec is None or schedule not in spec.schedules:
        return None
    reasons = []
    if schedule == "normal" and sampler_name == "lcm":
        reasons.append("LCM steps through its own distillation timesteps (999, 759, 499, 259 at 4 steps)")
    elif schedule == "normal" and sampler_name in _LEADING_SPACING:
        reasons.append(f"diffusers' {spec.label} spaces normal's timesteps as 1 + k * (1000 // steps) (the "
                       "'leading' spacing of the SD configs) where ComfyUI takes linspace(999, 0, steps), from 2 steps "
                       "on")
    elif schedule == "normal" and not spec.linspace_is_normal:
        reasons.append(f"diffusers' {spec.label} spaces normal's timesteps its own way (999, 749, 500, 250 at 4 steps "
                       "under the SD 1.x/2.x configs, 801, 601, 401, 201 under SDXL's) where ComfyUI takes "
                       "linspace(999, 0, steps), from 2 steps on; comfyui_normal is ComfyUI's")
    elif schedule in ("normal", "karras", "exponential") and spec.sigma_input and spec.linspace_is_normal:
        # The k-diffusion ports take karras / exponential over their spaced timesteps; the multistep solvers over
        # all training sigmas, as ComfyUI does.
        reasons.append(f"{spec.label}'s {schedule} is diffusers' own computation from 2 steps on (what diffusers' "
                       "pipelines run): ComfyUI's under the SD 1.x/2.x configs' linspace spacing, not under SDXL's "
                       f"leading spacing (751, 501, 251, 1 at 4 steps); comfyui_{schedule} is ComfyUI's")
    elif schedule == "sgm_uniform":
        reasons.append(f"diffusers' {spec.label} rounds sgm_uniform's timesteps to whole training timesteps "
                       "('trailing' spacing)" + ("; comfyui_sgm_uniform is ComfyUI's" if spec.sigma_input else ""))
    elif schedule == "beta":
        reasons.append(f"diffusers' {spec.label} takes AUTOMATIC1111's beta schedule (sigma itself spaced by the "
                       "beta quantiles), not ComfyUI's (beta-spaced training timesteps)"
                       + ("; comfyui_beta is ComfyUI's" if spec.sigma_input else ""))
    if sampler_name in _LEADING_SPACING:
        reasons.append(f"{spec.label} ends on the first training sigma (0.03), not 0")
    if sampler_name == "deis":
        reasons.append("DEIS ends on the smallest sigma, not 0")
    if sampler_name in _COMFY_DISCARDS_PENULTIMATE:
        reasons.append(f"ComfyUI's KSampler computes steps + 1 sigmas for {spec.label} and drops the second to last")
    return "; ".join(reasons) or None


def scheduler_overrides(family_scheduler_config: Mapping[str, Any], sampler_name: str,
                        schedule: str) -> dict[str, Any]:
    """The config values :func:`build_scheduler` passes to ``from_config`` on top of the family's config."""
    spec = SAMPLERS[sampler_name]
    overrides = dict(spec.overrides)
    if _SIGMA_FLAGS.keys() & spec.schedules:
        # Exactly one sigma-shape flag on (or none for the other schedules); leave untouched flags alone when the
        # family's config does not set them, so "normal" stays a plain from_config.
        flagged = comfyui_name(schedule) if comfyui_name(schedule) in ("karras", "exponential") else schedule
        for name, flag in _SIGMA_FLAGS.items():
            if name == flagged:
                overrides[flag] = True
            elif family_scheduler_config.get(flag):
                overrides[flag] = False
    if schedule == "sgm_uniform":
        overrides["timestep_spacing"] = "trailing"
    return overrides


def build_scheduler(family_scheduler_config: Mapping[str, Any], sampler_name: str, schedule: str = "normal") -> Any:
    """A fresh diffusers scheduler for `sampler_name` and `schedule` from a family's scheduler config.

    `family_scheduler_config` is the bundled diffusers config of the model family (``LoadedCheckpoint.
    scheduler_config``): its training schedule (betas) and prediction type (epsilon or v) carry over to any sampler.
    The scheduler is an instance of a subclass of the diffusers class whose ``set_timesteps(steps)`` gives the
    schedule as the module docstring describes. Raises ValueError with :func:`schedule_problem`'s message for an
    unsupported combination.
    """
    problem = schedule_problem(sampler_name, schedule)
    if problem:
        raise ValueError(problem)
    return _scheduler_class(sampler_name, schedule).from_config(
        dict(family_scheduler_config), **scheduler_overrides(family_scheduler_config, sampler_name, schedule))


def early_end_problem(sampler_name: str, leftover_noise: bool) -> str | None:
    """Why `sampler_name` cannot stop before the last step of its schedule (ComfyUI's KSamplerAdvanced
    ``end_at_step``), with or without `leftover_noise`, as a message for the user; None when it can."""
    spec = SAMPLERS.get(sampler_name)
    if spec is None:
        return None
    if sampler_name == "pndm":
        return ("the PLMS sampler runs whole schedules only (its first step takes two UNet passes); end at the last "
                "step or pick another sampler")
    if not leftover_noise and not spec.sigma_input:
        return (f"the {spec.label} sampler cannot end early on sigma 0 (diffusers' class takes no shortened "
                "schedule); enable return_with_leftover_noise, end at the last step, or pick another sampler")
    return None


def end_at_zero(scheduler: Any, last_step: int, device: Any = None) -> None:
    """Cut the schedule of `scheduler` (built by :func:`build_scheduler`, after ``set_timesteps``) to its first
    `last_step` steps, the last of them going to sigma 0: what ComfyUI's KSamplerAdvanced does when it ends early
    without leftover noise. The steps before keep their sigmas; their timesteps are recomputed from them (equal to
    float rounding). Raises ValueError for samplers :func:`early_end_problem` refuses."""
    import numpy as np
    import torch

    if not getattr(scheduler, "sigma_input", ""):
        raise ValueError(f"{type(scheduler).__name__} cannot end its schedule early on sigma 0")
    # Second-order classes repeat each sigma for their second pass; the schedule is the distinct ones.
    sigmas = torch.unique_consecutive(scheduler.sigmas.double()).numpy()
    if not 0 < last_step < len(sigmas) - 1:
        raise ValueError(f"step {last_step} is not inside the {len(sigmas) - 1}-step schedule")
    scheduler._install(np.append(sigmas[:last_step], 0.0), device)


# --- ComfyUI's schedules ---------------------------------------------------------------------------------------------
def comfyui_sigmas(schedule: str, steps: int, training_sigmas: Any) -> Any:
    """ComfyUI's sigmas for `schedule` at `steps` steps: a float64 numpy array, first the noise levels to step from,
    then the final 0. Usually ``steps + 1`` values; ComfyUI's beta drops repeated timesteps (from about 150 steps)
    and its ddim_uniform can take a step more (31 at 30 steps).

    `training_sigmas` are the model's noise levels at its training timesteps 0…T-1, ascending
    (``((1 - alphas_cumprod) / alphas_cumprod) ** 0.5``); ComfyUI's sigma_min and sigma_max are its first and last.
    Between training timesteps sigma is interpolated linearly in log sigma, as ComfyUI's ``ModelSamplingDiscrete``
    does. kl_optimal at 1 step gives sigma_max (ComfyUI divides 0 by 0 there and gets NaN).
    """
    import numpy as np

    if steps < 1:
        raise ValueError(f"steps must be at least 1, not {steps}")
    sigmas = np.asarray(training_sigmas, dtype=np.float64)
    count = len(sigmas)
    sigma_min, sigma_max = float(sigmas[0]), float(sigmas[-1])
    if schedule in ("normal", "sgm_uniform"):
        log_sigmas = np.log(sigmas)

        def sigma_at(timesteps: Any) -> Any:
            t = np.clip(timesteps, 0, count - 1)
            low, high = np.floor(t).astype(int), np.ceil(t).astype(int)
            w = t - low
            return np.exp((1 - w) * log_sigmas[low] + w * log_sigmas[high])

        # ComfyUI spaces from the timestep nearest sigma_max (the last) to the one nearest sigma_min (the first).
        first, last = count - 1, 0
        if schedule == "sgm_uniform":
            return np.append(sigma_at(np.linspace(first, last, steps + 1)[:-1]), 0.0)
        if abs(sigma_at(np.array(last))) < 1e-5:  # a zero-terminal-SNR model already ends at 0
            return sigma_at(np.linspace(first, last, steps + 1))
        return np.append(sigma_at(np.linspace(first, last, steps)), 0.0)
    if schedule == "karras":
        rho = 7.0
        ramp = np.linspace(0, 1, steps)
        max_inv, min_inv = sigma_max ** (1 / rho), sigma_min ** (1 / rho)
        return np.append((max_inv + ramp * (min_inv - max_inv)) ** rho, 0.0)
    if schedule == "exponential":
        return np.append(np.exp(np.linspace(np.log(sigma_max), np.log(sigma_min), steps)), 0.0)
    if schedule == "simple":
        stride = count / steps
        return np.array([sigmas[-(1 + int(i * stride))] for i in range(steps)] + [0.0])
    if schedule == "ddim_uniform":
        stride = max(count // (steps + 1 if abs(sigmas[1]) < 1e-5 else steps), 1)
        picked = [float(sigmas[t]) for t in range(1, count, stride)]
        return np.array(picked[::-1] + ([] if abs(sigmas[1]) < 1e-5 else [0.0]))
    if schedule == "beta":
        from scipy.stats import beta

        quantiles = 1 - np.linspace(0, 1, steps, endpoint=False)
        timesteps = np.rint(beta.ppf(quantiles, BETA_ALPHA, BETA_BETA) * (count - 1)).astype(int)
        kept = [t for i, t in enumerate(timesteps) if i == 0 or t != timesteps[i - 1]]
        return np.append(sigmas[kept], 0.0)
    if schedule == "kl_optimal":
        ramp = np.arange(steps) / max(steps - 1, 1)
        return np.append(np.tan(ramp * np.arctan(sigma_min) + (1 - ramp) * np.arctan(sigma_max)), 0.0)
    raise ValueError(f"unknown schedule {schedule!r}; known: {', '.join(SCHEDULES)}")


# --- the scheduler subclass ------------------------------------------------------------------------------------------
class _Schedule:
    """Put in front of a diffusers scheduler class by :func:`_scheduler_class`: ``set_timesteps(steps)`` gives the
    class attribute `schedule`'s sigmas as the module docstring describes; everything else is the diffusers class."""

    schedule = "normal"
    sigma_input = "flags"
    linspace_is_normal = True
    _pending_sigmas: Any = None
    _full_range = False

    def set_timesteps(self, num_inference_steps: int | None = None, device: Any = None, *args: Any,
                      **kwargs: Any) -> None:
        """diffusers' ``set_timesteps`` for `num_inference_steps` steps of this scheduler's schedule (calls with more
        arguments, such as custom ``timesteps`` / ``sigmas``, go to diffusers untouched)."""
        if num_inference_steps is None or args or kwargs:
            super().set_timesteps(num_inference_steps, device, *args, **kwargs)
            return
        # ComfyUI's karras / exponential span the model's whole sigma range; diffusers' span its spaced timesteps,
        # which is the same under SD 1.x/2.x's "linspace" spacing but not under SDXL's "leading" one, nor at 1 step.
        self._full_range = self.schedule.startswith(COMFYUI_PREFIX) or num_inference_steps == 1
        how = _how(self.schedule, num_inference_steps, self.sigma_input)
        if how == "diffusers":
            super().set_timesteps(num_inference_steps, device=device)
        elif how == "trailing":
            with _config_values(self, timestep_spacing="trailing"):
                super().set_timesteps(num_inference_steps, device=device)
        else:
            self._install(comfyui_sigmas(comfyui_name(self.schedule), num_inference_steps, self._training_sigmas()),
                          device)

    def _install(self, sigmas: Any, device: Any) -> None:
        """Make the class step through `sigmas` (ending in 0), laid out as the class lays out its own."""
        import numpy as np
        import torch

        steps = len(sigmas) - 1
        if self.sigma_input == "sigmas":
            super().set_timesteps(sigmas=sigmas, device=device)
        elif self.sigma_input == "flags":
            self._pending_sigmas = np.asarray(sigmas[:-1])
            try:
                with _config_values(self, use_karras_sigmas=True, use_exponential_sigmas=False,
                                    use_beta_sigmas=False):
                    super().set_timesteps(steps, device=device)
            finally:
                self._pending_sigmas = None
        else:
            super().set_timesteps(steps, device=device)
            # A timestep per sigma, interpolating log sigma between training timesteps (as diffusers' Euler does).
            log_sigmas = np.log(self._training_sigmas().astype(np.float64))
            timesteps = np.interp(np.log(sigmas[:-1]), log_sigmas, np.arange(len(log_sigmas)))
            self.sigmas = torch.from_numpy(np.asarray(sigmas, dtype=np.float32))
            self.timesteps = torch.from_numpy(timesteps.astype(np.float32)).to(device=device)

    def _training_sigmas(self) -> Any:
        """The training sigmas as diffusers computes them (float32, ascending)."""
        import numpy as np

        return np.array(((1 - self.alphas_cumprod) / self.alphas_cumprod) ** 0.5)

    def _model_range(self, in_sigmas: Any) -> Any:
        """[sigma_max, sigma_min] of the model, in the place of the spaced sigmas diffusers' conversions take their
        range from."""
        import numpy as np

        sigmas = self._training_sigmas()
        return np.array([sigmas[-1], sigmas[0]], dtype=np.asarray(in_sigmas).dtype)

    def _range(self, in_sigmas: Any) -> Any:
        return self._model_range(in_sigmas) if self._full_range else in_sigmas

    def _convert_to_karras(self, in_sigmas: Any, *args: Any, **kwargs: Any) -> Any:
        """diffusers' Karras sigmas (over the model's range for ComfyUI's and at 1 step), or the list being
        installed."""
        if self._pending_sigmas is not None:
            return self._pending_sigmas
        return super()._convert_to_karras(self._range(in_sigmas), *args, **kwargs)

    def _convert_to_exponential(self, in_sigmas: Any, *args: Any, **kwargs: Any) -> Any:
        """diffusers' exponential sigmas (over the model's range for ComfyUI's and at 1 step)."""
        return super()._convert_to_exponential(self._range(in_sigmas), *args, **kwargs)

    def _convert_to_beta(self, in_sigmas: Any, *args: Any, **kwargs: Any) -> Any:
        """diffusers' (AUTOMATIC1111's) beta sigmas (over the model's range at 1 step)."""
        return super()._convert_to_beta(self._range(in_sigmas), *args, **kwargs)


def _how(schedule: str, steps: int, sigma_input: str) -> str:
    """Who gives the sigmas: "diffusers" (its own set_timesteps), "trailing" (its own, with trailing spacing: the
    one timestep of a 1-step run is then the last training one) or "comfyui" (:func:`comfyui_sigmas`, installed)."""
    base = comfyui_name(schedule)
    if base in ("karras", "exponential") and sigma_input in ("sigmas", "flags"):
        return "diffusers"  # its formulas; the range is chosen by _Schedule._range
    if not sigma_input:
        return "trailing" if schedule == "normal" and steps == 1 else "diffusers"
    if schedule in ("sgm_uniform", "beta") or (schedule == "normal" and steps > 1):
        return "diffusers"  # the plain names: what diffusers' pipelines do (sgm_uniform "trailing" at 1 step too)
    return "comfyui"


@contextmanager
def _config_values(scheduler: Any, **values: Any) -> Iterator[None]:
    """`scheduler`'s config with `values` for the duration of the block; the very same config afterwards."""
    saved = scheduler._internal_dict
    scheduler.register_to_config(**values)
    try:
        yield
    finally:
        scheduler._internal_dict = saved


@functools.cache
def _scheduler_class(sampler_name: str, schedule: str) -> type:
    """The diffusers class of `sampler_name` with :class:`_Schedule` in front, under the diffusers class's name (so
    its config and repr read as diffusers' own)."""
    spec = SAMPLERS[sampler_name]
    base = getattr(import_diffusers(), spec.class_name)
    return type(spec.class_name, (_Schedule, base), {
        "__module__": __name__, "__doc__": f"diffusers' {spec.class_name}, stepping through the {schedule} schedule.",
        "schedule": schedule, "sigma_input": spec.sigma_input, "linspace_is_normal": spec.linspace_is_normal})
