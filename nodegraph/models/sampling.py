"""The sampler: text-to-image, image-to-image and inpainting denoising with any diffusers scheduler.

It follows diffusers' Stable Diffusion pipelines step by step (``pipeline_stable_diffusion.py``, ``…_img2img.py``,
``…_inpaint.py`` and their SDXL siblings), so the same weights, conditioning, scheduler and seed give the same
latents as diffusers' own pipeline called with ``generator=torch.Generator("cpu").manual_seed(seed)`` and
``output_type="latent"``. Noise always comes from that CPU generator, so an image is the same on any device.

Where it departs from the pipelines on purpose (none of this changes their results in the cases they support):

- ``denoise == 1`` always starts from pure noise (as the inpaint pipeline does at ``strength=1``); init latents are
  then only used by a noise mask. diffusers' img2img pipeline instead noises the image at the first timestep.
- ``denoise < 1`` without init latents starts from zero latents (ComfyUI's "Empty Latent Image").
- Negative and positive prompts of different lengths (long prompts) are run as two UNet passes instead of being
  refused; equal lengths are batched ``[negative, positive]`` as diffusers does.
- SDXL's time ids are batched as ``[negative] * B + [positive] * B`` (diffusers' base pipeline interleaves them,
  which only matters for the refiner's different aesthetic scores).
- ``DPM++ SDE`` (``DPMSolverSDEScheduler``) seeds its Brownian tree with `seed` instead of the global RNG.
- The scheduler's begin index is always set, as the SDXL and img2img pipelines do (the SD 1.x/2.x text-to-image
  pipeline looks the first timestep up instead, which only differs when a schedule repeats its first timestep).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from nodegraph.core.errors import NodeError
from nodegraph.models.conditioning import Conditioning
from nodegraph.models.families import Family
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
           progress: Progress | None = None) -> Any:
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

    Raises:
        NodeError: for settings a user can fix (no step left to run, SDXL without pooled embeddings, an inpainting
            model without image latents). ValueError: for malformed tensors passed by the caller.
    """
    torch = import_torch()
    with torch.inference_mode():
        return _sample(torch, unet=unet, scheduler=scheduler, family=family, positive=positive, negative=negative,
                       seed=seed, steps=steps, cfg=cfg, width=width, height=height, batch_size=batch_size,
                       init_latents=init_latents, denoise=denoise, noise_mask=noise_mask,
                       masked_image_latents=masked_image_latents, progress=progress)


