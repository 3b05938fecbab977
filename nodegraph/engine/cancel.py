"""Cooperative cancellation: a token the caller sets and the executor and nodes check."""

from __future__ import annotations

import threading

from nodegraph.core.errors import Cancelled


class CancelToken:
    """A thread-safe flag: :meth:`cancel` from any thread; the run checks it between nodes and at each step."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        """Ask the run to stop at its next check."""
        self._event.set()

    @property
    def cancelled(self) -> bool:
        """True once :meth:`cancel` was called."""
        return self._event.is_set()

    def check(self) -> None:
        """Raise :class:`Cancelled` if cancellation was requested."""
        if self._event.is_set():
            raise Cancelled()
