"""Offline by construction: every hub lookup is disabled before diffusers or transformers is imported.

Import torch, diffusers and transformers only through these helpers (or after calling :func:`ensure_offline`).
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from types import ModuleType

_OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "HF_HUB_DISABLE_IMPLICIT_TOKEN": "1",
    "DIFFUSERS_NO_ADVISORY_WARNINGS": "1",
}


def ensure_offline() -> None:
    """Make any attempt of huggingface_hub, transformers or diffusers to reach the hub fail at once.

    The libraries read these variables when they are first imported, so this runs before importing them; if
    huggingface_hub was imported already (by someone else), its constant is switched too.
    """
    os.environ.update(_OFFLINE_ENV)
    constants = sys.modules.get("huggingface_hub.constants")
    if constants is not None:
        constants.HF_HUB_OFFLINE = True


def import_torch() -> ModuleType:
    """torch, imported offline."""
    ensure_offline()
    import torch

    return torch


def import_diffusers() -> ModuleType:
    """diffusers, imported offline, logging only errors (its dtype-cast advice is noise for our single-file loads),
    and peft's adapter warnings silenced: a LoRA that does not fit printed hundreds of lines before our one-line
    refusal. ``NODEGRAPH_DEBUG=1`` keeps all of them."""
    ensure_offline()
    import diffusers

    if not os.environ.get("NODEGRAPH_DEBUG"):
        diffusers.utils.logging.set_verbosity_error()
        logging.getLogger("peft").setLevel(logging.ERROR)
        warnings.filterwarnings("ignore", category=UserWarning, module=r"peft(\.|$)")
    return diffusers


def import_transformers() -> ModuleType:
    """transformers, imported offline, logging only errors (its load reports list other adapters' keys)."""
    ensure_offline()
    import transformers

    if not os.environ.get("NODEGRAPH_DEBUG"):
        transformers.utils.logging.set_verbosity_error()
    return transformers
