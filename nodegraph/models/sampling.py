"""The sampler: text-to-image, image-to-image and inpainting denoising with any diffusers scheduler.

It follows diffusers' Stable Diffusion pipelines step by step (``pipeline_stable_diffusion.py``, ``…_img2img.py``,
``…_inpaint.py`` and their SDXL siblings), so the same weights, conditioning, scheduler and seed give the same
latents as diffusers' own pipeline called with ``generator=torch.Generator("cpu").manual_seed(seed)`` and
``output_type="latent"``. Noise always comes from that CPU generator, so an image is the same on any device.

Where it departs from the pipelines on purpose (none of this changes their results in the cases they support):

- ``denoise == 1`` always starts from pure noise (as the inpaint pipeline does at ``strength=1``); init latents are
  then only used by a noise mask. diffusers' img2img pipeline instead noises the image at the first timestep.
- ``denoise < 1`` without init latents starts from zero latents (ComfyUI's "Empty Latent Image").
- A partial run (``start_step`` / ``end_step``, ComfyUI's KSamplerAdvanced) has no diffusers pipeline counterpart: it
  runs those steps of the full schedule, the noise of ``start_step > 0`` added at its first sigma as img2img adds it.
  Latents that enter or leave it noisy are in ComfyUI's convention, x0 + sigma·noise, whatever the scheduler keeps.
- Negative and positive prompts of different lengths (long prompts) are run as two UNet passes instead of being
  refused; equal lengths are batched ``[negative, positive]`` as diffusers does.
- SDXL's time ids are batched as ``[negative] * B + [positive] * B`` (diffusers' base pipeline interleaves them,
  which only matters for the refiner's different aesthetic scores).
- ``DPM++ SDE`` (``DPMSolverSDEScheduler``) seeds its Brownian tree with `seed` instead of the global RNG.
- ControlNets ride on the conditionings (ComfyUI's way), so the positive and the negative prompt may carry different
  ones: each side then runs its own. Carrying the same ones, they run on the guidance batch exactly as in diffusers'
  ControlNet pipelines (``guess_mode=False``); steps where one is inactive or at strength 0 skip it instead of adding
  its residuals times 0 (the same numbers). In a partial run the start/end percentages count the whole schedule.
- The scheduler's begin index is always set, as the SDXL and img2img pipelines do (the SD 1.x/2.x text-to-image
  pipeline looks the first timestep up instead, which only differs when a schedule repeats its first timestep).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

from nodegraph.core.errors import NodeError
from nodegraph.models.conditioning import Conditioning
from nodegraph.models.families import Family
from nodegraph.models.integrity import NAN_HINT, finite
from nodegraph.models.offline import import_torch

#: The VAE's downsampling factor for every Stable Diffusion family.
VAE_SCALE_FACTOR = 8

#: diffusers' refiner defaults for the aesthetic-score time id.
AESTHETIC_SCORE = 6.0
NEGATIVE_AESTHETIC_SCORE = 2.5

Progress = Callable[[int, int, Any], None]


def sample(*, unet: Any, scheduler: Any, family: Family, positive: Conditioning, negative: Conditioning, seed: int,
           steps: int, cfg: float, width: int, height: int, batch_size: int = 1, init_latents: Any = None,
           denoise: float = 1.0, noise_mask: Any = None, masked_image_latents: Any = None,
           progress: Progress | None = None, start_step: int = 0, end_step: int | None = None,
           add_noise: bool = True, leftover_noise: bool = False, controlnets: Mapping[Any, Any] | None = None) -> Any:
    """Denoise latents and return them unscaled (what diffusers' pipelines return for ``output_type="latent"``;
    divide by ``vae.config.scaling_factor`` before decoding).

    Args:
        unet: a diffusers ``UNet2DConditionModel`` (its device and dtype are used throughout).
        scheduler: a diffusers scheduler (see :func:`nodegraph.models.schedulers.build_scheduler`); its state is
            reset by ``set_timesteps``, so one may be reused run after run but not shared between concurrent runs.
        family: the model family (for messages; the UNet's config decides SDXL conditioning and inpainting).
        positive, negative: encoded prompts. SDXL needs their ``pooled`` embeddings.
        seed: seeds ``torch.Generator("cpu")``, which draws the initial noise and every later sampler noise.
        steps: the number of inference steps of the whole schedule (img2img runs the last ``int(steps * denoise)``).
        cfg: the classifier-free guidance scale; guidance is used when it is above 1.
        width, height: the image size in pixels (multiples of 8); the latents are ``height // 8 × width // 8``.
        batch_size: images per run; each gets its own noise from the one generator, as in diffusers.
        init_latents: scaled image latents ``[1 or B, 4, h, w]`` (``vae.encode(x).latent_dist.sample() *
            scaling_factor``) to start from when ``denoise < 1`` and to keep outside `noise_mask`.
        denoise: diffusers' img2img ``strength`` in (0, 1].
        noise_mask: ``[1 or B, 1, h, w]`` in [0, 1], 1 = repaint (resized to the latent size with nearest
            neighbours if needed; diffusers binarises masks at 0.5 first — do so before calling to match it).
            With a 4-channel UNet the kept region is re-noised and blended back after every step, as diffusers'
            inpaint pipeline does; `init_latents` are then required.
        masked_image_latents: for 9-channel inpainting UNets only: the scaled latents of the image with the repainted
            region set to 0 in [-1, 1] pixel space (mid-grey), as diffusers' inpaint pipelines build them. When left
            out, `init_latents` are used for it, so a caller holding only those passes the masked image's latents
            as `init_latents` (ComfyUI's "VAE Encode (for Inpainting)"). A 9-channel UNet needs one of the two;
            without `noise_mask` everything is repainted (mask of ones). For text-to-image with an inpainting model
            pass the latents of a mid-grey image and no mask (AUTOMATIC1111 does the same).
        progress: called as ``progress(step, total, latents)`` after each of the `total` steps (``step`` counts
            from 1); it may raise :class:`nodegraph.core.errors.Cancelled` to stop the run.
        start_step, end_step: run only the steps ``start_step`` … ``end_step - 1`` of the `steps`-step schedule
            (ComfyUI's KSamplerAdvanced ``start_at_step`` / ``end_at_step``; None or past the end: to the end). A
            start above 0 adds the noise at that step's sigma (`denoise` must then be 1).
        add_noise: False starts from `init_latents` as given (zeros without), taken to be noisy at the first run
            step's sigma already: the leftover of a run that ended there (ComfyUI's ``add_noise`` "disable").
        leftover_noise: when `end_step` ends the run before the schedule, return the latents still noisy at that
            step's sigma (ComfyUI's ``return_with_leftover_noise``); otherwise the last step goes to sigma 0, as
            ComfyUI's does (see :func:`nodegraph.models.schedulers.early_end_problem` for the samplers that cannot).
        controlnets: the loaded ``ControlNetModel`` of each ControlNet file the conditionings' ``controls`` name, by
            path (see :func:`nodegraph.models.controlnet.controlnets_for`), on the UNet's device.

    Raises:
        NodeError: for settings a user can fix (no step left to run, SDXL without pooled embeddings, an inpainting
            model without image latents, a sampler that cannot end early as asked). ValueError: for malformed tensors
            passed by the caller, or a start step with ``denoise < 1``.
    """
    torch = import_torch()
    with torch.inference_mode():
        return _sample(torch, unet=unet, scheduler=scheduler, family=family, positive=positive, negative=negative,
                       seed=seed, steps=steps, cfg=cfg, width=width, height=height, batch_size=batch_size,
                       init_latents=init_latents, denoise=denoise, noise_mask=noise_mask,
                       masked_image_latents=masked_image_latents, progress=progress, start_step=start_step,
                       end_step=end_step, add_noise=add_noise, leftover_noise=leftover_noise,
                       controlnets=controlnets)


def _sample(torch: Any, *, unet: Any, scheduler: Any, family: Family, positive: Conditioning,
            negative: Conditioning, seed: int, steps: int, cfg: float, width: int, height: int, batch_size: int,
            init_latents: Any, denoise: float, noise_mask: Any, masked_image_latents: Any,
            progress: Progress | None, start_step: int, end_step: int | None, add_noise: bool,
            leftover_noise: bool, controlnets: Mapping[Any, Any] | None = None) -> Any:
    # 1. Check inputs and define call parameters
    if steps < 1:
        raise NodeError(f"steps must be at least 1, not {steps}")
    if not 0.0 < denoise <= 1.0:
        raise NodeError(f"denoise must be in (0, 1], not {denoise}")
    if width % VAE_SCALE_FACTOR or height % VAE_SCALE_FACTOR or width <= 0 or height <= 0:
        raise NodeError(f"width and height must be positive multiples of {VAE_SCALE_FACTOR}, not {width}×{height}")
    if batch_size < 1:
        raise NodeError(f"batch size must be at least 1, not {batch_size}")
    if start_step < 0 or (end_step is not None and end_step < 0):
        raise NodeError(f"start and end steps cannot be negative ({start_step}, {end_step})")
    if start_step and denoise < 1.0:
        raise ValueError("a start step and denoise < 1 both pick where the run starts: pass one of them")
    device, dtype = unet.device, unet.dtype
    in_channels = unet.config.in_channels
    latent_channels = unet.config.out_channels
    shape = (batch_size, latent_channels, height // VAE_SCALE_FACTOR, width // VAE_SCALE_FACTOR)
    # A UNet distilled with a guidance embedding (LCM) takes the scale as an input instead of running guidance.
    guidance_embedding = unet.config.time_cond_proj_dim is not None
    do_cfg = cfg > 1.0 and not guidance_embedding
    generator = torch.Generator("cpu").manual_seed(seed)

    # 2. Prepare the prompt embeddings (and SDXL's added conditions); a prompt with AUTOMATIC1111's prompt editing
    #    has one per distinct text and picks them step by step (8.0)
    def prepare(pos: Conditioning, neg: Conditioning) -> dict[str, Any]:
        embeds = {"pos": _batch(pos.embeds, batch_size, "positive prompt embeddings").to(device=device, dtype=dtype),
                  "neg": _batch(neg.embeds, batch_size, "negative prompt embeddings").to(device=device, dtype=dtype),
                  "pos_added": None, "neg_added": None}
        if unet.config.addition_embed_type == "text_time":
            embeds["pos_added"], embeds["neg_added"] = _sdxl_added_conditions(
                torch, unet, family, pos, neg, width, height, batch_size, device, dtype)
        # Equal token counts run as one batch [negative, positive], as diffusers does; long prompts of different
        # lengths run as two passes.
        embeds["batched"] = do_cfg and embeds["neg"].shape == embeds["pos"].shape
        if embeds["batched"]:
            embeds["cfg"] = torch.cat([embeds["neg"], embeds["pos"]])
            pos_added, neg_added = embeds["pos_added"], embeds["neg_added"]
            embeds["cfg_added"] = (None if pos_added is None else
                                   {k: torch.cat([neg_added[k], pos_added[k]]) for k in pos_added})
        return embeds

    scheduled = getattr(positive, "is_scheduled", False) or getattr(negative, "is_scheduled", False)

    # 3. Set the timesteps: img2img keeps the last `denoise` part of the schedule (diffusers' `strength`), a partial
    #    run the steps from start_step to end_step
    scheduler.set_timesteps(steps, device=device)
    # Some schedules take another number of steps than asked (ComfyUI's beta drops repeated timesteps, its
    # ddim_uniform can add one): the schedule's own count rules from here on.
    steps = getattr(scheduler, "num_inference_steps", None) or steps
    order = getattr(scheduler, "order", 1)
    t_start = start_step or max(steps - min(int(steps * denoise), steps), 0)
    t_stop = steps if end_step is None else min(end_step, steps)
    if t_stop <= t_start:
        if start_step or end_step is not None:
            raise NodeError(f"starting at step {start_step} and ending at step {t_stop} of {steps} leaves no step to "
                            "run")
        raise NodeError(f"denoise {denoise} with {steps} steps leaves no step to run; raise denoise or steps")
    leftover = t_stop < steps and leftover_noise
    if t_stop < steps:
        _end_early(scheduler, steps, t_stop, leftover, device)
    timesteps = scheduler.timesteps[t_start * order:t_stop * order if leftover else None]
    if hasattr(scheduler, "set_begin_index"):
        scheduler.set_begin_index(t_start * order)
    num_inference_steps = t_stop - t_start
    latent_timestep = timesteps[:1].repeat(batch_size)

    # 4. Prepare the latents: noise drawn on the CPU (as diffusers' randn_tensor does for a CPU generator)
    is_strength_max = denoise == 1.0 and t_start == 0
    image_latents = None
    if init_latents is not None:
        image_latents = _batch(_check_latents(init_latents, shape, "init latents"), batch_size, "init latents")
        image_latents = image_latents.to(device=device, dtype=dtype)
    elif not is_strength_max or not add_noise:
        image_latents = torch.zeros(shape, device=device, dtype=dtype)
    noise = torch.randn(shape, generator=generator, device="cpu", dtype=dtype).to(device)
    if not add_noise:
        latents = image_latents * _latent_scale(scheduler, t_start)
    elif is_strength_max:
        latents = noise * scheduler.init_noise_sigma
    else:
        latents = scheduler.add_noise(image_latents, noise, latent_timestep)

    # 5. Prepare the inpainting inputs: a blend mask (4-channel UNet) or extra UNet channels (9-channel UNet)
    mask = None
    if noise_mask is not None:
        mask = _batch(_prepare_mask(torch, noise_mask, shape), batch_size, "noise mask").to(device=device, dtype=dtype)
    blend_mask = extra_channels = None
    if in_channels == latent_channels:
        if mask is not None:
            if image_latents is None:
                raise NodeError("a noise mask needs the latents of the image to keep (connect init latents)")
            blend_mask = mask
    elif in_channels == 2 * latent_channels + 1:
        extra_channels = _inpaint_channels(torch, family, mask, masked_image_latents, init_latents, shape,
                                           batch_size, device, dtype)
    else:
        raise ValueError(f"the UNet takes {in_channels} input channels; only 4 and 9 are supported")

    # 6. Prepare the extra step arguments (not every scheduler takes eta or a generator)
    step_parameters = set(inspect.signature(scheduler.step).parameters)
    extra_step_kwargs: dict[str, Any] = {}
    if "eta" in step_parameters:
        extra_step_kwargs["eta"] = 0.0
    if "generator" in step_parameters:
        extra_step_kwargs["generator"] = generator
    if hasattr(scheduler, "noise_sampler_seed"):  # DPM++ SDE's Brownian tree: seeded, not from the global RNG
        scheduler.noise_sampler_seed = seed
        scheduler.noise_sampler = None

    # 7. Optionally embed the guidance scale (LCM-distilled UNets)
    timestep_cond = None
    if guidance_embedding:
        scale = torch.tensor(cfg - 1).repeat(batch_size)
        timestep_cond = guidance_scale_embedding(torch, scale, unet.config.time_cond_proj_dim).to(
            device=device, dtype=dtype)

    # 7.5 Prepare the ControlNets the conditionings carry (control images at the image size, once)
    num_warmup_steps = len(timesteps) - num_inference_steps * order
    first = t_start * order
    controls = None
    if getattr(positive, "controls", ()) or getattr(negative, "controls", ()):
        from nodegraph.models.controlnet import ControlRun

        partial = start_step > 0 or end_step is not None
        controls = ControlRun(torch, positive=positive.controls, negative=negative.controls,
                              controlnets=controlnets or {}, unet=unet, family=family, width=width, height=height,
                              batch_size=batch_size, position_offset=first if partial else 0,
                              total=steps * order if partial else len(timesteps))

    # 8. Denoising loop
    def predict(x: Any, t: Any, embeds: Any, added: dict[str, Any] | None, residuals: dict[str, Any]) -> Any:
        return unet(x, t, encoder_hidden_states=embeds, timestep_cond=timestep_cond, added_cond_kwargs=added,
                    return_dict=False, **residuals)[0]

    def residuals(which: str, i: int, x: Any, t: Any) -> dict[str, Any]:
        return controls.residuals(which, i, x, t, embeds) if controls is not None else {}

    done = 0
    # AUTOMATIC1111 counts UNet evaluations for prompt editing: two per step for the second-order samplers.
    calls = steps * order
    step_prompts = (positive.at_step(0, calls), negative.at_step(0, calls)) if scheduled else (positive, negative)
    embeds = prepare(*step_prompts)
    for i, t in enumerate(timesteps):
        # 8.0 Prompt editing: the texts of this step (re-encoded batches only when they change)
        if scheduled:
            chosen = (positive.at_step(i, calls), negative.at_step(i, calls))
            if chosen[0] is not step_prompts[0] or chosen[1] is not step_prompts[1]:
                step_prompts, embeds = chosen, prepare(*chosen)

        # 8.1 Scale the input for the scheduler and add the inpainting channels
        model_input = control_input = scheduler.scale_model_input(latents, t)
        if extra_channels is not None:
            model_input = torch.cat([model_input, *extra_channels], dim=1)

        # 8.2 Predict the noise residual, with classifier-free guidance (and the active ControlNets' residuals)
        if embeds["batched"]:
            noise_pred_uncond, noise_pred_text = predict(
                torch.cat([model_input] * 2), t, embeds["cfg"], embeds["cfg_added"],
                residuals("cfg", i, control_input, t)).chunk(2)
        elif do_cfg:
            noise_pred_uncond = predict(model_input, t, embeds["neg"], embeds["neg_added"],
                                        residuals("neg", i, control_input, t))
            noise_pred_text = predict(model_input, t, embeds["pos"], embeds["pos_added"],
                                      residuals("pos", i, control_input, t))
        else:
            noise_pred = predict(model_input, t, embeds["pos"], embeds["pos_added"],
                                 residuals("pos", i, control_input, t))
        if do_cfg:
            noise_pred = noise_pred_uncond + cfg * (noise_pred_text - noise_pred_uncond)

        # 8.3 Compute the previous noisy sample x_t -> x_t-1
        latents = scheduler.step(noise_pred, t, latents, **extra_step_kwargs, return_dict=False)[0]
        if not finite(latents):  # NaN spreads to the whole image and decodes to black: stop here, say why
            raise NodeError(f"the latents hold NaN or infinite values after step {i + 1} of {len(timesteps)}: "
                            f"{NAN_HINT}")

        # 8.4 Inpainting with a regular UNet: put back the kept region, noised to the next timestep
        if blend_mask is not None:
            kept = image_latents
            following = scheduler.timesteps[first + i + 1:first + i + 2]
            if len(following):
                kept = scheduler.add_noise(image_latents, noise, following)
            latents = (1 - blend_mask) * kept + blend_mask * latents

        # 8.5 Report progress once per step (second-order schedulers evaluate the UNet twice per step)
        if i == len(timesteps) - 1 or ((i + 1) > num_warmup_steps and (i + 1) % order == 0):
            done += 1
            if progress is not None:
                progress(done, num_inference_steps, latents)

    # 9. Return the latents (still multiplied by the VAE's scaling factor; leftover noise as x0 + sigma·noise)
    return latents / _latent_scale(scheduler, t_stop) if leftover else latents


#: diffusers' ports of k-diffusion samplers keep latents as x0 + sigma·noise, ComfyUI's convention; the other classes
#: keep sqrt(ᾱ)·x0 + sqrt(1 - ᾱ)·noise (DDIM's), which is the same divided by sqrt(1 + sigma²).
_SIGMA_SCALED = frozenset({"EulerDiscreteScheduler", "EulerAncestralDiscreteScheduler", "HeunDiscreteScheduler",
                           "KDPM2DiscreteScheduler", "KDPM2AncestralDiscreteScheduler", "LMSDiscreteScheduler",
                           "DPMSolverSDEScheduler"})


def _latent_scale(scheduler: Any, step: int) -> float:
    """What the scheduler's latents at the start of `step` are multiplied by against ComfyUI's x0 + sigma·noise: 1
    for the k-diffusion ports, sqrt(ᾱ) = 1 / sqrt(1 + sigma²) for the others."""
    if type(scheduler).__name__ in _SIGMA_SCALED:
        return 1.0
    if hasattr(scheduler, "sigmas"):  # the multistep solvers: one sigma per step
        return float(1 + scheduler.sigmas[step].double() ** 2) ** -0.5
    return float(scheduler.alphas_cumprod[int(scheduler.timesteps[step])].double()) ** 0.5


def _end_early(scheduler: Any, steps: int, last_step: int, leftover: bool, device: Any) -> None:
    """Prepare `scheduler` for a run that stops after `last_step` of its `steps` steps: with `leftover` noise it
    only has to stop there (a layout of two passes per step is fine, PLMS's doubled first step is not); otherwise
    its schedule is cut to end on sigma 0 there."""
    from nodegraph.models.schedulers import end_at_zero

    order = getattr(scheduler, "order", 1)
    if leftover:
        if len(scheduler.timesteps) not in (steps * order, steps * order - 1):
            raise NodeError(f"cannot end at step {last_step} of {steps}: {type(scheduler).__name__} runs whole "
                            "schedules only")
        return
    try:
        end_at_zero(scheduler, last_step, device)
    except ValueError as error:
        raise NodeError(f"cannot end at step {last_step} of {steps}: {error}") from None


def _batch(tensor: Any, batch_size: int, what: str) -> Any:
    """`tensor` with `batch_size` rows: as is, or its single row repeated (as diffusers repeats prompt embeddings)."""
    if tensor.shape[0] == batch_size:
        return tensor
    if tensor.shape[0] == 1:
        return tensor.repeat(batch_size, *([1] * (tensor.dim() - 1)))
    raise ValueError(f"{what} hold {tensor.shape[0]} items, which does not fit a batch of {batch_size}")


def _check_latents(latents: Any, shape: tuple[int, ...], what: str) -> Any:
    if latents.dim() != 4 or tuple(latents.shape[1:]) != tuple(shape[1:]):
        raise ValueError(f"{what} are shaped {tuple(latents.shape)}, expected [B, {shape[1]}, {shape[2]}, {shape[3]}]"
                         f" for a {shape[3] * VAE_SCALE_FACTOR}×{shape[2] * VAE_SCALE_FACTOR} image")
    return latents


def _prepare_mask(torch: Any, mask: Any, shape: tuple[int, ...]) -> Any:
    """A [B, 1, h, w] float mask at the latent size (nearest-neighbour resize, as diffusers does)."""
    if mask.dim() == 2:
        mask = mask[None, None]
    elif mask.dim() == 3:
        mask = mask[:, None]
    if mask.dim() != 4 or mask.shape[1] != 1:
        raise ValueError(f"a noise mask is shaped [B, 1, h, w], not {tuple(mask.shape)}")
    mask = mask.float()
    if tuple(mask.shape[-2:]) != tuple(shape[-2:]):
        mask = torch.nn.functional.interpolate(mask, size=tuple(shape[-2:]))
    return mask


def _inpaint_channels(torch: Any, family: Family, mask: Any, masked_image_latents: Any, init_latents: Any,
                      shape: tuple[int, ...], batch_size: int, device: Any, dtype: Any) -> tuple[Any, Any]:
    """The mask and masked-image latents a 9-channel inpainting UNet takes after the latents."""
    source = masked_image_latents if masked_image_latents is not None else init_latents
    if source is None:
        raise NodeError(f"the {family.label} model is an inpainting model: it needs the latents of the masked image "
                        "(use a VAE Encode for inpainting, or encode a grey image for text-to-image)")
    source = _batch(_check_latents(source, shape, "masked image latents"), batch_size, "masked image latents")
    if mask is None:
        mask = torch.ones((batch_size, 1, *shape[-2:]))
    return mask.to(device=device, dtype=dtype), source.to(device=device, dtype=dtype)


def _sdxl_added_conditions(torch: Any, unet: Any, family: Family, positive: Conditioning, negative: Conditioning,
                           width: int, height: int, batch_size: int, device: Any,
                           dtype: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """SDXL's ``text_embeds`` (pooled prompt) and ``time_ids`` for the positive and the negative prompt.

    The base model takes original size + crop (0, 0) + target size, all from the image size; the refiner takes
    original size + crop + an aesthetic score (6.0, and 2.5 for the negative prompt), as diffusers' pipelines do.
    """
    if positive.pooled is None or negative.pooled is None:
        raise NodeError(f"the {family.label} model needs pooled prompt embeddings: encode the prompts with its own "
                        "text encoders")
    pooled_dim = positive.pooled.shape[-1]
    expected = unet.add_embedding.linear_1.in_features
    count, rest = divmod(expected - pooled_dim, unet.config.addition_time_embed_dim)
    size = (height, width)
    if rest == 0 and count == 6:
        pos_ids = neg_ids = (*size, 0, 0, *size)
    elif rest == 0 and count == 5:
        pos_ids, neg_ids = (*size, 0, 0, AESTHETIC_SCORE), (*size, 0, 0, NEGATIVE_AESTHETIC_SCORE)
    else:
        raise ValueError(f"the UNet expects {expected} added-embedding values, which fits no SDXL time ids with a "
                         f"{pooled_dim}-wide pooled embedding")

    def added(conditioning: Conditioning, ids: tuple[float, ...], what: str) -> dict[str, Any]:
        return {"text_embeds": _batch(conditioning.pooled, batch_size, what).to(device=device, dtype=dtype),
                "time_ids": torch.tensor([list(ids)], dtype=dtype).repeat(batch_size, 1).to(device)}

    return (added(positive, pos_ids, "positive pooled embeddings"),
            added(negative, neg_ids, "negative pooled embeddings"))


def guidance_scale_embedding(torch: Any, w: Any, embedding_dim: int) -> Any:
    """The sinusoidal embedding of guidance scales `w` ([B]) that LCM-distilled UNets take as ``timestep_cond``
    (the VDM paper's, as diffusers' LCM pipelines compute it)."""
    w = w.float() * 1000.0
    half = embedding_dim // 2
    frequencies = torch.exp(torch.arange(half, dtype=torch.float32) * -(torch.log(torch.tensor(10000.0)) / (half - 1)))
    angles = w[:, None] * frequencies[None, :]
    embedding = torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)
    if embedding_dim % 2 == 1:
        embedding = torch.nn.functional.pad(embedding, (0, 1))
    return embedding
