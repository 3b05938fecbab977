"""The UNet Samplers: the denoising loop, with the model's LoRAs and hypernetworks applied only for its duration.

UNet Sampler is ComfyUI's KSampler; UNet Sampler (Advanced) is its KSamplerAdvanced (run part of a schedule, with or
without adding noise, and hand on the latents still noisy), as in SDXL's base → refiner workflows. Both run
:func:`nodegraph.models.sampling.sample`.
"""

from nodegraph.core import Input, Output, PortType, node
from nodegraph.models.schedulers import SAMPLERS, SCHEDULES, early_end_problem, schedule_problem


def _sampler_inputs(seed_name, seed_tooltip):
    """The inputs both samplers share, after the links: seed, steps, cfg, sampler and schedule."""
    return [Input.int(seed_name, 0, min=0, max=2**64 - 1, tooltip=seed_tooltip),
            Input.int("steps", 20, min=1, max=10000),
            Input.float("cfg", 7.0, min=0.0, max=100.0, step=0.1, tooltip="classifier-free guidance scale"),
            Input.choice("sampler_name", list(SAMPLERS), "euler",
                         labels={name: spec.label for name, spec in SAMPLERS.items()}),
            Input.choice("scheduler", list(SCHEDULES), "normal",
                         labels={name: label or "Normal" for name, label in SCHEDULES.items()},
                         tooltip="how the noise levels are spaced: the plain names as diffusers computes them, the "
                                 "(ComfyUI) ones, Simple, DDIM and KL Optimal as ComfyUI does")]


_LINKS = [Input.link("model", PortType.MODEL), Input.link("positive", PortType.CONDITIONING),
          Input.link("negative", PortType.CONDITIONING), Input.link("latent_image", PortType.LATENT)]


def _check(seed, steps, cfg, sampler_name, scheduler, denoise):
    problem = schedule_problem(sampler_name, scheduler)
    return {"scheduler": problem} if problem else {}


@node(type="UNetSampler", display_name="UNet Sampler", category="sampling",
      description="Denoise latents with the model, guided by the positive and negative conditioning. Same weights, "
                  "prompt, sampler and seed give the same image as diffusers' pipelines, on any device.",
      inputs=[*_LINKS,
              *_sampler_inputs("seed", "the initial noise comes from a CPU generator seeded with this"),
              Input.float("denoise", 1.0, min=0.0, max=1.0, step=0.01,
                          tooltip="below 1: keep part of the input latent (image to image strength)")],
      outputs=[Output("LATENT", PortType.LATENT)], check=_check)
def unet_sampler(ctx, model, positive, negative, latent_image, seed, steps, cfg, sampler_name, scheduler, denoise):
    """Run the sampler; report each step (with a cheap preview unless previews are off) and stop within one step
    when cancelled."""
    from nodegraph.models.handles import Latent

    if denoise <= 0:
        return {"LATENT": latent_image}  # nothing to denoise: the input passes through unchanged
    latents, info, scale = _run(ctx, model, positive, negative, latent_image, seed=seed, steps=steps, cfg=cfg,
                                sampler_name=sampler_name, schedule=scheduler, denoise=denoise)
    return {"LATENT": Latent(latents, info=info, scale=scale)}


def _check_advanced(add_noise, noise_seed, steps, cfg, sampler_name, scheduler, start_at_step, end_at_step,
                    return_with_leftover_noise):
    problems = {}
    if problem := schedule_problem(sampler_name, scheduler):
        problems["scheduler"] = problem
    if start_at_step < min(end_at_step, steps) < steps and (
            problem := early_end_problem(sampler_name, return_with_leftover_noise == "enable")):
        problems["end_at_step"] = f"ending at step {end_at_step} of {steps}: {problem}"
    return problems


@node(type="UNetSamplerAdvanced", display_name="UNet Sampler (Advanced)", category="sampling",
      description="Run steps start_at_step to end_at_step of the schedule for `steps` steps (ComfyUI's KSampler "
                  "Advanced): noise added or not, the result handed on still noisy or finished. SDXL base → refiner: "
                  "the base runs 0 to 20 of 25 and returns with leftover noise, the refiner runs 20 to the end "
                  "without adding noise.",
      inputs=[*_LINKS,
              Input.choice("add_noise", ["enable", "disable"], "enable",
                           tooltip="disable: the input latent is already noisy at start_at_step's noise level "
                                   "(the leftover of an earlier run)"),
              *_sampler_inputs("noise_seed", "the noise comes from a CPU generator seeded with this"),
              Input.int("start_at_step", 0, min=0, max=10000,
                        tooltip="the first step run (the noise is added at its noise level)"),
              Input.int("end_at_step", 10000, min=0, max=10000,
                        tooltip="the step to stop before; at or above steps: to the end. At or below "
                                "start_at_step nothing runs and the input latent passes through"),
              Input.choice("return_with_leftover_noise", ["disable", "enable"], "disable",
                           tooltip="when ending before the last step: enable hands on the latent still noisy at "
                                   "end_at_step's noise level; disable makes the last step finish it (to noise 0)")],
      outputs=[Output("LATENT", PortType.LATENT)], check=_check_advanced)
