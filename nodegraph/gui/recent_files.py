"""File → Open Recent: the workflows opened or saved lately, newest first, kept in the app settings.

A file that is gone (deleted, or on a drive that is not plugged in) stays in the list, shown disabled, so it comes
back when the drive does; "Clear Recent Files" empties the list.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

from PySide6 import QtCore, QtWidgets


def entry_label(index: int, path: str, exists: bool) -> str:
    """The menu text of a recent file: a number shortcut for the first nine, its name and folder."""
    file = Path(path)
    name = f"{file.name} — {file.parent}".replace("&", "&&")
    prefix = f"&{index} " if index < 10 else f"{index} "
    return prefix + name + ("" if exists else " (missing)")


class RecentFilesMenu(QtCore.QObject):
    """Keeps `menu` listing ``window.app_settings.recent_files``. `window` needs ``app_settings``, ``open_file(path)``
    and ``save_app_settings()``. The list is rebuilt each time the menu opens, so missing files are current."""

    def __init__(self, window: Any, menu: QtWidgets.QMenu):
        super().__init__(window)
        self.window = window
        self.menu = menu
        self.clear_action: Any = None
        menu.aboutToShow.connect(self.refresh)
        self.refresh()

    def refresh(self) -> None:
        """Rebuild the menu from the settings."""
        self.menu.clear()
        files = list(self.window.app_settings.recent_files)
        for index, path in enumerate(files, start=1):
            exists = Path(path).is_file()
            action = self.menu.addAction(entry_label(index, path, exists))
            action.setData(path)
            action.setToolTip(path)
            action.setEnabled(exists)
            action.triggered.connect(partial(self._open_entry, path))
        if not files:
            self.menu.addAction("No recent files").setEnabled(False)
        self.menu.addSeparator()
        self.clear_action = self.menu.addAction("&Clear Recent Files")
        self.clear_action.setEnabled(bool(files))
        self.clear_action.triggered.connect(self.clear)

    def entries(self) -> list[tuple[str, bool]]:
        """The listed files as (path, enabled), in menu order."""
        return [(action.data(), action.isEnabled()) for action in self.menu.actions() if action.data()]

    def _open_entry(self, path: str, _checked: bool = False) -> None:
        if self.window.confirm_replace():  # unsaved work: save, discard or stay
            self.window.open_file(path)

    def clear(self) -> None:
        """Forget every recent file."""
        self.window.app_settings.recent_files = []
        self.window.save_app_settings()
        self.refresh()
