"""Textual-inversion embeddings: reading every common file format, and registering them on text encoders.

Formats (FORMATS.md): AUTOMATIC1111 ``.pt`` (``string_to_param["*"]``), ``.safetensors`` (``emb_params``),
diffusers (``{"<token>": T[d]}``) and SDXL (``clip_l`` / ``clip_g``, one per text encoder). Registration goes through
diffusers' ``load_textual_inversion`` so prompts encode exactly as diffusers' pipelines encode them; a multi-vector
embedding expands to ``token token_1 token_2 …``. Registering is undone on leaving the block, so a cached text
encoder never keeps another graph branch's tokens.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nodegraph.models.errors import CorruptModelError, IncompatibleModelError
from nodegraph.models.families import Family
from nodegraph.models.offline import import_diffusers
from nodegraph.models.safe_load import load_state_dict

_WIDTH_BASE = {768: "sd1", 1024: "sd2"}


@dataclass(frozen=True)
class Embedding:
    """The vectors of one embedding file, by the text encoder they belong to (``text_encoder``, ``text_encoder_2``),
    each shaped [vectors, width]."""

    path: Path
    vectors: Mapping[str, Any]

    @property
    def base(self) -> str:
        """The model line it fits: ``sd1``, ``sd2`` or ``sdxl``."""
        if "text_encoder_2" in self.vectors:
            return "sdxl"
        width = next(iter(self.vectors.values())).shape[-1]
        return _WIDTH_BASE.get(width, "unknown")


def read_embedding(path: str | Path) -> Embedding:
    """Read an embedding file of any supported format."""
    path = Path(path)
    data = load_state_dict(path)
    if "clip_l" in data or "clip_g" in data:
        vectors = {name: _matrix(path, data[key]) for key, name in (("clip_l", "text_encoder"),
                                                                    ("clip_g", "text_encoder_2")) if key in data}
        return Embedding(path, vectors)
    params = data.get("string_to_param")
    if isinstance(params, Mapping) and params:
        return Embedding(path, {"text_encoder": _matrix(path, next(iter(params.values())))})
    if "emb_params" in data:
        return Embedding(path, {"text_encoder": _matrix(path, data["emb_params"])})
    tensors = [value for value in data.values() if hasattr(value, "shape")]
    if len(tensors) == 1:
        return Embedding(path, {"text_encoder": _matrix(path, tensors[0])})
    raise CorruptModelError(path, "not a textual-inversion embedding (no string_to_param, emb_params, clip_l/clip_g "
                                  "or single vector)")


def _matrix(path: Path, tensor: Any) -> Any:
    if not hasattr(tensor, "shape") or tensor.dim() not in (1, 2):
        raise CorruptModelError(path, "the embedding vectors have an unexpected shape")
    return (tensor.unsqueeze(0) if tensor.dim() == 1 else tensor).detach().float()


def check_embedding(embedding: Embedding, family: Family, text_encoders: Mapping[str, Any]) -> None:
    """Refuse an embedding whose widths do not match the model's text encoders, naming both."""
    for component, vectors in embedding.vectors.items():
        encoder = text_encoders.get(component)
        width = encoder.get_input_embeddings().embedding_dim if encoder is not None else None
        if width != vectors.shape[-1]:
            raise IncompatibleModelError(embedding.path, f"is an embedding for {embedding.base.upper()} models and "
                                                         f"does not fit {family.label}")


def _host() -> Any:
    diffusers = import_diffusers()

    class Host(diffusers.loaders.TextualInversionLoaderMixin):
        """The smallest object diffusers' textual-inversion loader works on (it expects a pipeline)."""

        hf_device_map = None
        components: dict[str, Any] = {}
        tokenizer = None
        text_encoder = None

    return Host()


@contextmanager
def registered_embeddings(embeddings: Sequence[tuple[str, Embedding]], family: Family,
                          tokenizers: Mapping[str, Any], text_encoders: Mapping[str, Any]) -> Iterator[None]:
    """Within the block, each ``(token, embedding)`` is known to the tokenizers and text encoders."""
    host = _host()
    done: list[tuple[list[str], Any, Any]] = []
    try:
        for token, embedding in embeddings:
            check_embedding(embedding, family, text_encoders)
            for component, vectors in embedding.vectors.items():
                tokenizer = tokenizers[component.replace("text_encoder", "tokenizer")]
                encoder = text_encoders[component]
                vectors = vectors.to(encoder.dtype)
                host.load_textual_inversion([vectors], token=[token], tokenizer=tokenizer, text_encoder=encoder)
                added = [token] + [f"{token}_{i}" for i in range(1, vectors.shape[0])]
                done.append((added, tokenizer, encoder))
        yield
    finally:
        for tokens, tokenizer, encoder in reversed(done):
            host.unload_textual_inversion(tokens, tokenizer=tokenizer, text_encoder=encoder)
