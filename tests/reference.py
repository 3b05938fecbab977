"""diffusers' own pipelines assembled from loaded components: the reference every equivalence test compares to."""

from __future__ import annotations

import diffusers

from nodegraph.models.schedulers import build_scheduler


def reference_pipeline(ck, sampler="euler", schedule="normal", *, cls=None, vae=None):
    """diffusers' pipeline (SD or SDXL, or `cls`) on a LoadedCheckpoint's components, the scheduler built from the
    checkpoint's config; `vae` replaces the checkpoint's own."""
    scheduler = build_scheduler(ck.scheduler_config, sampler, schedule)
    parts = {"vae": vae if vae is not None else ck.vae, "unet": ck.unet, "scheduler": scheduler,
             "text_encoder": ck.text_encoders["text_encoder"], "tokenizer": ck.tokenizers["tokenizer"]}
    if ck.family.base == "sdxl":
        pipe = (cls or diffusers.StableDiffusionXLPipeline)(
            **parts, text_encoder_2=ck.text_encoders["text_encoder_2"], tokenizer_2=ck.tokenizers["tokenizer_2"],
            add_watermarker=False)
    else:
        pipe = (cls or diffusers.StableDiffusionPipeline)(**parts, safety_checker=None, feature_extractor=None,
                                                          requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe
