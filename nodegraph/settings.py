"""The user's app settings: model folders, output folder, device and precision, previews, autosave, recent files.

Kept as one small JSON file in the user's config folder (``$NODEGRAPH_HOME`` when set), read by the desktop app and
by the CLI so that a model folder added in the app is searched by ``nodegraph run`` too. Torch-free and Qt-free.
A damaged or hand-edited file never stops the app: unreadable values fall back to their defaults and the problem is
reported in :attr:`AppSettings.problem`.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

DEVICES_HINT = "auto, cpu, cuda, cuda:N or mps"
PRECISIONS = ("auto", "fp16", "bf16", "fp32")
AUTOSAVE_RANGE_S = (10, 600)
MAX_RECENT_FILES = 10
SETTINGS_FILE = "settings.json"


def config_dir() -> Path:
    """The folder holding settings.json: ``$NODEGRAPH_HOME`` if set, else the platform's user config folder."""
    override = os.environ.get("NODEGRAPH_HOME")
    if override:
        return Path(override).expanduser()
    import platformdirs

    return platformdirs.user_config_path("nodegraph", appauthor=False)


@dataclass
class AppSettings:
    """What the user chose in the settings dialog (and the app remembers between starts).

    Args:
        model_roots: extra model folders: AUTOMATIC1111 or ComfyUI installs, or folders laid out the same way
            (searched after the data folder's ``models/``).
        output_dir: where images are saved; None for the default (the data folder's ``output/``).
        device: "auto", "cpu", "cuda", "cuda:N" or "mps".
        precision: "auto" (fp16 on GPUs, fp32 on the CPU), "fp16", "bf16" or "fp32".
        previews: show the live latent preview while sampling.
        autosave_seconds: how often unsaved work is written to the recovery folder.
        recent_files: workflow files opened or saved, newest first.
        first_start_done: the first-start guidance was shown once.
    """

    model_roots: list[str] = field(default_factory=list)
    output_dir: str | None = None
    device: str = "auto"
    precision: str = "auto"
    previews: bool = True
    autosave_seconds: int = 60
    recent_files: list[str] = field(default_factory=list)
    first_start_done: bool = False
    problem: str | None = field(default=None, compare=False, repr=False)

    @classmethod
    def load(cls, folder: Path | None = None) -> AppSettings:
        """Read the settings (defaults when there is no file yet; damaged values become defaults, with a problem).
        Temporary files left by a settings save that was killed are removed first."""
        from nodegraph.core.workflow_io import remove_stale_temp_files

        path = (folder or config_dir()) / SETTINGS_FILE
        remove_stale_temp_files(path.parent)
        if not path.is_file():
            return cls()
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            return cls(problem=f"could not read {path}: {error}; using the default settings")
        if not isinstance(data, dict):
            return cls(problem=f"could not read {path}: not a JSON object; using the default settings")
        settings, bad = cls(), []
        for item in fields(cls):
            if item.name == "problem" or item.name not in data:
                continue
            value = data[item.name]
            if _valid(item.name, value):
                setattr(settings, item.name, list(value) if isinstance(value, list) else value)
            else:
                bad.append(item.name)
        if bad:
            settings.problem = f"{path}: ignored invalid {', '.join(bad)}; using the defaults for them"
        return settings

    def save(self, folder: Path | None = None) -> Path:
        """Write the settings atomically (a crash mid-save keeps the previous file); returns the file's path."""
        from nodegraph.core.workflow_io import write_text_atomic

        path = (folder or config_dir()) / SETTINGS_FILE
        data = {key: value for key, value in asdict(self).items() if key != "problem"}
        write_text_atomic(path, json.dumps(data, indent=2, sort_keys=True) + "\n")
        return path

    def add_recent(self, path: str | Path) -> None:
        """Put `path` first in the recent files (once), keeping at most MAX_RECENT_FILES."""
        entry = str(Path(path).expanduser().resolve())
        self.recent_files = [entry, *[p for p in self.recent_files if p != entry]][:MAX_RECENT_FILES]

    def output_folder(self) -> Path:
        """The folder images are saved into."""
        from nodegraph.paths import default_output_dir

        return Path(self.output_dir).expanduser() if self.output_dir else default_output_dir()

    def model_root_paths(self) -> list[Path]:
        """The extra model folders as paths."""
        return [Path(root).expanduser() for root in self.model_roots]


def _valid(name: str, value: Any) -> bool:
    if name in ("model_roots", "recent_files"):
        return isinstance(value, list) and all(isinstance(item, str) and item for item in value)
    if name == "output_dir":
        return value is None or (isinstance(value, str) and bool(value))
    if name == "device":
        import re

        return isinstance(value, str) and re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", value) is not None
    if name == "precision":
        return value in PRECISIONS
    if name in ("previews", "first_start_done"):
        return isinstance(value, bool)
    if name == "autosave_seconds":
        low, high = AUTOSAVE_RANGE_S
        return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high
    return False
