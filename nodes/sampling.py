"""The UNet Sampler: the denoising loop, with the model's LoRAs and hypernetworks applied only for its duration."""

from nodegraph.core import Input, Output, PortType, node
from nodegraph.models.schedulers import SAMPLERS, SCHEDULES, schedule_problem


def _check(seed, steps, cfg, sampler_name, scheduler, denoise):
    problem = schedule_problem(sampler_name, scheduler)
    return {"scheduler": problem} if problem else {}


@node(type="UNetSampler", display_name="UNet Sampler", category="sampling",
      description="Denoise latents with the model, guided by the positive and negative conditioning. Same weights, "
                  "prompt, sampler and seed give the same image as diffusers' pipelines, on any device.",
      inputs=[Input.link("model", PortType.MODEL), Input.link("positive", PortType.CONDITIONING),
              Input.link("negative", PortType.CONDITIONING), Input.link("latent_image", PortType.LATENT),
              Input.int("seed", 0, min=0, max=2**64 - 1, tooltip="the initial noise comes from a CPU generator "
                                                                 "seeded with this"),
              Input.int("steps", 20, min=1, max=10000),
              Input.float("cfg", 7.0, min=0.0, max=100.0, step=0.1, tooltip="classifier-free guidance scale"),
              Input.choice("sampler_name", list(SAMPLERS), "euler",
                           labels={name: spec.label for name, spec in SAMPLERS.items()}),
              Input.choice("scheduler", list(SCHEDULES), "normal",
                           labels={name: label or "Normal" for name, label in SCHEDULES.items()}),
              Input.float("denoise", 1.0, min=0.0, max=1.0, step=0.01,
                          tooltip="below 1: keep part of the input latent (image to image strength)")],
      outputs=[Output("LATENT", PortType.LATENT)], check=_check)
def unet_sampler(ctx, model, positive, negative, latent_image, seed, steps, cfg, sampler_name, scheduler, denoise):
    """Run the sampler; report each step (with a cheap preview unless previews are off) and stop within one step
    when cancelled."""
    import torch

    from nodegraph.models.handles import GenerationInfo, Latent
    from nodegraph.models.hypernetwork import applied_hypernetworks
    from nodegraph.models.lora import applied_loras
    from nodegraph.models.preview import latent_preview
    from nodegraph.models.sampling import sample
    from nodegraph.models.schedulers import build_scheduler

    if denoise <= 0:
        return {"LATENT": latent_image}  # nothing to denoise: the input passes through unchanged
    checkpoint = ctx.models.checkpoint(model.checkpoint, model.prediction)
    family = checkpoint.family
    batch, _, latent_height, latent_width = latent_image.samples.shape
    from_noise = latent_image.is_empty and denoise >= 1.0 and latent_image.noise_mask is None
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

    def progress(step, total, latents):
        ctx.progress(step, total, preview=latent_preview(latents, family.base) if ctx.previews else None)

    with ctx.models.use(checkpoint.unet) as device, \
            applied_loras(model.loras, family, checkpoint.unet, checkpoint.text_encoders), \
            applied_hypernetworks(checkpoint.unet, hypernetworks):
        latents = sample(
            unet=checkpoint.unet, scheduler=build_scheduler(checkpoint.scheduler_config, sampler_name, scheduler),
            family=family, positive=positive, negative=negative, seed=seed, steps=steps, cfg=cfg,
            width=latent_width * 8, height=latent_height * 8, batch_size=batch,
            init_latents=None if from_noise else init_latents.to(device),
            denoise=denoise, noise_mask=None if noise_mask is None else noise_mask.to(device),
            masked_image_latents=None if masked_image is None else masked_image.to(device), progress=progress)
    info = GenerationInfo(
        prompt=positive.text, negative_prompt=negative.text, steps=steps, sampler=sampler_name, schedule=scheduler,
        cfg=cfg, seed=seed, width=latent_width * 8, height=latent_height * 8, denoise=denoise,
        model_name=model.name, model_path=model.checkpoint, clip_skip=positive.clip_skip,
        loras=tuple((spec.path.stem, spec.unet_strength) for spec in model.loras))
    return {"LATENT": Latent(latents.float().cpu(), info=info, scale=scale)}
