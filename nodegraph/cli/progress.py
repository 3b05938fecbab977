"""Prints engine events on stderr: one line per node, a redrawn progress bar with ETA on a terminal, and one line per
message a node reports ("info:" or "warning:", naming the node the message is about)."""

from __future__ import annotations

import sys
import time
from typing import TextIO

from nodegraph.core.graph import Workflow
from nodegraph.engine.events import (
    Event,
    NodeCached,
    NodeFailed,
    NodeFinished,
    NodeMessage,
    NodeStarted,
    Progress,
)


def node_label(node_id: str, workflow: Workflow | None = None, node_type: str = "") -> str:
    """How terminal output names a node: its id, then its title (when the user gave one) and type, e.g.
    ``lora ("Style", LoraLoader)`` or ``lora (LoraLoader)``; the type comes from `workflow` when it holds the node."""
    node = workflow.nodes.get(node_id) if workflow is not None else None
    if node is not None:
        node_type = node.type
    parts = [f'"{node.title}"'] if node is not None and node.title else []
    if node_type:
        parts.append(node_type)
    return f"{node_id} ({', '.join(parts)})" if parts else node_id


class ProgressPrinter:
    """An event sink for the terminal. On a TTY the bar is redrawn in place; otherwise a line every 10 %.

    `workflow` (set it before each run) lets message lines name a node by title and type; without it the types seen
    in the run's events are used.
    """

    def __init__(self, stream: TextIO | None = None, width: int = 30, workflow: Workflow | None = None):
        self.stream = stream or sys.stderr
        self.width = width
        self.workflow = workflow
        self.is_tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self._step_started = 0.0
        self._last_decile = -1
        self._bar_open = False
        self._types: dict[str, str] = {}
        self._said: set[tuple[str, str, str, str]] = set()

    def __call__(self, event: Event) -> None:
        if isinstance(event, NodeStarted):
            self._types[event.node_id] = event.node_type
            self._line(f"running {event.node_id} ({event.node_type})")
            self._step_started, self._last_decile = time.monotonic(), -1
        elif isinstance(event, NodeCached):
            self._types[event.node_id] = event.node_type
            self._line(f"cached  {event.node_id} ({event.node_type})")
        elif isinstance(event, NodeFinished):
            self._line(f"done    {event.node_id} in {event.seconds:.2f} s")
        elif isinstance(event, NodeFailed):
            self._line(f"failed  {event.node_id}: {event.message}")
        elif isinstance(event, NodeMessage) and _first_time(self._said, event):
            self._line(self.message_line(event))
        elif isinstance(event, Progress) and event.total > 0:
            self._bar(event)

    def message_line(self, event: NodeMessage) -> str:
        """The line printed for a node's message: ``  warning: lora (LoraLoader): text``, on one line."""
        prefix = "warning:" if event.level == "warning" else "info:"
        label = node_label(event.node_id, self.workflow, self._types.get(event.node_id, ""))
        text = " ".join(line.strip() for line in event.text.splitlines() if line.strip())
        return f"  {prefix} {label}: {text}"

    def _bar(self, event: Progress) -> None:
        fraction = min(max(event.step / event.total, 0.0), 1.0)
        elapsed = time.monotonic() - self._step_started
        eta = elapsed / fraction - elapsed if fraction > 0 else 0.0
        filled = int(fraction * self.width)
        text = (f"  [{'#' * filled}{'.' * (self.width - filled)}] {event.step}/{event.total}"
                f"  {elapsed:.1f}s elapsed, ETA {eta:.1f}s")
        if self.is_tty:
            self.stream.write("\r" + text)
            self.stream.flush()
            self._bar_open = True
        elif int(fraction * 10) > self._last_decile:
            self._last_decile = int(fraction * 10)
            self._line(text)

    def _line(self, text: str) -> None:
        if self._bar_open:  # end the bar's line: it stays as it was, and the next redraw starts below this line
            self.stream.write("\n")
            self._bar_open = False
        self.stream.write(text + "\n")
        self.stream.flush()


class MessageLog:
    """An event sink that keeps each run's node messages, in order and each once, for ``--json``: ``{"node", "level",
    "text"}``."""

    def __init__(self) -> None:
        self.by_run: dict[str, list[dict[str, str]]] = {}
        self._said: set[tuple[str, str, str, str]] = set()

    def __call__(self, event: Event) -> None:
        if isinstance(event, NodeMessage) and _first_time(self._said, event):
            self.by_run.setdefault(event.run_id, []).append(
                {"node": event.node_id, "level": event.level, "text": event.text})

    def messages(self, run_id: str) -> list[dict[str, str]]:
        """The messages of run `run_id` (empty when it reported none)."""
        return list(self.by_run.get(run_id, ()))


def _first_time(said: set[tuple[str, str, str, str]], event: NodeMessage) -> bool:
    """Whether this run has not had this exact message about this node yet (both prompt encoders applying one LoRA
    say the same thing: it is shown once)."""
    key = (event.run_id, event.node_id, event.level, event.text)
    if key in said:
        return False
    said.add(key)
    return True
