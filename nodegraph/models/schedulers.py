"""Samplers and schedules by their AUTOMATIC1111 / ComfyUI names, built as diffusers schedulers.

A *sampler* (``euler``, ``dpmpp_2m``, …) picks a diffusers scheduler class plus a few config overrides; a *schedule*
(``normal``, ``karras``, …) picks how its noise levels are spaced. :func:`build_scheduler` swaps the model family's
bundled scheduler config onto the chosen class exactly as a diffusers user swaps a pipeline's scheduler::

    scheduler = EulerDiscreteScheduler.from_config(pipe.scheduler.config)                     # "normal"
    scheduler = DPMSolverMultistepScheduler.from_config(pipe.scheduler.config, use_karras_sigmas=True)  # "karras"

Schedules:

- ``normal``: the class's own spacing under the family's config (``from_config`` unchanged, except that sigma-shape
  flags a downloaded config may have switched on are switched off, so "Euler" never silently means "Euler Karras").
- ``karras`` / ``exponential`` / ``beta``: ``use_karras_sigmas`` / ``use_exponential_sigmas`` / ``use_beta_sigmas``
  (the latter needs scipy), for the classes that have them.
- ``sgm_uniform``: ``timestep_spacing="trailing"``. ComfyUI's sgm_uniform spaces the timesteps evenly from the last
  training timestep down and drops the final zero, which is what diffusers calls "trailing" spacing (the spacing
  SDXL-Turbo/Lightning and the "Common Diffusion Noise Schedules Are Flawed" paper recommend).

This module imports neither torch nor diffusers at import time (node declarations and validation read it); the
scheduler class is imported only when one is built.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from nodegraph.models.offline import import_diffusers

#: Schedule name → what users read after the sampler's label ("" for normal, as AUTOMATIC1111 writes it).
SCHEDULES: dict[str, str] = {
    "normal": "",
    "karras": "Karras",
    "exponential": "Exponential",
    "sgm_uniform": "SGM Uniform",
    "beta": "Beta",
}

#: Schedules that switch on a sigma-shape flag of the scheduler config (they are mutually exclusive in diffusers).
_SIGMA_FLAGS: dict[str, str] = {
    "karras": "use_karras_sigmas",
    "exponential": "use_exponential_sigmas",
    "beta": "use_beta_sigmas",
}

_ALL = frozenset(SCHEDULES)
_SPACING_ONLY = frozenset({"normal", "sgm_uniform"})


@dataclass(frozen=True)
class SamplerSpec:
    """One sampler.

    Args:
        label: the AUTOMATIC1111 name ("DPM++ 2M").
        class_name: the diffusers scheduler class.
        overrides: config values set on top of the family's scheduler config.
        schedules: the schedules this class supports in diffusers 0.42.
        requires: Python modules the class needs beyond diffusers (checked before building).
    """

    label: str
    class_name: str
    overrides: Mapping[str, Any] = field(default_factory=dict)
    schedules: frozenset[str] = _ALL
    requires: tuple[str, ...] = ()


SAMPLERS: dict[str, SamplerSpec] = {
    "euler": SamplerSpec("Euler", "EulerDiscreteScheduler"),
    # diffusers' ancestral Euler has no sigma-shape flags.
    "euler_ancestral": SamplerSpec("Euler a", "EulerAncestralDiscreteScheduler", schedules=_SPACING_ONLY),
    "heun": SamplerSpec("Heun", "HeunDiscreteScheduler"),
    "dpm_2": SamplerSpec("DPM2", "KDPM2DiscreteScheduler"),
    "dpm_2_ancestral": SamplerSpec("DPM2 a", "KDPM2AncestralDiscreteScheduler"),
    "lms": SamplerSpec("LMS", "LMSDiscreteScheduler"),
    "dpmpp_2m": SamplerSpec("DPM++ 2M", "DPMSolverMultistepScheduler",
                            {"algorithm_type": "dpmsolver++", "solver_order": 2}),
    "dpmpp_2m_sde": SamplerSpec("DPM++ 2M SDE", "DPMSolverMultistepScheduler",
                                {"algorithm_type": "sde-dpmsolver++", "solver_order": 2}),
    # Its Brownian-tree noise needs torchsde; sample() seeds the tree with the node's seed.
    "dpmpp_sde": SamplerSpec("DPM++ SDE", "DPMSolverSDEScheduler", requires=("torchsde",)),
    "ddim": SamplerSpec("DDIM", "DDIMScheduler", schedules=_SPACING_ONLY),
    # AUTOMATIC1111's PLMS starts with lower-order multistep updates, not Runge-Kutta warm-up steps.
    "pndm": SamplerSpec("PLMS", "PNDMScheduler", {"skip_prk_steps": True}, schedules=_SPACING_ONLY),
    "uni_pc": SamplerSpec("UniPC", "UniPCMultistepScheduler"),
    "deis": SamplerSpec("DEIS", "DEISMultistepScheduler"),
    # LCM computes its own timesteps from the distillation schedule: no other spacing applies.
    "lcm": SamplerSpec("LCM", "LCMScheduler", schedules=frozenset({"normal"})),
}


def label(sampler_name: str, schedule: str = "normal") -> str:
    """What AUTOMATIC1111 users read: ``label("dpmpp_2m", "karras")`` → "DPM++ 2M Karras", ``label("euler_ancestral")``
    → "Euler a". Unknown names are returned as given."""
    spec = SAMPLERS.get(sampler_name)
    name = spec.label if spec else sampler_name
    suffix = SCHEDULES.get(schedule, schedule)
    return f"{name} {suffix}" if suffix else name


def schedule_problem(sampler_name: str, schedule: str) -> str | None:
    """Why `sampler_name` with `schedule` cannot run here, as a message for the user; None when it can.

    Covers unknown names, combinations diffusers does not support (e.g. Euler a with Karras), and missing optional
    packages (torchsde for DPM++ SDE, scipy for the beta schedule). Imports nothing heavy.
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


def scheduler_overrides(family_scheduler_config: Mapping[str, Any], sampler_name: str,
                        schedule: str) -> dict[str, Any]:
    """The config values :func:`build_scheduler` passes to ``from_config`` on top of the family's config."""
    spec = SAMPLERS[sampler_name]
    overrides = dict(spec.overrides)
    if _SIGMA_FLAGS.keys() & spec.schedules:
        # Exactly one sigma-shape flag on (or none for normal/sgm_uniform); leave untouched flags alone when the
        # family's config does not set them, so "normal" stays a plain from_config.
        for name, flag in _SIGMA_FLAGS.items():
            if name == schedule:
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
    Raises ValueError with :func:`schedule_problem`'s message for an unsupported combination.
    """
    problem = schedule_problem(sampler_name, schedule)
    if problem:
        raise ValueError(problem)
    cls = getattr(import_diffusers(), SAMPLERS[sampler_name].class_name)
    return cls.from_config(dict(family_scheduler_config),
                           **scheduler_overrides(family_scheduler_config, sampler_name, schedule))
