"""What a node sees while it runs: its identity, progress reporting, cancellation checks and the run's settings.

Nodes never reach into globals; anything shared (the model cache, the output folder, the device) arrives here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nodegraph.core.errors import NodeError
from nodegraph.core.graph import Workflow
from nodegraph.engine.cancel import CancelToken
from nodegraph.engine.events import Event, NodeMessage, Progress


@dataclass(frozen=True)
class RunSettings:
    """Settings shared by every node of a run.

    Args:
        output_dir: where output nodes write files (None: the node must refuse to write).
        models_dirs: extra model folders given by the user (the model layer adds its own defaults).
        device: "auto", "cpu", "cuda", "cuda:N" or "mps".
        previews: whether long nodes build preview images for their progress events (off: progress only, which
            saves the work when nobody shows them).
        services: long-lived helpers by name, such as ``"models"`` (the model cache), owned by the application.
    """

    output_dir: Path | None = None
    models_dirs: tuple[Path, ...] = ()
    device: str = "auto"
    previews: bool = True
    services: Mapping[str, Any] = field(default_factory=dict)


class ExecutionContext:
    """Handed to ``run(ctx, **inputs)``: everything a node may use besides its inputs."""

    def __init__(self, *, run_id: str, node_id: str, node_type: str, workflow: Workflow, settings: RunSettings,
                 cancel: CancelToken, emit: Callable[[Event], None]):
        self.run_id = run_id
        self.node_id = node_id
        self.node_type = node_type
        self.workflow = workflow
        self.settings = settings
        self._cancel = cancel
        self._emit = emit
        self.files: list[str] = []
        #: what the node reported, as (node_id, level, text): kept with its cached outputs and shown again on a hit
        self.messages: list[tuple[str, str, str]] = []

    @property
    def output_dir(self) -> Path | None:
        """The folder output nodes write into."""
        return self.settings.output_dir

    @property
    def device(self) -> str:
        """The device the user asked for ("auto", "cpu", "cuda:0", …)."""
        return self.settings.device

    @property
    def previews(self) -> bool:
        """Whether progress reports should carry a preview image (the user may turn live previews off)."""
        return self.settings.previews

    @property
    def models(self) -> Any:
        """The model cache service; a clear error when the application provided none."""
        models = self.settings.services.get("models")
        if models is None:
            raise NodeError("no model manager is available in this run")
        return models

    @property
    def cancelled(self) -> bool:
        """True once the user asked to stop the run."""
        return self._cancel.cancelled

    def check_cancelled(self) -> None:
        """Raise :class:`~nodegraph.core.errors.Cancelled` if the user asked to stop: call it in long loops."""
        self._cancel.check()

    def progress(self, step: int, total: int, preview: Any = None) -> None:
        """Report `step` of `total` (with an optional small preview image), then honour a pending cancel."""
        self._emit(Progress(self.run_id, self.node_id, step, total, preview))
        self._cancel.check()

    def report(self, text: str, level: str = "info", node_id: str | None = None) -> None:
        """Tell the user something about this node's work (`level` ``"info"`` or ``"warning"``) without failing it;
        `node_id` names another node the message is about (default: this one). The CLI prints it, ``--json`` lists
        it and the app shows it on the node."""
        if level not in ("info", "warning"):
            raise ValueError(f"level must be 'info' or 'warning', not {level!r}")
        self.messages.append((node_id or self.node_id, level, text))
        self._emit(NodeMessage(self.run_id, node_id or self.node_id, level, text))

    def add_file(self, path: str | Path) -> None:
        """Record a file this node wrote for the user (it shows in the run's outputs)."""
        self.files.append(str(path))
