"""Encoding a prompt into conditioning: AUTOMATIC1111's emphasis, long prompts and ``BREAK``, CLIP skip and
textual-inversion embeddings, on diffusers/transformers text encoders.

A prompt without emphasis that fits one chunk (75 tokens) encodes exactly as diffusers' pipelines encode it
(``StableDiffusionPipeline.encode_prompt`` / ``StableDiffusionXLPipeline.encode_prompt``, bit for bit), so images
match diffusers'. Beyond that:

- each chunk of up to 75 tokens is encoded on its own as ``start + tokens + end + padding`` (77 tokens, padded with
  the tokenizer's pad token) and the chunks are concatenated along the token axis (154 tokens for two chunks);
- a chunk with emphasis gets AUTOMATIC1111's rule: each token's vector is multiplied by its weight, then the whole
  chunk is rescaled so that its mean equals the mean before weighting (computed in float32; skipped where that mean
  is ~0 or would change sign, see :func:`_apply_weights`); a chunk whose weights are all 1.0 is left untouched;
- CLIP skip n (``stop_at_clip_layer = -n``): SD 1.x/2.x take ``final_layer_norm(hidden_states[-n])`` for n > 1 and the
  last hidden state for n = 1; SDXL takes ``hidden_states[-(n + 1)]`` of each encoder without the final norm
  (diffusers' default, the penultimate layer, is n = 1); SDXL's pooled embedding is the second encoder's projection
  of the first chunk;
- embeddings named in the prompt (``embedding:name`` or the bare name, see
  :func:`nodegraph.models.prompt_parser.find_embedding_references`) are registered on the encoders for the duration
  of the call and take their fragment's weight;
- prompt editing (``[from:to:when]``, ``[a|b]``): each plain prompt the prompt may turn into is encoded as above, and
  the sampler picks one per step (:meth:`nodegraph.models.conditioning.Conditioning.at_step`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from nodegraph.models.conditioning import NOMINAL_STEPS, Conditioning
from nodegraph.models.embeddings import Embedding, expand_prompt, registered_embeddings
from nodegraph.models.errors import ModelNotFoundError
from nodegraph.models.families import Family
from nodegraph.models.offline import import_torch
from nodegraph.models.prompt_parser import (
    BREAK,
    CHUNK_LENGTH,
    MAX_PROMPT_VARIANTS,
    Chunk,
    PromptBreak,
    find_embedding_references,
    parse_prompt,
    parse_schedule,
    split_chunks,
)

#: The token an embedding is registered under while a prompt is encoded. Its own token, not the embedding's name:
#: the tokenizer would find an added token even inside other words, and a name may be a vocabulary word.
_TOKEN = "<nodegraph-embedding-{}>"
#: A chunk's mean below this fraction of its mean magnitude is rounding noise: emphasis then skips the rescaling.
_NEGLIGIBLE_MEAN = 1e-4


def encode_prompt(text: str, *, family: Family, tokenizers: Mapping[str, Any], text_encoders: Mapping[str, Any],
                  clip_skip: int = 1, embeddings: Mapping[str, Embedding] | None = None,
                  max_variants: int = MAX_PROMPT_VARIANTS) -> Conditioning:
    """Encode `text` (AUTOMATIC1111 prompt syntax) with a model's tokenizers and text encoders.

    Args:
        family: the model family; its ``text_encoders`` say which encoders are used (the SDXL refiner has only
            ``text_encoder_2``).
        tokenizers, text_encoders: by diffusers component name (``tokenizer``/``text_encoder``, ``…_2``), as
            :class:`nodegraph.models.loader.LoadedCheckpoint` holds them. They are left as they were.
        clip_skip: 1 uses the last layer (AUTOMATIC1111's "Clip skip 1", ComfyUI's ``stop_at_clip_layer=-1``), 2 the
            one before, and so on.
        embeddings: the embeddings the prompt may name, by key (the token an Embedding node gives them); found by
            ``embedding:<key, file stem, file name or relative path>`` and by the bare key or file stem.
        max_variants: the most distinct plain prompts that prompt editing may produce (each is encoded).

    Returns a :class:`Conditioning` whose tensors have the text encoder's dtype and device: ``embeds`` shaped
    [1, 77 × chunks, width] and, for SDXL, ``pooled`` shaped [1, width]. A prompt with editing (``[from:to:when]``,
    ``[a|b]``, see :mod:`nodegraph.models.prompt_parser`) gives a scheduled one: each plain prompt it may turn into
    is encoded once, exactly as that prompt alone would be, and :meth:`Conditioning.at_step` picks one per step.

    Raises ValueError for a clip skip the encoders do not have, TooManyPromptVariants (a ValueError) for editing
    that makes more than `max_variants` prompts, ModelNotFoundError for ``embedding:name`` naming no known
    embedding, IncompatibleModelError for an embedding that does not fit the model.
    """
    torch = import_torch()
    components = list(family.text_encoders)
    encoders = [text_encoders[name] for name in components]
    toks = [tokenizers[name.replace("text_encoder", "tokenizer")] for name in components]
    sdxl = family.base == "sdxl"
    for encoder in encoders:
        layers = encoder.config.num_hidden_layers
        if not 1 <= clip_skip <= layers:
            raise ValueError(f"clip skip {clip_skip} is out of range: the text encoder has {layers} layers "
                             f"(use 1 to {layers})")

    schedule = parse_schedule(text)
    texts = [text] if schedule is None else schedule.texts(max_variants)
    substituted = [_substitute_embeddings(variant, embeddings or {}) for variant in texts]
    # Prompts naming the same embeddings (in the same order, so under the same tokens) share one registration.
    by_embeddings: dict[tuple, list[int]] = {}
    for index, (_, used) in enumerate(substituted):
        by_embeddings.setdefault(tuple((token, id(e)) for token, e in used.items()), []).append(index)
    encoded: dict[int, Conditioning] = {}
    for indices in by_embeddings.values():
        used = substituted[indices[0]][1]
        with (registered_embeddings(list(used.items()), family, tokenizers, text_encoders) if used
              else nullcontext()):
            for index in indices:
                embeds, pooled = _encode_fragments(torch, substituted[index][0], list(used), toks, encoders,
                                                   clip_skip, sdxl)
                encoded[index] = Conditioning(embeds, pooled, text=text, clip_skip=clip_skip)
    if len(texts) == 1:
        return encoded[0]
    variants = {variant: encoded[index] for index, variant in enumerate(texts)}
    first = variants[schedule.text_at(0, NOMINAL_STEPS)]
    return Conditioning(first.embeds, first.pooled, text=text, clip_skip=clip_skip, schedule=schedule,
                        variants=variants)


def _encode_fragments(torch: Any, fragments: Sequence[Any], tokens: Sequence[str], toks: Sequence[Any],
                      encoders: Sequence[Any], clip_skip: int, sdxl: bool) -> tuple[Any, Any]:
    """One plain prompt's ``embeds`` and (SDXL) ``pooled``, its embeddings registered under `tokens`."""
    hidden_per_chunk: list[Any] = []
    pooled = None
    chunked = [_chunks(fragments, tokenizer, tokens) for tokenizer in toks]
    if len({len(chunks) for chunks in chunked}) != 1:  # cannot happen: the tokenizers share one vocabulary
        raise RuntimeError("the text encoders' tokenizers split the prompt into different chunks")
    with torch.inference_mode():
        for index in range(len(chunked[0])):
            parts = []
            for tokenizer, encoder, chunks in zip(toks, encoders, chunked, strict=True):
                hidden, projected = _encode_chunk(torch, chunks[index], tokenizer, encoder, clip_skip, sdxl)
                parts.append(_apply_weights(torch, hidden, chunks[index]))
                if index == 0 and projected is not None:
                    pooled = projected
            dtype = encoders[-1].dtype  # diffusers: SDXL's in text_encoder_2's dtype, SD's in text_encoder's
            hidden_per_chunk.append(torch.cat([part.to(dtype) for part in parts], dim=-1) if len(parts) > 1
                                    else parts[0].to(dtype))
        embeds = torch.cat(hidden_per_chunk, dim=1) if len(hidden_per_chunk) > 1 else hidden_per_chunk[0]
    # Tensors made under inference_mode refuse later in-place use; hand out ordinary ones.
    return embeds.clone(), pooled.clone() if sdxl and pooled is not None else None


