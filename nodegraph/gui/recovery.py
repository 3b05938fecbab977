"""Crash safety: autosave unsaved work to a recovery folder and offer it back after a session that did not end well.

Each window session owns, in ``app_home()/recovery``:

- ``<session>.lock``: the session marker (JSON: pid, start time), written at start and removed on a clean close;
- ``<session>.workflow.json``: the unsaved workflow (``workflow_io.dumps``, written atomically), only while there
  are unsaved changes;
- ``<session>.meta.json``: the file the work belongs to (or null when untitled) and when it was saved.

At start, recovery files whose session is no longer alive (its process is gone, or, in this process, its window
was destroyed without a clean close) are offered for restore. They are only deleted once the user answered that
offer in a window they could see; a start that cannot show it (offscreen, minimal) keeps them for the next one.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
import uuid
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PySide6 import QtCore, QtGui

from nodegraph.core.errors import WorkflowError
from nodegraph.core.workflow_io import dumps, loads, remove_stale_temp_files, write_text_atomic
from nodegraph.paths import app_home

DEFAULT_INTERVAL_S = 60.0

# sessions of this process that are open now (weak: a window dropped without closing counts as dead)
_LIVE: weakref.WeakValueDictionary[str, Recovery] = weakref.WeakValueDictionary()


# Qt platforms that show nothing to a user: an offer made there could never be answered by one.
HEADLESS_PLATFORMS = frozenset({"offscreen", "minimal", "minimalegl"})


def can_show_restore_offer() -> bool:
    """Whether this start can show the restore offer to a user: a running GUI application on a platform with a
    screen (not offscreen or minimal). When False, a crashed session's work must be kept, not discarded."""
    app = QtGui.QGuiApplication.instance()
    if app is None:
        return False
    return QtGui.QGuiApplication.platformName() not in HEADLESS_PLATFORMS and QtGui.QGuiApplication.primaryScreen() \
        is not None


def recovery_dir() -> Path:
    """The folder of recovery files and session markers."""
    return app_home() / "recovery"


@dataclass(frozen=True)
class RecoveryInfo:
    """Unsaved work left behind by a session that did not close cleanly."""

    session: str
    workflow_file: Path
    meta_file: Path
    path: Path | None  # the file the work belongs to; None when it was untitled
    saved_at: float  # seconds since the epoch of the last autosave

    def load_workflow(self) -> Any:
        """The recovered core workflow."""
        return loads(self.workflow_file.read_text(encoding="utf-8"))


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    if sys.platform == "win32":  # os.kill(pid, 0) would terminate the process on Windows
        import ctypes

        kernel32 = ctypes.windll.kernel32  # type: ignore[attr-defined]
        handle = kernel32.OpenProcess(0x1000, False, pid)  # PROCESS_QUERY_LIMITED_INFORMATION
        if not handle:
            return False
        code = ctypes.c_ulong()
        try:
            ok = kernel32.GetExitCodeProcess(handle, ctypes.byref(code))
        finally:
            kernel32.CloseHandle(handle)
        return bool(ok) and code.value == 259  # STILL_ACTIVE
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    return True


