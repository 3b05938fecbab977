"""LyCORIS and DoRA files told apart by their tensor names alone (no torch: identification runs on UI threads)."""

from __future__ import annotations

from collections.abc import Iterable

#: LyCORIS algorithms that exist but are not merged here (their tensor names → name shown to the user)
UNSUPPORTED_ALGORITHMS = {"oft_blocks": "OFT", "oft_diag": "OFT", "boft_": "BOFT", "a1.weight": "GLoRA",
                          "b1.weight": "GLoRA"}
#: prefixes of the layers of each component
UNET_PREFIXES = ("lora_unet_", "lycoris_")
TEXT_PREFIXES = {"lora_te_": "text_encoder", "lora_te1_": "text_encoder", "lora_te2_": "text_encoder_2"}



def split_key(key: str) -> tuple[str, str]:
    """``lora_unet_x_to_k.lokr_w1`` → (``lora_unet_x_to_k``, ``lokr_w1``)."""
    module, _, suffix = key.partition(".")
    return module, suffix


def is_merge_format(names: Iterable[str]) -> bool:
    """Whether a kohya-named file needs the merge path: LyCORIS tensors (LoHa, LoKr, full, IA3, norm) or DoRA."""
    for name in names:
        suffix = split_key(name)[1]
        if suffix in ("dora_scale", "diff", "on_input", "w_norm") or suffix.startswith(("hada_", "lokr_")):
            return True
    return False


def unsupported_algorithm(names: Iterable[str]) -> str | None:
    """The name of a LyCORIS algorithm this module cannot merge (OFT, BOFT, GLoRA), if the file uses one."""
    for name in names:
        suffix = split_key(name)[1]
        for marker, label in UNSUPPORTED_ALGORITHMS.items():
            if suffix.startswith(marker):
                return label
    return None
