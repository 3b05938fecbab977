"""Loader nodes: a checkpoint and the add-ons that patch it (LoRA, embedding, VAE override, hypernetwork).

They output handles — references plus patches — never weights; the encoder, sampler and decoder resolve them.
"""

from dataclasses import replace

from nodegraph.core import Input, NodeError, Output, PortType, node

from ._common import file_fingerprint, same_base


@node(type="LoadCheckpoint", display_name="Load Checkpoint", category="loaders",
      description="Load a Stable Diffusion checkpoint (SD 1.x, SD 2.x, SDXL; .safetensors, .ckpt or a diffusers "
                  "folder) from the model folders.",
      inputs=[Input.string("ckpt_name", None, file_kind="checkpoints", tooltip="a file in a checkpoints folder"),
              Input.choice("prediction", ["auto", "epsilon", "v"],
                           tooltip="SD 2.x only: v-prediction cannot be read from the weights; 'auto' follows the "
                                   "documented rule (sidecar .yaml, metadata, '512'/'base' in the name, else v)")],
      outputs=[Output("MODEL", PortType.MODEL), Output("CLIP", PortType.CLIP), Output("VAE", PortType.VAE)],
      fingerprint=file_fingerprint("checkpoints", "ckpt_name"))
def load_checkpoint(ctx, ckpt_name, prediction):
    """Load (once, through the model cache) and hand out references to the UNet, text encoders and VAE."""
    from nodegraph.models.handles import ClipHandle, ModelHandle, VaeHandle

    path = ctx.models.resolve("checkpoints", ckpt_name)
    checkpoint = ctx.models.checkpoint(path, None if prediction == "auto" else prediction)
    family = checkpoint.family.name
    return {"MODEL": ModelHandle(path, ckpt_name, family, checkpoint.info.prediction or "epsilon"),
            "CLIP": ClipHandle(path, family),
            "VAE": VaeHandle(path, ckpt_name, family, from_checkpoint=True)}


@node(type="LoadLoRA", display_name="LoRA", category="loaders",
      description="Apply a LoRA or LyCORIS file (kohya, LoCon, diffusers, LoHa, LoKr, DoRA, full, IA3) to the model "
                  "and the text encoder; chain several to stack them. The run reports how many of its layers matched.",
      inputs=[Input.link("model", PortType.MODEL), Input.link("clip", PortType.CLIP),
              Input.string("lora_name", None, file_kind="loras"),
              Input.float("strength_model", 1.0, min=-10.0, max=10.0, step=0.05),
              Input.float("strength_clip", 1.0, min=-10.0, max=10.0, step=0.05)],
      outputs=[Output("MODEL", PortType.MODEL), Output("CLIP", PortType.CLIP)],
      fingerprint=file_fingerprint("loras", "lora_name"))
def load_lora(ctx, model, clip, lora_name, strength_model, strength_clip):
    """Add the LoRA to both handles' patch lists (checked against the checkpoint's family now)."""
    from nodegraph.models.lora import LoraSpec

    path = _checked_lora(ctx, model, lora_name)
    return {"MODEL": replace(model, loras=(*model.loras, LoraSpec(path, strength_model, 0.0, ctx.node_id))),
            "CLIP": replace(clip, loras=(*clip.loras, LoraSpec(path, 0.0, strength_clip, ctx.node_id)))}


def _checked_lora(ctx, model, lora_name):
    """The LoRA file's path, after checking it fits the checkpoint's family."""
    from nodegraph.models.families import get_family
    from nodegraph.models.lora import check_lora

    path = ctx.models.resolve("loras", lora_name)
    check_lora(path, get_family(model.family))
    return path