def _session_alive(folder: Path, session: str) -> bool:
    """True while the session that owns `session`'s files is still running."""
    try:
        marker = json.loads((folder / f"{session}.lock").read_text(encoding="utf-8"))
        pid = int(marker["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return False  # no marker (or a broken one): nobody owns these files
    if pid == os.getpid():
        owner = _LIVE.get(session)
        if owner is None:
            return False
        try:
            import shiboken6

            return shiboken6.isValid(owner)
        except ImportError:  # pragma: no cover - shiboken6 ships with PySide6
            return True
    return _pid_alive(pid)


def _remove(*paths: Path) -> None:
    for path in paths:
        with contextlib.suppress(OSError):
            path.unlink(missing_ok=True)


def pending_recoveries(folder: Path | None = None) -> list[RecoveryInfo]:
    """Recovery files of sessions that ended without a clean close, newest first. Stale markers are removed."""
    folder = recovery_dir() if folder is None else folder
    if not folder.is_dir():
        return []
    found = []
    for workflow_file in folder.glob("*.workflow.json"):
        session = workflow_file.name[: -len(".workflow.json")]
        if _session_alive(folder, session):
            continue
        meta_file = folder / f"{session}.meta.json"
        try:
            meta = json.loads(meta_file.read_text(encoding="utf-8"))
            path = Path(meta["path"]) if meta.get("path") else None
            saved_at = float(meta.get("saved_at", 0.0))
        except (OSError, ValueError, TypeError, AttributeError):
            path, saved_at = None, workflow_file.stat().st_mtime
        found.append(RecoveryInfo(session, workflow_file, meta_file, path, saved_at))
    for lock in folder.glob("*.lock"):  # markers of dead sessions that left no work behind
        session = lock.name[: -len(".lock")]
        if not (folder / f"{session}.workflow.json").exists() and not _session_alive(folder, session):
            _remove(lock)
    return sorted(found, key=lambda info: info.saved_at, reverse=True)


def discard_recovery(info: RecoveryInfo) -> None:
    """Delete a recovery left behind by a dead session (and its marker)."""
    _remove(info.workflow_file, info.meta_file, info.workflow_file.parent / f"{info.session}.lock")


class Recovery(QtCore.QObject):
    """The autosave of one window. `window` needs ``modified``, ``path``, ``adapter`` (``to_workflow``, ``load``,
    ``undo_stack``) and ``ask_restore(info) -> bool | None`` (True: restore, False: discard, None: the offer could
    not be shown or was not answered, so the files stay). Owned by the window (its Qt parent), as is the timer."""

    def __init__(self, window: Any, interval_s: float = DEFAULT_INTERVAL_S, folder: Path | None = None):
        super().__init__(window)
        self.window = window
        self.folder = recovery_dir() if folder is None else folder
        self.session = f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.workflow_file = self.folder / f"{self.session}.workflow.json"
        self.meta_file = self.folder / f"{self.session}.meta.json"
        self.lock_file = self.folder / f"{self.session}.lock"
        self._last_text: str | None = None
        self.timer = QtCore.QTimer(window)
        self.timer.timeout.connect(self.autosave)
        self.set_interval(interval_s)
        window.adapter.undo_stack.cleanChanged.connect(self._on_clean_changed)

    def set_interval(self, seconds: float) -> None:
        """Autosave every `seconds` (the app settings' autosave interval, 60 s by default; any positive value is
        accepted). Takes effect at once, also while the timer runs."""
        self.timer.setInterval(max(1, int(seconds * 1000)))

    def start(self) -> None:
        """Write the session marker and start the timer; temporary files of killed autosaves are removed first."""
        remove_stale_temp_files(self.folder)
        with contextlib.suppress(OSError):  # a read-only data folder: no crash safety, but the app still works
            write_text_atomic(self.lock_file, json.dumps({"pid": os.getpid(), "started": time.time()}) + "\n")
        _LIVE[self.session] = self
        self.timer.start()

    def autosave(self) -> bool:
        """Write the unsaved work to the recovery folder; nothing (and no file) when there are no unsaved changes."""
        if not self.window.modified:
            self.discard()
            return False
        text = dumps(self.window.adapter.to_workflow())
        path = self.window.path
        try:
            if text != self._last_text or not self.workflow_file.exists():
                write_text_atomic(self.workflow_file, text)
            meta = {"path": str(Path(path).resolve()) if path else None, "saved_at": time.time(),
                    "session": self.session}
            write_text_atomic(self.meta_file, json.dumps(meta, indent=2) + "\n")
        except OSError:
            return False
        self._last_text = text
        return True

    def discard(self) -> None:
        """Remove this session's recovery files (after a save, or when the work is back to its saved state)."""
        self._last_text = None
        _remove(self.workflow_file, self.meta_file)

    def close_cleanly(self) -> None:
        """A normal end of the session: stop the timer, remove the recovery files and the session marker."""
        self.timer.stop()
        self.discard()
        _remove(self.lock_file)
        _LIVE.pop(self.session, None)

    def offer_restore(self) -> bool:
        """Offer each left-behind recovery (newest first) through ``window.ask_restore``; restore the first accepted
        one into the window (modified, keeping its original path) and discard the declined ones. An offer that could
        not be shown or was left unanswered stops here and keeps the rest for the next start. True if restored."""
        for info in pending_recoveries(self.folder):
            try:
                workflow = info.load_workflow()
            except (OSError, WorkflowError, ValueError):
                discard_recovery(info)
                continue
            answer = self.window.ask_restore(info)
            if answer is None:
                return False
            if not answer:
                discard_recovery(info)
                continue
            self.restore(info, workflow)
            return True
        return False

    def restore(self, info: RecoveryInfo, workflow: Any) -> None:
        """Load a recovered workflow into the window, mark it modified, and take the recovery over."""
        upgrade = getattr(self.window, "registry", None)
        if upgrade is not None:
            from nodegraph.core.migrations import upgrade_node_versions

            upgrade_node_versions(workflow, upgrade)
        self.window.adapter.load(workflow)
        self.window.path = info.path
        self.window.adapter.undo_stack.resetClean()
        if hasattr(self.window, "_update_title"):
            self.window._update_title()
        self.autosave()  # our own copy first, then drop the dead session's files
        discard_recovery(info)

    def _on_clean_changed(self, clean: bool) -> None:
        if clean:
            self.discard()
