"""The desktop app: the main window, the NodeGraphQt adapter and the run worker (the only package importing Qt).

This module itself imports no Qt: the command line uses :func:`defer_interrupts` before the app's (slow) imports.
"""

from __future__ import annotations

import contextlib
import os
import signal

_interrupted: list[int] = []


def defer_interrupts() -> None:
    """Hold a Ctrl+C that arrives while the app starts, instead of raising KeyboardInterrupt somewhere inside Qt.

    A KeyboardInterrupt in the middle of PySide's start-up prints a traceback and is swallowed (the app keeps
    running) or crashes Qt; held here, it closes the window through its normal close path once the window is up
    (:func:`replay_interrupt`). A second Ctrl+C before then quits at once.
    """

    def note(number: int, frame: object) -> None:
        if _interrupted:
            os.write(2, b"nodegraph: cancelled\n")
            os._exit(130)  # still starting: nothing to save yet
        _interrupted.append(number)

    with contextlib.suppress(ValueError):  # not the main thread (an embedding host): signals stay as they are
        signal.signal(signal.SIGINT, note)


def start_interrupted() -> bool:
    """True when Ctrl+C was pressed while the app was starting (see :func:`defer_interrupts`)."""
    return bool(_interrupted)


def replay_interrupt() -> None:
    """Deliver a Ctrl+C held during start-up again, now that the window's own signal handling is installed."""
    if _interrupted:
        _interrupted.clear()
        signal.raise_signal(signal.SIGINT)
