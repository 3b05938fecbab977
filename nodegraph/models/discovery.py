"""Finding model files: the folders of each kind in the data folder and in the AUTOMATIC1111 / ComfyUI installs
users already have, plus ComfyUI's ``extra_model_paths.yaml``.

A model is named by its path relative to its kind's folder (``sdxl/juggernaut.safetensors``), so workflows stay
portable between machines; an absolute path works too.

Content decides the kind where folders are often mixed up: an embedding saved into a LoRA folder (a common mistake;
EasyNegative is often shipped that way) is listed and resolved as an embedding, not as a LoRA. Only small
``.safetensors`` files are looked into (their header alone, no torch), each once per size and modification time.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from nodegraph.core.schema import InputSpec
from nodegraph.core.types import describe_value
from nodegraph.core.validate import shorten
from nodegraph.models.embeddings import EMBEDDING_IMAGE_SUFFIXES, png_embedding_text
from nodegraph.models.errors import ModelNotFoundError
from nodegraph.models.safe_load import MODEL_SUFFIXES
from nodegraph.paths import app_home

#: Folder names of each kind, ComfyUI's first, then AUTOMATIC1111's, looked up under ``ROOT/models/`` and ``ROOT/``.
KIND_FOLDERS: dict[str, tuple[str, ...]] = {
    "checkpoints": ("checkpoints", "Stable-diffusion"),
    "loras": ("loras", "Lora", "LyCORIS"),
    "vae": ("vae", "VAE"),
    "embeddings": ("embeddings",),
    "hypernetworks": ("hypernetworks",),
    "upscale_models": ("upscale_models", "ESRGAN", "RealESRGAN", "SwinIR"),
    "controlnet": ("controlnet", "ControlNet"),
}
#: Files of these folder kinds whose content is another kind are listed under that kind instead.
MISFILED: dict[str, str] = {"loras": "embeddings"}
#: Only files up to this size are looked into (embeddings are kilobytes; LoRAs are megabytes).
MISFILED_MAX_BYTES = 4 * 1024 * 1024
#: The longest file name (one path part) and whole path, in bytes, that file systems accept.
NAME_MAX_BYTES = 255
PATH_MAX_BYTES = 4096
#: ComfyUI's extra_model_paths.yaml keys that map onto our kinds.
_YAML_KEYS = {"checkpoints": "checkpoints", "loras": "loras", "vae": "vae", "embeddings": "embeddings",
              "hypernetworks": "hypernetworks", "upscale_models": "upscale_models", "controlnet": "controlnet"}


@dataclass
class ModelFolders:
    """The folders searched for each kind of model.

    Args:
        roots: install roots (an AUTOMATIC1111 or ComfyUI folder, or any folder laid out the same way), searched
            after the data folder; a root's ``extra_model_paths.yaml`` is read too.
        include_home: also search the nodegraph data folder's ``models/``.
    """

    roots: list[Path] = field(default_factory=list)
    include_home: bool = True
    extra: dict[str, list[Path]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.roots = [Path(root).expanduser() for root in self.roots]
        for root in self.roots:
            yaml_file = root / "extra_model_paths.yaml"
            if yaml_file.is_file():
                for kind, folders in read_extra_model_paths(yaml_file).items():
                    self.extra.setdefault(kind, []).extend(folders)

    def folders(self, kind: str) -> list[Path]:
        """The existing folders of `kind` ("checkpoints", "loras", "vae", "embeddings", "hypernetworks")."""
        if kind not in KIND_FOLDERS:
            raise ValueError(f"unknown model kind {kind!r}; known: {', '.join(KIND_FOLDERS)}")
        roots = ([app_home()] if self.include_home else []) + self.roots
        candidates = [root / sub / name for root in roots for sub in ("models", "") for name in KIND_FOLDERS[kind]]
        candidates += self.extra.get(kind, [])
        seen: set[Path] = set()
        result = []
        for folder in candidates:
            if _is_dir(folder):
                key = folder.resolve()
                if key not in seen:
                    seen.add(key)
                    result.append(folder)
        return result

    def list(self, kind: str) -> list[str]:
        """Every model name of `kind`: paths relative to their folder, with ``/`` separators, sorted. Embeddings
        found in LoRA folders are listed as embeddings and not as LoRAs (see :func:`found_in`)."""
        names: dict[str, None] = {}
        for folder in self.folders(kind):
            for path in _entries(folder):
                if _is_model(path, kind) and not (kind in MISFILED and _content_kind(path) == MISFILED[kind]):
                    names[path.relative_to(folder).as_posix()] = None
        for other, folder in self._misfiled_folders(kind):
            for path in _entries(folder):
                if _is_model(path, other) and _content_kind(path) == kind:
                    names.setdefault(path.relative_to(folder).as_posix(), None)
        return sorted(names, key=str.lower)

    def _misfiled_folders(self, kind: str) -> list[tuple[str, Path]]:
        """(folder kind, folder) of the other kinds' folders where files of `kind` are also looked for (MISFILED)."""
        return [(other, folder) for other, content in MISFILED.items() if content == kind
                for folder in self.folders(other)]

    def resolve(self, kind: str, name: str) -> Path:
        """The file for a model name (or an absolute path); ModelNotFoundError listing the folders searched, or saying
        why `name` (a user value: any JSON type, any length) cannot name a file at all."""
        why = name_problem(name)
        if why:
            raise ModelNotFoundError(None, why)
        try:
            return self._resolve(kind, name)
        except OSError as error:  # e.g. a folder on the way that cannot be read
            raise ModelNotFoundError(Path(name), f"cannot be looked up ({error.strerror or error})") from None

    def _resolve(self, kind: str, name: str) -> Path:
        candidate = Path(name)
        with contextlib.suppress(RuntimeError):  # "~user/…", a user with no known home: a relative name, not found
            candidate = candidate.expanduser()
        if candidate.is_absolute():
            if candidate.exists():
                return candidate
            raise ModelNotFoundError(candidate, "no such file")
        for folder in self.folders(kind):
            path = folder / name
            if path.exists() and _is_model(path, kind):
                return path
        for other, folder in self._misfiled_folders(kind):
            path = folder / name
            if path.is_file() and _is_model(path, other) and _content_kind(path) == kind:
                return path
        searched = ", ".join(str(folder) for folder in self.folders(kind)) or "no folders exist yet"
        raise ModelNotFoundError(Path(name), f"not found in the {kind} folders ({searched})")

    def found_in(self, kind: str, name: str) -> str | None:
        """Where a model of `kind` was found when that is another kind's folder (an embedding in a LoRA folder):
        e.g. ``"found in the loras folder /…/models/Lora"``; None when it sits where it belongs."""
        try:
            path = self.resolve(kind, name)
        except ModelNotFoundError:
            return None
        for other, folder in self._misfiled_folders(kind):
            if folder in path.parents:
                return f"found in the {other} folder {folder}"
        return None


