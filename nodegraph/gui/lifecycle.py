"""How the app process starts and ends around the main window: a termination signal (SIGTERM from a session
logout, ``kill``, a package manager; Ctrl+C in the terminal) is a close request like the window's close button, so
unsaved work is offered for saving and the session ends cleanly instead of leaving a crash behind.

Two switches for smoke tests and benchmarks, read from the environment: ``NODEGRAPH_REPORT_FIRST_PAINT=1`` prints
``nodegraph: first paint at <seconds since the epoch>`` on stderr when the window first paints, and
``NODEGRAPH_GUI_QUIT_AFTER_MS=N`` closes the window N ms after it shows.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys
import time

from PySide6 import QtCore, QtWidgets

CLOSE_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGINT", "SIGHUP") if hasattr(signal, name))


class SignalCloser(QtCore.QObject):
    """While alive, the signals in :data:`CLOSE_SIGNALS` close `window` (through its normal close path).

    Python runs signal handlers only between bytecodes, and the Qt event loop runs none while idle; the handler's
    byte on a socket pair (``signal.set_wakeup_fd``) wakes a QSocketNotifier, which runs the close on the UI thread.
    """

    def __init__(self, window: QtWidgets.QWidget):
        super().__init__(window)
        self.window = window
        self.received: list[int] = []
        self._reader, self._writer = socket.socketpair()
        for end in (self._reader, self._writer):
            end.setblocking(False)
        self._previous_fd = signal.set_wakeup_fd(self._writer.fileno())
        self._previous = {number: signal.signal(number, self._note) for number in CLOSE_SIGNALS}
        self._notifier = QtCore.QSocketNotifier(self._reader.fileno(), QtCore.QSocketNotifier.Type.Read, self)
        self._notifier.activated.connect(self._on_wakeup)
        window.destroyed.connect(self.restore)

    def _note(self, number: int, frame: object) -> None:
        self.received.append(number)

    def _on_wakeup(self) -> None:
        try:
            while self._reader.recv(64):
                pass
        except BlockingIOError:
            pass
        if self.received:
            self.received.clear()
            modal = QtWidgets.QApplication.activeModalWidget()
            if isinstance(modal, QtWidgets.QDialog) and modal is not self.window:
                modal.reject()  # its own event loop ends first; then the window closes from the main loop
            QtCore.QTimer.singleShot(0, self.window.close)

    def restore(self) -> None:
        """Put the previous handlers back (the window is gone)."""
        if self._previous:
            for number, handler in self._previous.items():
                signal.signal(number, handler)
            signal.set_wakeup_fd(self._previous_fd)
            self._previous = {}


class FirstPaintReporter(QtCore.QObject):
    """Prints the time of `window`'s first paint on stderr, once."""

    def __init__(self, window: QtWidgets.QWidget):
        super().__init__(window)
        self.done = False
        window.installEventFilter(self)

    def eventFilter(self, obj: QtCore.QObject, event: QtCore.QEvent) -> bool:  # noqa: N802 (Qt override)
        if not self.done and event.type() == QtCore.QEvent.Type.Paint:
            self.done = True
            print(f"nodegraph: first paint at {time.time():.6f}", file=sys.stderr, flush=True)
        return False


def watch_window(window: QtWidgets.QWidget) -> None:
    """Install the close-on-signal handling, and the smoke-test switches the environment asks for."""
    with contextlib.suppress(ValueError):  # not the main thread (an embedding host): signals stay as they are
        SignalCloser(window)
    if os.environ.get("NODEGRAPH_REPORT_FIRST_PAINT"):
        FirstPaintReporter(window)
    quit_after = os.environ.get("NODEGRAPH_GUI_QUIT_AFTER_MS")
    if quit_after and quit_after.isdigit():
        QtCore.QTimer.singleShot(int(quit_after), window.close)
