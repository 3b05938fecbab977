"""Conditioning nodes: encode a prompt (AUTOMATIC1111 emphasis, prompt editing, long prompts, embeddings) and set CLIP
skip."""

from dataclasses import replace
from pathlib import Path

from nodegraph.core import Input, NodeError, Output, PortType, node


def _embeddings_for(ctx, clip, text, base=None):
    """The embeddings a prompt may use: the ones added by Embedding nodes (under their tokens) and those of the
    embeddings folders whose name appears in the text (loaded only then).

    A folder embedding made for another model line than `base` (``sd1``, ``sd2``, ``sdxl``) that the prompt names
    only as a bare word stays plain text, as in AUTOMATIC1111 and ComfyUI: the word is left out here and the node
    reports a warning naming the word, the file and both families (``ctx.report``: the CLI prints it, the app shows
    it on the node). Named as ``embedding:name`` it is kept, so the encoder refuses it with the two families named.
    """
    found = {token: ctx.models.embedding(path) for token, path in clip.embeddings}
    folded = text.casefold()
    for name in ctx.models.folders.list("embeddings"):
        stem = Path(name).stem
        if stem.casefold() in folded and stem not in found:  # the encoder then matches exactly (explicit or bare)
            path = ctx.models.resolve("embeddings", name)
            embedding = ctx.models.embedding(path)
            if base is not None and embedding.base not in ("unknown", base) and not _named_explicitly(text, stem,
                                                                                                        path):
                if not _named(text, stem, path):  # a longer word merely contains the name
                    continue
                ctx.report(f"the prompt word {stem!r} is left as text: embeddings/{name} is an embedding for "
                           f"{embedding.base.upper()} models, not {base.upper()}", level="warning")
                continue
            found[stem] = embedding
    return found


def _references(text, stem, path):
    from nodegraph.models.prompt_parser import find_embedding_references

    return [ref for ref in find_embedding_references(text, {stem: path}) if ref.key == stem]


def _named(text, stem, path):
    """Whether `text` names the folder embedding `stem` at all (bare or explicit)."""
    return bool(_references(text, stem, path))


def _named_explicitly(text, stem, path):
    """Whether `text` names the folder embedding `stem` as ``embedding:…`` (not only as a bare word)."""
    return any(ref.explicit for ref in _references(text, stem, path))


def _folder_embeddings_fingerprint(settings, text):
    """The identity (path, size, modification time) of each folder embedding the prompt may use, so adding, editing
    or removing one re-encodes the prompt instead of serving it from the cache (Embedding nodes have their own)."""
    models = settings.services.get("models")
    if models is None or not text:
        return None
    from nodegraph.models.cache import file_key
    from nodegraph.models.errors import ModelError

    folded = text.casefold()
    keys = []
    for name in models.folders.list("embeddings"):
        if Path(name).stem.casefold() in folded:  # the same test as _embeddings_for
            try:
                keys.append("|".join(map(str, file_key(models.resolve("embeddings", name)))))
            except (ModelError, OSError):
                keys.append(f"{name}|unreadable")
    return "\n".join(keys) or None


@node(type="CLIPTextEncode", display_name="CLIP Text Encode", category="conditioning",
      description="Encode a prompt. AUTOMATIC1111 syntax: (word), ((word)), (word:1.3), [word], \\( escapes, BREAK, "
                  "prompt editing [from:to:when] (when a step, or a fraction like 0.5 of the sampler's steps) and "
                  "[a|b] (alternating each step); prompts over 75 tokens continue in further chunks; embeddings as "
                  "embedding:name or by name.",
      inputs=[Input.link("clip", PortType.CLIP), Input.string("text", "", multiline=True)],
      outputs=[Output("CONDITIONING", PortType.CONDITIONING)], fingerprint=_folder_embeddings_fingerprint)
def clip_text_encode(ctx, clip, text):
    """Encode with the CLIP handle's LoRAs, embeddings and CLIP skip applied for this call only."""
    from nodegraph.models.lora import applied_loras
    from nodegraph.models.prompt_encoder import encode_prompt
    from nodegraph.models.prompt_parser import TooManyPromptVariants

    checkpoint = ctx.models.checkpoint(clip.checkpoint)
    embeddings = _embeddings_for(ctx, clip, text, checkpoint.family.base)
    with ctx.models.use(*checkpoint.text_encoders.values()), \
            applied_loras(clip.loras, checkpoint.family, checkpoint.unet, checkpoint.text_encoders, parts=("text",),
                          report=lambda node, level, text: ctx.report(text, level, node)):
        try:
            conditioning = encode_prompt(text, family=checkpoint.family, tokenizers=checkpoint.tokenizers,
                                         text_encoders=checkpoint.text_encoders, clip_skip=clip.clip_skip,
                                         embeddings=embeddings)
        except TooManyPromptVariants as error:
            raise NodeError(f"text: {error}") from None
        except ValueError as error:  # e.g. a CLIP skip deeper than this text encoder
            raise NodeError(str(error)) from None
    return {"CONDITIONING": replace(conditioning, text=text, clip_skip=clip.clip_skip)}


@node(type="CLIPSetLastLayer", display_name="CLIP Skip", category="conditioning",
      description="Stop the text encoder early: -1 uses the last layer, -2 the penultimate (AUTOMATIC1111's "
                  "'Clip skip 2', common for anime models), and so on.",
      inputs=[Input.link("clip", PortType.CLIP), Input.int("stop_at_clip_layer", -1, min=-24, max=-1)],
      outputs=[Output("CLIP", PortType.CLIP)])
def clip_set_last_layer(ctx, clip, stop_at_clip_layer):
    """Record the layer on the CLIP handle (-1 → CLIP skip 1, -2 → 2, …)."""
    return {"CLIP": replace(clip, clip_skip=-stop_at_clip_layer)}
