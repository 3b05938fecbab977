"""What flows along a CONDITIONING edge: encoded prompt embeddings, plus the pooled embedding SDXL needs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Conditioning:
    """An encoded prompt.

    Args:
        embeds: the text-encoder hidden states, shaped [1, tokens, width] (77 tokens per chunk of the prompt; SDXL
            concatenates both encoders along the width).
        pooled: SDXL's pooled embedding of its second text encoder, shaped [1, width]; None for SD 1.x/2.x.
        text: the prompt as the user wrote it (for image metadata).
        clip_skip: the CLIP skip it was encoded with (for image metadata).
    """

    embeds: Any
    pooled: Any | None = None
    text: str = ""
    clip_skip: int = 1
