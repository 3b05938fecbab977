"""What an import returns, and the error it raises for files it cannot read."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from nodegraph.core.errors import NodegraphError
from nodegraph.core.graph import Workflow


class InteropError(NodegraphError):
    """A file or text cannot be imported (not a format we know, or malformed): the message names what and where."""


@dataclass
class ImportResult:
    """An imported workflow and what the import could not carry over.

    Args:
        workflow: the nodegraph workflow built from the source.
        source: what the source was, in words ("ComfyUI workflow (UI format)", "AUTOMATIC1111 infotext", …).
        warnings: one line per thing not honoured (an ignored field, an unknown upscaler, a placeholder node …);
            nothing is dropped silently.
    """

    workflow: Workflow
    source: str
    warnings: list[str] = field(default_factory=list)


class ModelCatalog(Protocol):
    """The model files an import may look names and hashes up in (``nodegraph.models.discovery.ModelFolders``
    satisfies it): relative names per kind, and their paths."""

    def list(self, kind: str) -> list[str]:
        """Relative names of the files of `kind` ("checkpoints", "loras", "embeddings", …)."""

    def resolve(self, kind: str, name: str) -> Path:
        """The path of the file named `name` of `kind`."""