def _sample(torch: Any, *, unet: Any, scheduler: Any, family: Family, positive: Conditioning,
            negative: Conditioning, seed: int, steps: int, cfg: float, width: int, height: int, batch_size: int,
            init_latents: Any, denoise: float, noise_mask: Any, masked_image_latents: Any,
            progress: Progress | None) -> Any:
    # 1. Check inputs and define call parameters
    if steps < 1:
        raise NodeError(f"steps must be at least 1, not {steps}")
    if not 0.0 < denoise <= 1.0:
        raise NodeError(f"denoise must be in (0, 1], not {denoise}")
    if width % VAE_SCALE_FACTOR or height % VAE_SCALE_FACTOR or width <= 0 or height <= 0:
        raise NodeError(f"width and height must be positive multiples of {VAE_SCALE_FACTOR}, not {width}×{height}")
    if batch_size < 1:
        raise NodeError(f"batch size must be at least 1, not {batch_size}")
    device, dtype = unet.device, unet.dtype
    in_channels = unet.config.in_channels
    latent_channels = unet.config.out_channels
    shape = (batch_size, latent_channels, height // VAE_SCALE_FACTOR, width // VAE_SCALE_FACTOR)
    # A UNet distilled with a guidance embedding (LCM) takes the scale as an input instead of running guidance.
    guidance_embedding = unet.config.time_cond_proj_dim is not None
    do_cfg = cfg > 1.0 and not guidance_embedding
    generator = torch.Generator("cpu").manual_seed(seed)

    # 2. Prepare the prompt embeddings (and SDXL's added conditions)
    pos_embeds = _batch(positive.embeds, batch_size, "positive prompt embeddings").to(device=device, dtype=dtype)
    neg_embeds = _batch(negative.embeds, batch_size, "negative prompt embeddings").to(device=device, dtype=dtype)
    pos_added = neg_added = None
    if unet.config.addition_embed_type == "text_time":
        pos_added, neg_added = _sdxl_added_conditions(torch, unet, family, positive, negative, width, height,
                                                      batch_size, device, dtype)
    # Equal token counts run as one batch [negative, positive], as diffusers does; long prompts of different
    # lengths run as two passes.
    batched_cfg = do_cfg and neg_embeds.shape == pos_embeds.shape
    if batched_cfg:
        cfg_embeds = torch.cat([neg_embeds, pos_embeds])
        cfg_added = None if pos_added is None else {k: torch.cat([neg_added[k], pos_added[k]]) for k in pos_added}

    # 3. Set the timesteps (img2img keeps the last `denoise` part of the schedule, as diffusers' `strength`)
    scheduler.set_timesteps(steps, device=device)
    order = getattr(scheduler, "order", 1)
    init_timestep = min(int(steps * denoise), steps)
    t_start = max(steps - init_timestep, 0)
    timesteps = scheduler.timesteps[t_start * order:]
    if hasattr(scheduler, "set_begin_index"):
        scheduler.set_begin_index(t_start * order)
    num_inference_steps = steps - t_start
    if num_inference_steps < 1 or len(timesteps) == 0:
        raise NodeError(f"denoise {denoise} with {steps} steps leaves no step to run; raise denoise or steps")
    latent_timestep = timesteps[:1].repeat(batch_size)

    # 4. Prepare the latents: noise drawn on the CPU (as diffusers' randn_tensor does for a CPU generator)
    is_strength_max = denoise == 1.0
    image_latents = None
    if init_latents is not None:
        image_latents = _batch(_check_latents(init_latents, shape, "init latents"), batch_size, "init latents")
        image_latents = image_latents.to(device=device, dtype=dtype)
    elif not is_strength_max:
        image_latents = torch.zeros(shape, device=device, dtype=dtype)
    noise = torch.randn(shape, generator=generator, device="cpu", dtype=dtype).to(device)
    if is_strength_max:
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

    # 8. Denoising loop
    def predict(x: Any, t: Any, embeds: Any, added: dict[str, Any] | None) -> Any:
        return unet(x, t, encoder_hidden_states=embeds, timestep_cond=timestep_cond, added_cond_kwargs=added,
                    return_dict=False)[0]

    num_warmup_steps = len(timesteps) - num_inference_steps * order
    done = 0
    for i, t in enumerate(timesteps):
        # 8.1 Scale the input for the scheduler and add the inpainting channels
        model_input = scheduler.scale_model_input(latents, t)
        if extra_channels is not None:
            model_input = torch.cat([model_input, *extra_channels], dim=1)

        # 8.2 Predict the noise residual, with classifier-free guidance
        if batched_cfg:
            noise_pred_uncond, noise_pred_text = predict(torch.cat([model_input] * 2), t, cfg_embeds,
                                                         cfg_added).chunk(2)
        elif do_cfg:
            noise_pred_uncond = predict(model_input, t, neg_embeds, neg_added)
            noise_pred_text = predict(model_input, t, pos_embeds, pos_added)
        else:
            noise_pred = predict(model_input, t, pos_embeds, pos_added)
        if do_cfg:
            noise_pred = noise_pred_uncond + cfg * (noise_pred_text - noise_pred_uncond)

        # 8.3 Compute the previous noisy sample x_t -> x_t-1
        latents = scheduler.step(noise_pred, t, latents, **extra_step_kwargs, return_dict=False)[0]

        # 8.4 Inpainting with a regular UNet: put back the kept region, noised to the next timestep
        if blend_mask is not None:
            kept = image_latents
            if i < len(timesteps) - 1:
                kept = scheduler.add_noise(image_latents, noise, timesteps[i + 1:i + 2])
            latents = (1 - blend_mask) * kept + blend_mask * latents

        # 8.5 Report progress once per step (second-order schedulers evaluate the UNet twice per step)
        if i == len(timesteps) - 1 or ((i + 1) > num_warmup_steps and (i + 1) % order == 0):
            done += 1
            if progress is not None:
                progress(done, num_inference_steps, latents)

    # 9. Return the latents (still multiplied by the VAE's scaling factor)
    return latents


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