def name_problem(name: object) -> str | None:
    """Why a user-given model name cannot name a file on any file system (not a string, empty, a NUL character, not
    encodable, a part over 255 bytes, over 4096 bytes in all), or None; checked before any path operation."""
    if not isinstance(name, str):
        return f"expected a model name (a string), got {describe_value(name)}"
    if not name:
        return "the model name is empty"
    if "\0" in name:
        return f"{shorten(name)} is not a valid file name (it holds a NUL character)"
    try:
        encoded = os.fsencode(name)
    except UnicodeError:
        return f"{shorten(name)} is not a valid file name (it cannot be encoded)"
    parts = encoded.replace(b"\\", b"/").split(b"/")
    if len(encoded) > PATH_MAX_BYTES or any(len(part) > NAME_MAX_BYTES for part in parts):
        return f"{shorten(name)} is not a valid file name (too long: {len(encoded)} bytes)"
    return None


def _is_dir(path: Path) -> bool:
    try:
        return path.is_dir()
    except (OSError, ValueError):
        return False


def _entries(folder: Path) -> list[Path]:
    """Everything under `folder`, sorted; a part that cannot be read ends the walk with what was found so far."""
    found: list[Path] = []
    with contextlib.suppress(OSError):
        found.extend(folder.rglob("*"))  # extend keeps what came before an error
    return sorted(found)


