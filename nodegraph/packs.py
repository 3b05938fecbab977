"""Builds the application's node registry: the built-in pack, user packs from the data folder, and extra folders."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from nodegraph.core.registry import NodeRegistry
from nodegraph.paths import builtin_nodes_dir, custom_nodes_dir

BUILTIN_PACKAGE = "nodegraph.nodes"


def create_registry(extra_packs: Iterable[str | Path] = (), *, user_packs: bool = True) -> NodeRegistry:
    """A registry holding the built-in nodes, then the packs in the user's ``custom_nodes`` folder (when
    `user_packs`), then each path in `extra_packs` (a pack folder, a ``.py`` file, or a folder of packs).

    Broken packs end up in ``registry.problems``; they never stop the rest from loading.
    """
    registry = NodeRegistry()
    registry.load_pack(builtin_nodes_dir(), package=BUILTIN_PACKAGE, name="builtin")
    if user_packs and custom_nodes_dir().is_dir():
        registry.load_packs_from(custom_nodes_dir())
    for path in map(Path, extra_packs):
        is_single_pack = path.suffix == ".py" or (path / "__init__.py").is_file()
        if is_single_pack:
            registry.load_pack(path)
        else:
            registry.load_packs_from(path)
    return registry
