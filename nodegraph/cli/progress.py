"""Prints engine events on stderr: one line per node, and a redrawn progress bar with ETA on a terminal."""

from __future__ import annotations

import sys
import time
from typing import TextIO

from nodegraph.engine.events import Event, NodeCached, NodeFailed, NodeFinished, NodeStarted, Progress


class ProgressPrinter:
    """An event sink for the terminal. On a TTY the bar is redrawn in place; otherwise a line every 10 %."""

    def __init__(self, stream: TextIO | None = None, width: int = 30):
        self.stream = stream or sys.stderr
        self.width = width
        self.is_tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self._step_started = 0.0
        self._last_decile = -1
        self._bar_open = False

    def __call__(self, event: Event) -> None:
        if isinstance(event, NodeStarted):
            self._line(f"running {event.node_id} ({event.node_type})")
            self._step_started, self._last_decile = time.monotonic(), -1
        elif isinstance(event, NodeCached):
            self._line(f"cached  {event.node_id} ({event.node_type})")
        elif isinstance(event, NodeFinished):
            self._line(f"done    {event.node_id} in {event.seconds:.2f} s")
        elif isinstance(event, NodeFailed):
            self._line(f"failed  {event.node_id}: {event.message}")
        elif isinstance(event, Progress) and event.total > 0:
            self._bar(event)

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
        if self._bar_open:
            self.stream.write("\n")
            self._bar_open = False
        self.stream.write(text + "\n")
        self.stream.flush()
