"""Runs a workflow through the engine on a worker QThread; engine events come back to the UI thread as Qt signals."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PySide6 import QtCore

from nodegraph.core.graph import Workflow
from nodegraph.engine.cancel import CancelToken
from nodegraph.engine.context import RunSettings
from nodegraph.engine.events import Event
from nodegraph.engine.executor import Executor, RunResult


class RunWorker(QtCore.QThread):
    """One run on its own thread. `event` carries every engine event; `done` the :class:`RunResult`.

    Signals emitted here reach slots in the UI thread through queued connections, so the UI never waits on the
    engine. `settings_factory` runs on the worker thread (so a slow first import, e.g. torch, never blocks the UI).
    """

    event = QtCore.Signal(object)
    done = QtCore.Signal(object)

    def __init__(self, executor: Executor, workflow: Workflow, settings_factory: Callable[[], RunSettings],
                 parent: QtCore.QObject | None = None):
        super().__init__(parent)
        self.executor = executor
        self.workflow = workflow.copy()
        self.settings_factory = settings_factory
        self.cancel_token = CancelToken()

    def cancel(self) -> None:
        """Ask the run to stop at its next check (safe from any thread)."""
        self.cancel_token.cancel()

    def run(self) -> None:  # the worker thread
        """Run the workflow; emit `done` with the result (a failure to start is reported as a failed result)."""
        self.executor.sink = self._emit
        try:
            result: Any = self.executor.run(self.workflow, settings=self.settings_factory(), cancel=self.cancel_token)
        except Exception as error:  # noqa: BLE001 (the thread must always report back)
            result = RunResult("gui", "failed", message=f"{type(error).__name__}: {error}")
        self.done.emit(result)

    def _emit(self, event: Event) -> None:
        self.event.emit(event)
