"""The bundled diffusers configs and CLIP tokenizer, so that models are built without any model hub.

``resources/configs/<family>/`` holds, for every family in :data:`nodegraph.models.families.FAMILIES`, the
``model_index.json`` and one folder per component with its diffusers / transformers config (``unet/config.json``,
``vae/config.json``, ``scheduler/scheduler_config.json``, ``text_encoder/config.json``, …), taken from the official
diffusers repository of that family. The tokenizer folders hold only ``tokenizer_config.json`` and
``special_tokens_map.json``: the vocabulary is one for all families and lives in ``resources/tokenizers/clip/``.

Pitfall: a family's ``tokenizer`` folder is *not* a complete tokenizer. ``CLIPTokenizer.from_pretrained`` on it (as
``from_single_file(..., config=family_config_dir(f))`` does for any component it is not handed) silently builds a
tokenizer with a two- or three-entry vocabulary that maps every word to one id. Always build tokenizers with
:func:`load_tokenizer` and pass them in (``tokenizer=``, ``tokenizer_2=``).

This module imports nothing heavy at import time; :func:`load_tokenizer` imports transformers when called.
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nodegraph.models.families import get_family
from nodegraph.paths import resources_dir

if TYPE_CHECKING:  # pragma: no cover
    from transformers import CLIPTokenizer

#: The file a component folder keeps its config in, in the order they are looked for.
CONFIG_FILE_NAMES = ("config.json", "scheduler_config.json", "tokenizer_config.json")

_SPECIAL_TOKENS = ("bos_token", "eos_token", "unk_token", "pad_token")


def configs_root() -> Path:
    """The folder holding one config folder per model family (``resources/configs``)."""
    return resources_dir() / "configs"


def family_config_dir(family: str) -> Path:
    """The bundled diffusers config folder of `family` (usable as ``config=`` for diffusers' ``from_single_file``).

    Raises ValueError for an unknown family and FileNotFoundError if the bundled folder is missing (a broken install).
    """
    get_family(family)
    folder = configs_root() / family
    if not (folder / "model_index.json").is_file():
        raise FileNotFoundError(f"the bundled configs of model family {family!r} are missing: {folder}")
    return folder


def components(family: str) -> tuple[str, ...]:
    """The component folders bundled for `family` (``scheduler``, ``text_encoder``, ``tokenizer``, ``unet``, …)."""
    folder = family_config_dir(family)
    return tuple(sorted(p.name for p in folder.iterdir() if p.is_dir()))


def load_config(family: str, component: str) -> dict[str, Any]:
    """The config dict of one component of `family`: ``unet``, ``vae``, ``scheduler``, ``text_encoder``, ….

    Reads the component's ``config.json`` (``scheduler_config.json`` for the scheduler, ``tokenizer_config.json``
    for a tokenizer). The dict is fresh on every call, so callers may change it. Raises ValueError when the family
    has no such component (the SDXL refiner, for one, has only ``text_encoder_2``).
    """
    folder = family_config_dir(family) / component
    for name in CONFIG_FILE_NAMES:
        path = folder / name
        if path.is_file():
            return json.loads(path.read_text(encoding="utf-8"))
    raise ValueError(f"model family {family!r} has no component {component!r}; it has: {', '.join(components(family))}")


def tokenizer_files() -> tuple[Path, Path]:
    """The shared CLIP tokenizer files ``(vocab.json, merges.txt)`` (see ``resources/tokenizers/clip/README.md``)."""
    folder = resources_dir() / "tokenizers" / "clip"
    return folder / "vocab.json", folder / "merges.txt"


@functools.lru_cache(maxsize=1)
def _vocabulary() -> tuple[dict[str, int], tuple[tuple[str, str], ...]]:
    vocab_path, merges_path = tokenizer_files()
    vocab = json.loads(vocab_path.read_text(encoding="utf-8"))
    lines = merges_path.read_text(encoding="utf-8").splitlines()
    if not lines or not lines[0].startswith("#version"):
        raise ValueError(f"{merges_path} does not start with a '#version' header")
    merges = tuple(tuple(line.split(" ")) for line in lines[1:] if line)
    return vocab, merges


def _go_offline() -> None:
    """Keep transformers off the network: nodegraph's own switch if present, else the two environment variables."""
    try:
        from nodegraph.models.offline import ensure_offline
    except ModuleNotFoundError as error:
        if error.name != "nodegraph.models.offline":
            raise
        os.environ["HF_HUB_OFFLINE"] = "1"
        os.environ["TRANSFORMERS_OFFLINE"] = "1"
    else:
        ensure_offline()


def load_tokenizer(family: str, component: str = "tokenizer") -> CLIPTokenizer:
    """A transformers ``CLIPTokenizer`` for `family`'s `component` (``tokenizer`` or ``tokenizer_2``).

    Built from the shared vocabulary (:func:`tokenizer_files`) with the settings of that folder's
    ``tokenizer_config.json`` / ``special_tokens_map.json``: the special tokens and ``model_max_length`` (77).
    SD 1.x and SDXL's first tokenizer pad with ``<|endoftext|>`` (49407); SD 2.x and SDXL's ``tokenizer_2`` pad
    with ``"!"`` (id 0). Nothing is downloaded. Raises ValueError when the family has no such tokenizer.
    """
    folder = family_config_dir(family) / component
    config_path = folder / "tokenizer_config.json"
    if not config_path.is_file():
        root = configs_root() / family
        have = [name for name in components(family) if (root / name / "tokenizer_config.json").is_file()]
        raise ValueError(f"model family {family!r} has no tokenizer {component!r}; it has: {', '.join(have)}")
    settings = json.loads(config_path.read_text(encoding="utf-8"))
    special_path = folder / "special_tokens_map.json"
    if special_path.is_file():
        settings.update(json.loads(special_path.read_text(encoding="utf-8")))

    kwargs: dict[str, Any] = {key: _token_text(settings[key]) for key in _SPECIAL_TOKENS if key in settings}
    kwargs["model_max_length"] = int(settings.get("model_max_length", 77))

    _go_offline()
    from transformers import CLIPTokenizer

    vocab, merges = _vocabulary()
    return CLIPTokenizer(vocab=vocab, merges=list(merges), **kwargs)


def _token_text(value: Any) -> str:
    """A special token as written in a tokenizer config: a plain string or an ``AddedToken``-style dict."""
    return value["content"] if isinstance(value, dict) else str(value)


__all__ = [
    "CONFIG_FILE_NAMES",
    "components",
    "configs_root",
    "family_config_dir",
    "load_config",
    "load_tokenizer",
    "tokenizer_files",
]