@node(type="LoadLoRAModelOnly", display_name="LoRA (model only)", category="loaders",
      description="Apply a LoRA to the model only, leaving the text encoder as it is (ComfyUI's LoraLoaderModelOnly).",
      inputs=[Input.link("model", PortType.MODEL), Input.string("lora_name", None, file_kind="loras"),
              Input.float("strength_model", 1.0, min=-10.0, max=10.0, step=0.05)],
      outputs=[Output("MODEL", PortType.MODEL)],
      fingerprint=file_fingerprint("loras", "lora_name"))
def load_lora_model_only(ctx, model, lora_name, strength_model):
    """Add the LoRA to the MODEL handle's patch list only."""
    from nodegraph.models.lora import LoraSpec

    path = _checked_lora(ctx, model, lora_name)
    return {"MODEL": replace(model, loras=(*model.loras, LoraSpec(path, strength_model, 0.0, ctx.node_id)))}


@node(type="LoadEmbedding", display_name="Embedding", category="loaders",
      description="Make a textual-inversion embedding usable in prompts under a token (by default its file name). "
                  "Embeddings in the embeddings folders also work without this node, as embedding:name.",
      inputs=[Input.link("clip", PortType.CLIP), Input.string("embedding_name", None, file_kind="embeddings"),
              Input.string("token", "", tooltip="the word to write in prompts; empty: the file name")],
      outputs=[Output("CLIP", PortType.CLIP)],
      fingerprint=file_fingerprint("embeddings", "embedding_name"))
def load_embedding(ctx, clip, embedding_name, token):
    """Add the embedding under its token to the CLIP handle."""
    path = ctx.models.resolve("embeddings", embedding_name)
    embedding = ctx.models.embedding(path)
    same_base(ctx, "textual-inversion embedding", path, embedding.base, clip.family)
    token = token.strip() or path.stem
    if any(c.isspace() for c in token):
        raise NodeError(f"the token {token!r} must be one word")
    return {"CLIP": replace(clip, embeddings=(*clip.embeddings, (token, path)))}


@node(type="LoadVAE", display_name="VAE Override", category="loaders",
      description="Use a standalone VAE file instead of the checkpoint's own (sharper details, no washed-out "
                  "colours, or a checkpoint that ships without a VAE).",
      inputs=[Input.string("vae_name", None, file_kind="vae")], outputs=[Output("VAE", PortType.VAE)],
      fingerprint=file_fingerprint("vae", "vae_name"))
def load_vae(ctx, vae_name):
    """A handle on the VAE file (loaded by the decoder/encoder, once)."""
    from nodegraph.models.handles import VaeHandle

    path = ctx.models.resolve("vae", vae_name)
    info = ctx.models.identify(path)
    if info.kind != "vae":
        raise NodeError(f"{path.name} is a {info.kind}, not a VAE")
    ctx.models.vae_file(path, "sd1")  # load now, so a broken file fails here, naming this node
    return {"VAE": VaeHandle(path, vae_name, "sd1", from_checkpoint=False)}


@node(type="LoadHypernetwork", display_name="Hypernetwork", category="loaders",
      description="Apply an AUTOMATIC1111 hypernetwork to the model's attention layers.",
      inputs=[Input.link("model", PortType.MODEL), Input.string("hypernetwork_name", None, file_kind="hypernetworks"),
              Input.float("strength", 1.0, min=-10.0, max=10.0, step=0.05)],
      outputs=[Output("MODEL", PortType.MODEL)],
      fingerprint=file_fingerprint("hypernetworks", "hypernetwork_name"))
def load_hypernetwork(ctx, model, hypernetwork_name, strength):
    """Add the hypernetwork to the MODEL handle's patches."""
    path = ctx.models.resolve("hypernetworks", hypernetwork_name)
    info = ctx.models.identify(path)
    if info.kind != "hypernetwork":
        raise NodeError(f"{path.name} is a {info.kind}, not a hypernetwork")
    same_base(ctx, "hypernetwork", path, info.family, model.family)
    ctx.models.hypernetwork(path)
    return {"MODEL": replace(model, hypernetworks=(*model.hypernetworks, (path, strength)))}