def _substitute_embeddings(text: str, embeddings: Mapping[str, Embedding]) -> tuple[list, dict[str, Embedding]]:
    """The prompt's fragments with each embedding reference replaced by the token it is registered under, and those
    tokens' embeddings in order of first use."""
    files = {key: embedding.path for key, embedding in embeddings.items()}
    tokens: dict[int, tuple[str, Embedding]] = {}  # by the embedding's identity: one may be known under several keys
    fragments = []
    for fragment in parse_prompt(text):
        if fragment is BREAK:
            fragments.append(fragment)
            continue
        out, position = [], 0
        for ref in find_embedding_references(fragment.text, files):
            if ref.key is None:
                known = sorted(embeddings)
                listed = ", ".join(known[:10]) + (f" and {len(known) - 10} more" if len(known) > 10 else "")
                raise ModelNotFoundError(Path(ref.name), f"the prompt names embedding:{ref.name}, which is not "
                                                         f"loaded (loaded embeddings: {listed or 'none'})")
            embedding = embeddings[ref.key]
            token, _ = tokens.setdefault(id(embedding), (_TOKEN.format(len(tokens)), embedding))
            out += [fragment.text[position:ref.start], token]
            position = ref.end
        out.append(fragment.text[position:])
        fragments.append(fragment._replace(text="".join(out)))
    return fragments, dict(tokens.values())


