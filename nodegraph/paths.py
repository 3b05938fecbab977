"""Where things live: bundled resources, the built-in node pack, and the user's data folder.

Installed, the built-in nodes and resources sit inside the package (``nodegraph/nodes``, ``nodegraph/resources``);
in a source checkout they are the top-level ``nodes/`` and ``resources/`` folders. Both layouts are found here, so
nothing depends on an editable install.
"""

from __future__ import annotations

import os
from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def _bundled(name: str) -> Path:
    installed = _PACKAGE / name
    return installed if installed.is_dir() else _PACKAGE.parent / name


def resources_dir() -> Path:
    """The bundled data folder (model configs, tokenizer files, starter workflows)."""
    return _bundled("resources")


def builtin_nodes_dir() -> Path:
    """The folder of the built-in node pack."""
    return _bundled("nodes")


def app_home() -> Path:
    """The user's nodegraph data folder: ``$NODEGRAPH_HOME`` if set, else the platform's user data folder."""
    override = os.environ.get("NODEGRAPH_HOME")
    if override:
        return Path(override).expanduser()
    import platformdirs

    return platformdirs.user_data_path("nodegraph", appauthor=False)


def default_output_dir() -> Path:
    """Where output nodes write images unless told otherwise."""
    return app_home() / "output"


def custom_nodes_dir() -> Path:
    """Where user node packs are loaded from."""
    return app_home() / "custom_nodes"
