"""Helpers shared by the built-in nodes (not scanned for nodes: the underscore keeps it private).

Nodes import torch and the model layer only inside their run functions, so listing node types never loads torch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from nodegraph.core.errors import NodeError


def file_fingerprint(kind: str, input_name: str) -> Callable[..., str | None]:
    """A fingerprint hook for an input naming a model file: the file's path, size and modification time, so an
    edited or replaced file is never served from the cache."""

    def fingerprint(settings: Any, **literals: Any) -> str | None:
        models = settings.services.get("models")
        name = literals.get(input_name)
        if models is None or not name:
            return None
        from nodegraph.models.cache import file_key
        from nodegraph.models.errors import ModelError

        try:
            return "|".join(map(str, file_key(models.resolve(kind, name))))
        except (ModelError, OSError):
            return None  # the node itself reports the missing file when it runs

    return fingerprint


def vae_module(ctx: Any, vae: Any) -> Any:
    """The VAE module behind a VAE handle (a checkpoint's own, or a standalone file)."""
    if vae.from_checkpoint:
        checkpoint = ctx.models.checkpoint(vae.path)
        if checkpoint.vae is None:
            raise NodeError(f"checkpoint {vae.name!r} has no VAE inside: connect a VAE Override node")
        return checkpoint.vae
    return ctx.models.vae_file(vae.path, vae.family)


def same_base(ctx: Any, what: str, path: Any, addon_base: str, family: str) -> None:
    """Refuse an add-on made for another model line than the checkpoint it is applied to."""
    from nodegraph.models.families import get_family

    target = get_family(family)
    if addon_base not in ("unknown", target.base):
        raise NodeError(f"{path.name} is a {what} for {addon_base.upper()} models and cannot be used with "
                        f"{target.label}")
