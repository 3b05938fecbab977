"""Tiny random-weight Stable Diffusion files, laid out exactly like the real ones, for the tests and the demo.

Checkpoints in the original single-file layouts (``model.diffusion_model.*``, ``first_stage_model.*``,
``cond_stage_model.*``, SDXL's ``conditioner.embedders.*``) as ``.safetensors`` or Lightning ``.ckpt``; standalone
VAEs; LoRAs (kohya, LoCon, diffusers/PEFT, LoHa, LoKr); textual inversion embeddings; AUTOMATIC1111 hypernetworks;
ControlNets (lllyasviel's and diffusers' layouts); and a malicious pickle. Every structural fact that identification
relies on is real (names, layer layout, cross-attention and text encoder widths, vocabulary); channel counts and
depths are small. Weights use the default initialisation under a fixed seed, so images from them have structure.

Files are big-ish for "tiny" because the text encoders keep their real widths and 49,408-token vocabulary: about
115 MB (SD 1.x), 165 MB (SD 2.x), 410 MB (SDXL base) in float16. Pass ``only=`` to :func:`write_fixture_set` for
what a test needs.
"""

from __future__ import annotations

from nodegraph.models.synthetic.addons import (
    EMBEDDING_FORMATS,
    HYPERNETWORK_WIDTHS,
    LORA_FORMATS,
    hypernetwork_data,
    lora_state_dict,
    write_embedding,
    write_hypernetwork,
    write_lora,
)
from nodegraph.models.synthetic.controlnet import (
    CONTROLNET_LAYOUTS,
    build_controlnet,
    controlnet_state_dict,
    write_controlnet,
)
from nodegraph.models.synthetic.fixtures import CHECKPOINTS, FIXTURE_KEYS, MALICIOUS_MARKER, write_fixture_set
from nodegraph.models.synthetic.ldm_layout import (
    checkpoint_state_dict,
    documented_extras,
    ldm_unet_name,
    text_encoder_prefixes,
    unet_module_map,
)
from nodegraph.models.synthetic.pickles import (
    LIGHTNING_CALLBACK,
    LightningModelCheckpoint,
    ckpt_safe_globals,
    write_malicious_pickle,
)
from nodegraph.models.synthetic.tiny import (
    build_components,
    build_vae,
    scheduler_config,
    text_encoder_configs,
    unet_config,
    vae_config,
)
from nodegraph.models.synthetic.writers import (
    ldm_state_dict,
    write_checkpoint,
    write_diffusers_config,
    write_vae,
)

__all__ = [
    "CHECKPOINTS",
    "CONTROLNET_LAYOUTS",
    "EMBEDDING_FORMATS",
    "FIXTURE_KEYS",
    "HYPERNETWORK_WIDTHS",
    "LIGHTNING_CALLBACK",
    "LORA_FORMATS",
    "MALICIOUS_MARKER",
    "LightningModelCheckpoint",
    "build_components",
    "build_controlnet",
    "build_vae",
    "checkpoint_state_dict",
    "ckpt_safe_globals",
    "controlnet_state_dict",
    "documented_extras",
    "hypernetwork_data",
    "ldm_state_dict",
    "ldm_unet_name",
    "lora_state_dict",
    "scheduler_config",
    "text_encoder_configs",
    "text_encoder_prefixes",
    "unet_config",
    "unet_module_map",
    "vae_config",
    "write_checkpoint",
    "write_controlnet",
    "write_diffusers_config",
    "write_embedding",
    "write_fixture_set",
    "write_hypernetwork",
    "write_lora",
    "write_malicious_pickle",
    "write_vae",
]
