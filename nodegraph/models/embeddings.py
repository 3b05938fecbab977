"""Textual-inversion embeddings: reading every common file format, and registering them on text encoders.

Formats (FORMATS.md, docs/addon-formats.md): AUTOMATIC1111 ``.pt`` (``string_to_param["*"]``), ``.safetensors``
(``emb_params``), AUTOMATIC1111 ``.png`` (the same dictionary as JSON in a ``sd-ti-embedding`` text chunk), diffusers
(``{"<token>": T[d]}``) and SDXL (``clip_l`` / ``clip_g``, one per text encoder). Registration goes through
diffusers' ``load_textual_inversion`` so prompts encode exactly as diffusers' pipelines encode them; a multi-vector
embedding expands to ``token token_1 token_2 …``. Registering is undone on leaving the block, so a cached text
encoder never keeps another graph branch's tokens.
"""

from __future__ import annotations

import base64
import binascii
import json
import struct
import zlib
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nodegraph.models.errors import CorruptModelError, IncompatibleModelError
from nodegraph.models.families import Family
from nodegraph.models.offline import import_diffusers, import_torch
from nodegraph.models.safe_load import load_state_dict

_WIDTH_BASE = {768: "sd1", 1024: "sd2"}
#: Image files that may hold an embedding (AUTOMATIC1111's "embedding as an image").
EMBEDDING_IMAGE_SUFFIXES = (".png",)
#: The PNG text chunk AUTOMATIC1111 writes the embedding into.
PNG_EMBEDDING_KEY = "sd-ti-embedding"
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


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
    data = read_png_embedding(path) if path.suffix.lower() in EMBEDDING_IMAGE_SUFFIXES else load_state_dict(path)
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


def png_embedding_text(path: str | Path) -> str | None:
    """The ``sd-ti-embedding`` text of a PNG (tEXt, zTXt or iTXt chunk), or None when it has none.

    Walks the chunk list, reading only text chunks (the image data is skipped), so listing a folder of PNGs is cheap.
    Embeddings hidden in the pixels (AUTOMATIC1111's fallback for images without the chunk) are not read.
    """
    path = Path(path)
    try:
        with path.open("rb") as handle:
            if handle.read(8) != _PNG_SIGNATURE:
                return None
            while True:
                head = handle.read(8)
                if len(head) < 8:
                    return None
                length, kind = struct.unpack(">I4s", head)
                if kind == b"IEND":
                    return None
                if kind not in (b"tEXt", b"zTXt", b"iTXt"):
                    handle.seek(length + 4, 1)  # the data and its CRC
                    continue
                body = handle.read(length)
                handle.seek(4, 1)
                text = _png_text(kind, body)
                if text is not None:
                    return text
    except (OSError, struct.error):
        return None


def _png_text(kind: bytes, body: bytes) -> str | None:
    """The text of one PNG text chunk if its keyword is ``sd-ti-embedding``."""
    keyword, _, rest = body.partition(b"\0")
    if keyword.decode("latin-1") != PNG_EMBEDDING_KEY:
        return None
    try:
        if kind == b"tEXt":
            return rest.decode("latin-1")
        if kind == b"zTXt":  # compression method byte, then zlib data
            return zlib.decompress(rest[1:]).decode("latin-1")
        compressed, _method, rest = rest[0], rest[1], rest[2:]  # iTXt: flag, method, language\0, keyword\0, text
        text = rest.split(b"\0", 2)[-1]
        return (zlib.decompress(text) if compressed else text).decode("utf-8")
    except (zlib.error, UnicodeDecodeError, IndexError):
        return None


def read_png_embedding(path: str | Path) -> dict[str, Any]:
    """AUTOMATIC1111's embedding dictionary from a PNG's ``sd-ti-embedding`` chunk (base64 of JSON).

    A1111 writes each tensor as ``{"TORCHTENSOR": nested lists of numbers}``: plain JSON, nothing is unpickled. The
    tensors come back as float32 (A1111 loads them as float32 too).
    """
    path = Path(path)
    text = png_embedding_text(path)
    if text is None:
        raise CorruptModelError(path, f"a PNG without an embedding (no {PNG_EMBEDDING_KEY!r} text chunk; embeddings "
                                      "hidden in the image's pixels are not supported)")
    torch = import_torch()

    def decode(obj: dict[str, Any]) -> Any:
        if "TORCHTENSOR" in obj:
            try:
                return torch.tensor(obj["TORCHTENSOR"], dtype=torch.float32)
            except (TypeError, ValueError, RuntimeError):
                raise CorruptModelError(path, "the embedding's TORCHTENSOR is not a numeric array") from None
        return obj

    try:
        data = json.loads(base64.b64decode(text, validate=False), object_hook=decode)
    except (binascii.Error, ValueError) as error:
        raise CorruptModelError(path, f"unreadable {PNG_EMBEDDING_KEY} chunk: {error}") from None
    if not isinstance(data, dict):
        raise CorruptModelError(path, f"the {PNG_EMBEDDING_KEY} chunk holds no dictionary")
    return data