def _chunks(fragments: Sequence[Any], tokenizer: Any, tokens: Sequence[str]) -> list[Chunk]:
    """Tokenize each fragment on its own (as AUTOMATIC1111 does) and split the tokens into chunks."""
    expansions: dict[str, str] = {}  # token -> "token token_1 …", as diffusers' pipelines expand it
    groups: dict[int, tuple[int, ...]] = {}  # first id -> all ids of one registered embedding
    for token in tokens:
        expansions[token] = expand_prompt(token, tokenizer)
        ids = tuple(tokenizer.convert_tokens_to_ids(expansions[token].split()))
        groups[ids[0]] = ids

    def units() -> Iterator[tuple[tuple[int, ...], float] | PromptBreak]:
        for fragment in fragments:
            if fragment is BREAK:
                yield BREAK
                continue
            text = fragment.text
            for token, expansion in expansions.items():
                text = text.replace(token, expansion)
            ids = tokenizer(text, add_special_tokens=False, truncation=False, verbose=False).input_ids
            position = 0
            while position < len(ids):
                group = groups.get(ids[position])
                size = len(group) if group is not None and tuple(ids[position:position + len(group)]) == group else 1
                yield tuple(ids[position:position + size]), fragment.weight
                position += size

    return split_chunks(units(), comma_id=tokenizer.get_vocab().get(",</w>"))


def _encode_chunk(torch: Any, chunk: Chunk, tokenizer: Any, encoder: Any, clip_skip: int,
                  sdxl: bool) -> tuple[Any, Any]:
    """One chunk's hidden states [1, 77, width], and the pooled projection when the encoder has one."""
    length = CHUNK_LENGTH + 2  # CLIP's 77 positions (some tokenizer configs leave model_max_length unset)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    used = len(chunk.ids) + 2
    ids = [tokenizer.bos_token_id, *chunk.ids, tokenizer.eos_token_id] + [pad] * (length - used)
    device = encoder.device
    input_ids = torch.tensor([ids], dtype=torch.long, device=device)
    if sdxl:
        out = encoder(input_ids, output_hidden_states=True)
        return out.hidden_states[-(clip_skip + 1)], getattr(out, "text_embeds", None)
    mask = None
    if getattr(encoder.config, "use_attention_mask", False):  # as diffusers passes the tokenizer's mask
        mask = torch.tensor([[1] * used + [0] * (length - used)], dtype=torch.long, device=device)
    if clip_skip == 1:
        return encoder(input_ids, attention_mask=mask)[0], None
    out = encoder(input_ids, attention_mask=mask, output_hidden_states=True)
    final_layer_norm = getattr(encoder, "text_model", encoder).final_layer_norm
    return final_layer_norm(out.hidden_states[-clip_skip]), None


def _apply_weights(torch: Any, hidden: Any, chunk: Chunk) -> Any:
    """AUTOMATIC1111's emphasis: scale each token's vector by its weight, then restore the chunk's mean.

    The mean is restored only where that is well defined: when the chunk's mean is negligible next to its values
    (an encoder whose final layer norm has no bias makes it zero) or the weighting flips its sign, the ratio of the
    two means is noise and would scale or flip every vector, so the weighted vectors are returned as they are.
    """
    if all(weight == 1.0 for weight in chunk.weights):
        return hidden
    padding = hidden.shape[1] - len(chunk.weights) - 1
    weights = [1.0, *chunk.weights] + [1.0] * padding
    values = hidden.float()
    multipliers = torch.tensor(weights, dtype=torch.float32, device=hidden.device).reshape(1, -1, 1)
    original_mean = values.mean()
    weighted = values * multipliers
    ratio = original_mean / weighted.mean()
    if bool(torch.isfinite(ratio)) and ratio > 0 and original_mean.abs() > _NEGLIGIBLE_MEAN * values.abs().mean():
        weighted = weighted * ratio
    return weighted.to(hidden.dtype)