def unet_sampler_advanced(ctx, model, positive, negative, latent_image, add_noise, noise_seed, steps, cfg,
                          sampler_name, scheduler, start_at_step, end_at_step, return_with_leftover_noise):
    """Run steps [start_at_step, end_at_step) of the schedule; the latent's noise mask stays with the result, as
    ComfyUI keeps it, for a refiner pass over the same region."""
    from nodegraph.models.handles import Latent

    if start_at_step >= min(end_at_step, steps):
        return {"LATENT": latent_image}  # no step to run: ComfyUI passes the latent through
    latents, info, scale = _run(ctx, model, positive, negative, latent_image, seed=noise_seed, steps=steps, cfg=cfg,
                                sampler_name=sampler_name, schedule=scheduler, start_step=start_at_step,
                                end_step=end_at_step if end_at_step < steps else None,
                                add_noise=add_noise == "enable",
                                leftover_noise=return_with_leftover_noise == "enable")
    return {"LATENT": Latent(latents, noise_mask=latent_image.noise_mask, info=info, scale=scale)}


def _run(ctx, model, positive, negative, latent_image, *, seed, steps, cfg, sampler_name, schedule, denoise=1.0,
         start_step=0, end_step=None, add_noise=True, leftover_noise=False):
    """Sample with the model's checkpoint, LoRAs and hypernetworks: (latents on the CPU in float32, their
    GenerationInfo, their scale)."""
    import torch

    from nodegraph.models.handles import GenerationInfo
    from nodegraph.models.hypernetwork import applied_hypernetworks
    from nodegraph.models.lora import applied_loras
    from nodegraph.models.preview import latent_preview
    from nodegraph.models.sampling import sample
    from nodegraph.models.schedulers import build_scheduler

    checkpoint = ctx.models.checkpoint(model.checkpoint, model.prediction)
    family = checkpoint.family
    batch, _, latent_height, latent_width = latent_image.samples.shape
    from_noise = (latent_image.is_empty and denoise >= 1.0 and start_step == 0 and add_noise
                  and latent_image.noise_mask is None)
    noise_mask, masked_image = latent_image.noise_mask, None
    if family.inpaint and from_noise:
        # Text to image with an inpainting model: repaint everything over a blank (zero-latent) image.
        noise_mask = torch.ones(batch, 1, latent_height, latent_width)
        masked_image = torch.zeros(batch, 4, latent_height, latent_width)
    hypernetworks = [(ctx.models.hypernetwork(path), strength) for path, strength in model.hypernetworks]
    # The model's latent scale; input latents encoded with another factor (a VAE override loaded as another model
    # line) are brought to it.
    scale = checkpoint.vae.config.scaling_factor if checkpoint.vae is not None else family.vae_scaling_factor
    init_latents = latent_image.samples
    if latent_image.scale and latent_image.scale != scale:
        init_latents = init_latents * (scale / latent_image.scale)

    # The ControlNets the conditionings carry, loaded (and checked against the model's line) before sampling.
    from nodegraph.models.controlnet import controlnets_for

    controlnets = controlnets_for(ctx.models, family, positive, negative)

    def progress(step, total, latents):
        ctx.progress(step, total, preview=latent_preview(latents, family.base) if ctx.previews else None)

    with ctx.models.use(checkpoint.unet, *controlnets.values()) as device, \
            applied_loras(model.loras, family, checkpoint.unet, checkpoint.text_encoders, parts=("unet",),
                          report=lambda node, level, text: ctx.report(text, level, node)), \
            applied_hypernetworks(checkpoint.unet, hypernetworks):
        latents = sample(
            unet=checkpoint.unet, scheduler=build_scheduler(checkpoint.scheduler_config, sampler_name, schedule),
            family=family, positive=positive, negative=negative, seed=seed, steps=steps, cfg=cfg,
            width=latent_width * 8, height=latent_height * 8, batch_size=batch,
            init_latents=None if from_noise else init_latents.to(device),
            denoise=denoise, noise_mask=None if noise_mask is None else noise_mask.to(device),
            masked_image_latents=None if masked_image is None else masked_image.to(device), progress=progress,
            start_step=start_step, end_step=end_step, add_noise=add_noise, leftover_noise=leftover_noise,
            controlnets=controlnets)
    partial = start_step > 0 or end_step is not None
    info = GenerationInfo(
        prompt=positive.text, negative_prompt=negative.text, steps=steps, sampler=sampler_name, schedule=schedule,
        cfg=cfg, seed=seed, width=latent_width * 8, height=latent_height * 8, denoise=denoise,
        model_name=model.name, model_path=model.checkpoint, clip_skip=positive.clip_skip,
        loras=tuple((spec.path.stem, spec.unet_strength) for spec in model.loras),
        extra=((("Steps run", f"{start_step}-{end_step if end_step is not None else steps}"),) if partial else ()))
    return latents.float().cpu(), info, scale
