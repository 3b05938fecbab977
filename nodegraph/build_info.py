"""Which build of nodegraph is running: an installer's bundle (and with which torch build) or a Python install.

`packaging/build.py` writes ``build.json`` next to this module inside the bundle; a source checkout or a pip install
has none. The version itself is defined once, in ``nodegraph/__init__.py`` (``pyproject.toml`` reads it from there).
Pure Python: nothing here imports torch or Qt, so ``nodegraph --version`` and the About dialog stay instant.
"""

from __future__ import annotations

import functools
import json
import platform
from dataclasses import dataclass
from pathlib import Path

from nodegraph import __version__

BUILD_FILE = Path(__file__).resolve().parent / "build.json"

#: What the torch variants without a version in their name are, in words.
VARIANT_NAMES = {"cpu": "CPU only", "mps": "Apple silicon (MPS)"}


@dataclass(frozen=True)
class BuildInfo:
    """The running build: `variant` is the installer's torch variant ("cpu", "cu128", …), None for a Python
    install; `torch` the torch version the bundle was built with ("2.13.0+cpu")."""

    version: str
    variant: str | None = None
    torch: str | None = None
    platform: str | None = None
    commit: str | None = None

    @property
    def packaged(self) -> bool:
        """True inside an installer's bundle."""
        return self.variant is not None

    def variant_text(self) -> str:
        """'CPU only', 'CUDA 12.8', 'ROCm 6.4' … for a bundle's torch variant; '' for a Python install."""
        if self.variant is None:
            return ""
        if self.variant.startswith("cu") and self.variant[2:].isdigit():
            digits = self.variant[2:]
            return f"CUDA {digits[:-1]}.{digits[-1]}"
        if self.variant.startswith("rocm"):
            return f"ROCm {self.variant[4:]}"
        return VARIANT_NAMES.get(self.variant, self.variant)

    def describe(self) -> str:
        """One line for ``--version`` and the About dialog: 'nodegraph 0.1.0 (Linux installer, CPU only, torch
        2.13.0+cpu)' or 'nodegraph 0.1.0 (Python install)'."""
        if not self.packaged:
            return f"nodegraph {self.version} (Python install)"
        details = [f"{self.platform} installer" if self.platform else "installer", self.variant_text()]
        if self.torch:
            details.append(f"torch {self.torch}")
        return f"nodegraph {self.version} ({', '.join(details)})"


@functools.cache
def build_info() -> BuildInfo:
    """The running build (read once). A damaged ``build.json`` reads as a Python install of this version."""
    try:
        data = json.loads(BUILD_FILE.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return BuildInfo(__version__)
    if not isinstance(data, dict):
        return BuildInfo(__version__)
    text = {key: value for key, value in data.items() if isinstance(value, str)}
    return BuildInfo(__version__, variant=text.get("variant"), torch=text.get("torch"),
                     platform=text.get("platform"), commit=text.get("commit"))


def build_record(variant: str, torch_version: str, commit: str | None) -> dict[str, str]:
    """What `packaging/build.py` writes into ``build.json`` (the version is not repeated: the code carries it)."""
    record = {"variant": variant, "torch": torch_version, "platform": platform.system()}
    if commit:
        record["commit"] = commit
    return record