def _is_model(path: Path, kind: str) -> bool:
    try:
        if not path.exists():  # a dangling symlink, or a symlink loop
            return False
        return _is_model_file(path, kind)
    except (OSError, ValueError):
        return False


def _is_model_file(path: Path, kind: str) -> bool:
    if path.is_dir():  # diffusers folders: a whole pipeline, or one ControlNet model
        return ((kind == "checkpoints" and (path / "model_index.json").is_file())
                or (kind == "controlnet" and (path / "config.json").is_file()))
    if path.name.startswith("."):
        return False
    suffix = path.suffix.lower()
    if kind == "embeddings" and suffix in EMBEDDING_IMAGE_SUFFIXES:
        # AUTOMATIC1111 embeddings saved as images; other PNGs (previews such as name.preview.png) are not models.
        return not path.name.lower().endswith(".preview.png") and png_embedding_text(path) is not None
    return suffix in MODEL_SUFFIXES


_KIND_OF_CONTENT = {"embedding": "embeddings", "lora": "loras"}
_content_cache: dict[tuple[str, int, int], str | None] = {}
_content_lock = threading.Lock()


def _content_kind(path: Path) -> str | None:
    """The folder kind a small ``.safetensors`` file's content says it is (``"embeddings"``, ``"loras"``), from its
    header alone; None for other files, big files and files that cannot be read. Cached by path, size and mtime."""
    from nodegraph.models.errors import ModelError
    from nodegraph.models.identify import identify

    if path.suffix.lower() != ".safetensors":
        return None
    try:
        stat = path.stat()
    except OSError:
        return None
    if stat.st_size > MISFILED_MAX_BYTES:
        return None
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    with _content_lock:
        if key in _content_cache:
            return _content_cache[key]
    try:
        kind = _KIND_OF_CONTENT.get(identify(path).kind)
    except (ModelError, OSError, ValueError):
        kind = None
    with _content_lock:
        _content_cache[key] = kind
    return kind


def read_extra_model_paths(path: Path) -> dict[str, list[Path]]:
    """Folders by kind from a ComfyUI ``extra_model_paths.yaml`` (each section: ``base_path`` plus kind keys holding
    one path or several, one per line)."""
    import yaml

    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        return {}
    result: dict[str, list[Path]] = {}
    for section in doc.values() if isinstance(doc, dict) else ():
        if not isinstance(section, dict):
            continue
        base = Path(str(section.get("base_path", path.parent))).expanduser()
        if not base.is_absolute():
            base = path.parent / base
        for key, kind in _YAML_KEYS.items():
            value = section.get(key)
            if isinstance(value, str):
                result.setdefault(kind, []).extend(base / line.strip() for line in value.splitlines() if line.strip())
    return result


def file_check(folders: ModelFolders) -> Callable[[InputSpec, str], str | None]:
    """A validator hook: why a file-naming input does not name a model in `folders` (None when it does)."""

    def check(spec: InputSpec, value: str) -> str | None:
        try:
            folders.resolve(spec.file_kind or "", value)
        except (ModelNotFoundError, ValueError) as error:
            return str(error)
        return None

    return check


def all_models(folders: ModelFolders, kinds: Iterable[str] = KIND_FOLDERS) -> dict[str, list[str]]:
    """Every model name by kind."""
    return {kind: folders.list(kind) for kind in kinds}
