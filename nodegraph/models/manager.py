"""The model manager: the one service nodes use (as ``ctx.models``) to find, load, cache and place models.

It resolves model names through the model folders, loads each file once into the :class:`ModelCache` (keyed by file
identity, so an edited file reloads), picks the device and dtype, and moves modules to the device only while they
are used.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

from nodegraph.models.cache import ModelCache, file_key
from nodegraph.models.configs import load_config
from nodegraph.models.devices import PRECISIONS, compute_dtype, cpu_fallback_note, pick_device
from nodegraph.models.discovery import ModelFolders
from nodegraph.models.embeddings import Embedding, read_embedding
from nodegraph.models.families import get_family
from nodegraph.models.hypernetwork import Hypernetwork, read_hypernetwork
from nodegraph.models.identify import ModelInfo, identify
from nodegraph.models.loader import LoadedCheckpoint, load_checkpoint, load_diffusers_folder, load_vae_file
from nodegraph.paths import app_home


class ModelManager:
    """Models for a running application.

    Args:
        folders: where model names are looked up.
        cache: the shared model cache (a default one when omitted).
        device: "auto", "cpu", "cuda", "cuda:N" or "mps".
        precision: "auto", "fp16", "bf16" or "fp32" (see :func:`~nodegraph.models.devices.compute_dtype`; the CPU
            always runs float32).
    """

    def __init__(self, folders: ModelFolders | None = None, cache: ModelCache | None = None, device: str = "auto",
                 precision: str = "auto"):
        if precision not in PRECISIONS:
            raise ValueError(f"unknown precision {precision!r}: use {', '.join(PRECISIONS)}")
        self.folders = folders or ModelFolders()
        self.cache = cache or ModelCache()
        self.requested_device = device
        self.precision = precision
        self._device: Any = None
        #: Why models run on the CPU although the machine has a GPU ('' otherwise); set when the device is chosen.
        self.device_note = ""
        self._hash_lock = threading.Lock()

    @property
    def device_chosen(self) -> bool:
        """True once the device was picked (at the first use): reading :attr:`device` before would pick it."""
        return self._device is not None

    @property
    def device(self) -> Any:
        """The torch device models run on (chosen on first use)."""
        if self._device is None:
            device = pick_device(self.requested_device)
            self.device_note = cpu_fallback_note(device)
            self._device = device
        return self._device

    @property
    def dtype(self) -> Any:
        """The dtype models run in on that device, following the precision setting."""
        return compute_dtype(self.device, self.precision)

    def resolve(self, kind: str, name: str) -> Path:
        """The file of a model name of `kind` (raises ModelNotFoundError naming the folders searched)."""
        return self.folders.resolve(kind, name)

    def identify(self, path: Path) -> ModelInfo:
        """What a file is (cached: identifying reads only a header, but pickles are unpickled)."""
        return self.cache.get(("identify", *file_key(path)), lambda: identify(path), nbytes=lambda _: 0)

    def checkpoint(self, path: Path, prediction: str | None = None) -> LoadedCheckpoint:
        """A loaded checkpoint (single file or diffusers folder), in the device's dtype, kept on the CPU until used.

        `prediction` overrides the SD 2.x v-prediction rule. The weights are loaded once whatever the override: only
        the family (and with it the scheduler config) differs between an override and the detected type.
        """
        key = ("checkpoint", *file_key(path), str(self.dtype))
        if Path(path).is_dir():
            loaded = self.cache.get(key, lambda: load_diffusers_folder(path, dtype=self.dtype))
        else:
            loaded = self.cache.get(key, lambda: load_checkpoint(path, dtype=self.dtype))
        if prediction is None or prediction == loaded.family.prediction or loaded.family.base != "sd2" \
                or loaded.family.inpaint:
            return loaded
        family = get_family("sd2-v" if prediction == "v" else "sd2")
        info = replace(loaded.info, family=family.name, prediction=prediction, prediction_source="override")
        return replace(loaded, info=info, family=family, scheduler_config=load_config(family.name, "scheduler"))

    def vae_file(self, path: Path, family: str) -> Any:
        """A standalone VAE file, loaded once."""
        return self.cache.get(("vae", *file_key(path), family, str(self.dtype)),
                              lambda: load_vae_file(path, family, dtype=self.dtype))

    def embedding(self, path: Path) -> Embedding:
        """An embedding file's vectors, read once."""
        return self.cache.get(("embedding", *file_key(path)), lambda: read_embedding(path), nbytes=lambda _: 0)

    def hypernetwork(self, path: Path) -> Hypernetwork:
        """A hypernetwork file's modules, read once."""
        return self.cache.get(("hypernetwork", *file_key(path)), lambda: read_hypernetwork(path))

    def controlnet(self, path: Path) -> Any:
        """A ControlNet (single file or diffusers folder) as diffusers' ControlNetModel, in the device's dtype (as the
        UNet), loaded once and kept on the CPU until used."""
        from nodegraph.models.controlnet import load_controlnet

        return self.cache.get(("controlnet", *file_key(path), str(self.dtype)),
                              lambda: load_controlnet(path, dtype=self.dtype))

    def upscale_model(self, path: Path) -> Any:
        """An upscale model file (ESRGAN, SwinIR, … through spandrel) as an
        :class:`~nodegraph.models.upscale.UpscaleModel`, loaded once, kept on the CPU until used, in the device's
        dtype where its architecture supports it (else float32)."""
        from nodegraph.models.upscale import load_upscale_model

        return self.cache.get(("upscale_model", *file_key(path), str(self.dtype)),
                              lambda: load_upscale_model(path, dtype=self.dtype))

    @contextmanager
    def use(self, *modules: Any) -> Iterator[Any]:
        """Move `modules` to the device for the block (offloading idle ones if needed); yields the device."""
        with self.cache.use(self.device, *modules):
            yield self.device

    def file_hash(self, path: Path) -> str:
        """The file's SHA-256 (AUTOMATIC1111 shows its first 10 hex digits as "Model hash"), computed once per file
        version and remembered in the data folder, since hashing a 7 GB checkpoint takes seconds."""
        key = "|".join(map(str, file_key(path)))
        store = app_home() / "cache" / "hashes.json"
        with self._hash_lock:
            known = _read_json(store)
            if key in known:
                return known[key]
            digest = hashlib.sha256()
            with Path(path).open("rb") as handle:
                for block in iter(lambda: handle.read(16 * 1024 * 1024), b""):
                    digest.update(block)
            known[key] = digest.hexdigest()
            store.parent.mkdir(parents=True, exist_ok=True)
            store.write_text(json.dumps(known, indent=1, sort_keys=True), encoding="utf-8")
            return known[key]

    def clear(self) -> None:
        """Free every cached model not in use."""
        self.cache.clear()


def _read_json(path: Path) -> dict[str, str]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}