def _matrix(path: Path, tensor: Any) -> Any:
    from nodegraph.models.integrity import require_finite_floats

    if not hasattr(tensor, "shape") or tensor.dim() not in (1, 2):
        raise CorruptModelError(path, "the embedding vectors have an unexpected shape")
    require_finite_floats(path, {"vectors": tensor}, "embedding vectors")
    return (tensor.unsqueeze(0) if tensor.dim() == 1 else tensor).detach().float()


def check_embedding(embedding: Embedding, family: Family, text_encoders: Mapping[str, Any]) -> None:
    """Refuse an embedding whose widths do not match the model's text encoders, naming both.

    Every text encoder of the model needs vectors of its width: an SD 1.x embedding (768 wide) must not register on
    SDXL's first encoder alone, leaving the second one to read the token as plain text. Vectors for an encoder the
    model lacks are not used (``clip_l`` on the SDXL refiner, which has only the second encoder).
    """
    have = ", ".join(f"{c.replace('_', ' ')} {v.shape[-1]} wide" for c, v in embedding.vectors.items())
    if embedding.base not in ("unknown", family.base):
        raise IncompatibleModelError(embedding.path, f"is an embedding for {embedding.base.upper()} models ({have}) "
                                                     f"and does not fit {family.label}")
    for component, encoder in text_encoders.items():
        vectors = embedding.vectors.get(component)
        width = encoder.get_input_embeddings().embedding_dim
        if vectors is None or vectors.shape[-1] != width:
            raise IncompatibleModelError(embedding.path, f"is an embedding for {embedding.base.upper()} models "
                                                         f"({have}) and does not fit {family.label} (its "
                                                         f"{component.replace('_', ' ')} is {width} wide)")


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
    """Within the block, each ``(token, embedding)`` is known to the tokenizers and text encoders.

    Encode prompts through :func:`expand_prompt` first: a multi-vector embedding's token must become
    ``token token_1 …`` as diffusers' pipelines do. On leaving, the tokens are removed from the tokenizers and each
    text encoder gets its original input-embedding module (the same parameter, size and values) back.
    """
    host = _host()
    done: list[tuple[list[str], Any, Any]] = []
    originals: dict[int, tuple[Any, ...]] = {}
    try:
        for token, embedding in embeddings:
            check_embedding(embedding, family, text_encoders)
            for component, encoder in text_encoders.items():
                vectors = embedding.vectors[component]
                tokenizer = tokenizers[component.replace("text_encoder", "tokenizer")]
                if id(encoder) not in originals:
                    module = encoder.get_input_embeddings()
                    originals[id(encoder)] = (encoder, module, module.weight, module.weight.data,
                                              module.num_embeddings, getattr(encoder.config, "vocab_size", None))
                vectors = vectors.to(encoder.dtype)
                added = [token] + [f"{token}_{i}" for i in range(1, vectors.shape[0])]
                # diffusers grows the matrix with transformers' default mean_resizing, which samples the new rows from
                # the covariance of the whole vocabulary (seconds for SDXL's 1280-wide encoder) and then overwrites
                # them; growing it first to the same size makes that call a no-op.
                encoder.resize_token_embeddings(len(tokenizer) + len(added), mean_resizing=False)
                try:
                    host.load_textual_inversion([vectors], token=[token], tokenizer=tokenizer, text_encoder=encoder)
                except ValueError as error:  # the token is taken (a vocabulary word, or registered twice)
                    raise IncompatibleModelError(embedding.path, f"cannot be registered as {token!r}: "
                                                                 f"{str(error).splitlines()[0]}") from None
                done.append((added, tokenizer, encoder))
        yield
    finally:
        for tokens, tokenizer, encoder in reversed(done):
            host.unload_textual_inversion(tokens, tokenizer=tokenizer, text_encoder=encoder)
        # transformers resizes the embedding module in place (new ``weight.data``) and diffusers' unloading puts a new
        # module with copied rows in: give back the original module, parameter and tensor.
        for encoder, module, weight, data, count, vocab_size in originals.values():
            if module.weight is not weight:
                module.weight = weight
            weight.data = data
            module.num_embeddings = count
            encoder.set_input_embeddings(module)
            if vocab_size is not None:
                encoder.config.vocab_size = vocab_size


def expand_prompt(prompt: str, tokenizer: Any) -> str:
    """`prompt` as `tokenizer` must read it: each registered multi-vector token followed by its extra tokens
    (``token token_1 token_2 …``), exactly as diffusers' pipelines convert prompts before tokenizing them."""
    return _host().maybe_convert_prompt(prompt, tokenizer)
