"""The image panel: the live latent preview while sampling, the latest output image, and this session's history.

Each image (the one shown and every history entry) has actions, in a small toolbar and a context menu: open the
file, open its folder, copy the image or its path, and load the workflow Save Image embedded in it. Opening goes
through :func:`open_url` (tests replace it); the panel knows no window, so loading is asked for through the
``workflow_requested`` signal and messages for the status bar go out through the ``message`` signal.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6 import QtCore, QtGui, QtWidgets

from nodegraph.gui.theme import sharp_pixmap

#: History entries keep their file path under this item data role.
PATH_ROLE = QtCore.Qt.ItemDataRole.UserRole

#: The actions on an image, in menu order: (method name, label, tooltip).
ACTIONS = (
    ("open_file", "Open file", "Open the image in the system's image viewer"),
    ("open_folder", "Open folder", "Open the folder holding the image"),
    ("copy_image", "Copy image", "Copy the image to the clipboard"),
    ("copy_path", "Copy path", "Copy the image's file path to the clipboard"),
    ("load_workflow", "Load workflow", "Replace the canvas with the workflow saved inside the image"),
)
#: Shorter toolbar labels, so all five fit a narrow dock (the menus and tooltips keep the full words).
TOOLBAR_LABELS = {"open_file": "Open", "open_folder": "Folder", "copy_image": "Copy", "copy_path": "Path",
                  "load_workflow": "Workflow"}


def open_url(url: QtCore.QUrl) -> bool:
    """Open `url` with the desktop's handler (image viewer, file manager). The only place the panel launches
    anything, so tests replace it to capture the URL."""
    return QtGui.QDesktopServices.openUrl(url)


def array_to_image(array: Any) -> QtGui.QImage:
    """A QImage (owning its pixels) from an HxWx3 uint8 array (numpy or anything with the buffer protocol)."""
    import numpy as np

    data = np.ascontiguousarray(array, dtype=np.uint8)
    if data.ndim != 3 or data.shape[2] != 3:
        raise ValueError(f"expected an HxWx3 image, got shape {data.shape}")
    height, width = data.shape[:2]
    return QtGui.QImage(data.data, width, height, 3 * width, QtGui.QImage.Format.Format_RGB888).copy()


class _ScaledLabel(QtWidgets.QLabel):
    """A label that shows a pixmap scaled to fit, keeping its aspect ratio, and rescales when resized."""

    def __init__(self, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self._pixmap = QtGui.QPixmap()
        self.setAlignment(QtCore.Qt.AlignmentFlag.AlignCenter)
        self.setMinimumSize(64, 64)
        self.setSizePolicy(QtWidgets.QSizePolicy.Policy.Ignored, QtWidgets.QSizePolicy.Policy.Ignored)

    def set_source(self, pixmap: QtGui.QPixmap) -> None:
        self._pixmap = pixmap
        self._rescale()

    def source(self) -> QtGui.QPixmap:
        return self._pixmap

    def _rescale(self) -> None:
        if self._pixmap.isNull():
            self.clear()
            return
        self.setPixmap(sharp_pixmap(self._pixmap, self.size(), self))

    def resizeEvent(self, event: QtGui.QResizeEvent) -> None:  # noqa: N802 (Qt override)
        super().resizeEvent(event)
        self._rescale()


class ImagePanel(QtWidgets.QWidget):
    """Shows one image scaled to fit (a preview or an output file) above a list of this session's images.

    Signals:
        workflow_requested(str): the user asked to load the workflow embedded in this PNG.
        message(str): a short result or problem for the status bar.
    """

    workflow_requested = QtCore.Signal(str)
    message = QtCore.Signal(str)

    def __init__(self, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self.toolbar = QtWidgets.QToolBar(self)
        self.toolbar.setIconSize(QtCore.QSize(16, 16))
        self.toolbar.setToolButtonStyle(QtCore.Qt.ToolButtonStyle.ToolButtonTextOnly)
        self.actions_by_name: dict[str, QtGui.QAction] = {}
        for name, label, tip in ACTIONS:
            action = self.toolbar.addAction(TOOLBAR_LABELS[name])
            action.setToolTip(f"{label}: {tip[0].lower()}{tip[1:]}")
            action.triggered.connect(lambda _checked=False, name=name: self.act(name))
            self.actions_by_name[name] = action
        self.image = _ScaledLabel(self)
        self.image.setContextMenuPolicy(QtCore.Qt.ContextMenuPolicy.CustomContextMenu)
        self.image.customContextMenuRequested.connect(self._on_image_menu)
        self.caption = QtWidgets.QLabel("No image yet", self)
        self.caption.setAlignment(QtCore.Qt.AlignmentFlag.AlignCenter)
        self.history = QtWidgets.QListWidget(self)
        self.history.setViewMode(QtWidgets.QListView.ViewMode.IconMode)
        self.history.setIconSize(QtCore.QSize(64, 64))
        self.history.setFlow(QtWidgets.QListView.Flow.LeftToRight)
        self.history.setWrapping(False)
        self.history.setMaximumHeight(100)
        self.history.setContextMenuPolicy(QtCore.Qt.ContextMenuPolicy.CustomContextMenu)
        self.history.customContextMenuRequested.connect(self._on_history_menu)
        self.history.itemClicked.connect(self._show_item)
        self.history.itemDoubleClicked.connect(self._show_item)
        self.history.itemActivated.connect(self._show_item)  # Enter on the keyboard
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.toolbar)
        layout.addWidget(self.image, 1)
        layout.addWidget(self.caption)
        layout.addWidget(self.history)
        self.current: str | None = None  # the file shown, or "preview"
        self._update_actions()

    # --- what is shown --------------------------------------------------------------------------------------------
    def pixmap(self) -> QtGui.QPixmap:
        """The (unscaled) image shown now; null when none."""
        return self.image.source()

    def current_file(self) -> str | None:
        """The file shown now; None while a preview (or nothing) is shown."""
        return None if self.current in (None, "preview") else self.current

    def show_preview(self, array: Any, caption: str = "Preview") -> None:
        """Show a live preview (HxWx3 uint8); not added to the history."""
        self.image.set_source(QtGui.QPixmap.fromImage(array_to_image(array)))
        self.caption.setText(caption)
        self.current = "preview"
        self._update_actions()

    def show_file(self, path: str | Path) -> bool:
        """Show an image file; False (and nothing changed) when it cannot be read."""
        pixmap = QtGui.QPixmap(str(path))
        if pixmap.isNull():
            return False
        self._show(pixmap, path)
        return True

    def add_output(self, path: str | Path) -> bool:
        """A new output file: show it and put it first in the history (False when it cannot be read)."""
        pixmap = QtGui.QPixmap(str(path))
        if pixmap.isNull():
            return False
        icon = QtGui.QIcon(sharp_pixmap(pixmap, QtCore.QSize(64, 64), self.history))
        item = QtWidgets.QListWidgetItem(icon, Path(path).name)
        item.setData(PATH_ROLE, str(path))
        item.setToolTip(str(path))
        self.history.insertItem(0, item)
        self._show(pixmap, path)
        return True

    def history_paths(self) -> list[str]:
        """The files in the history, newest first."""
        return [self.history.item(i).data(PATH_ROLE) for i in range(self.history.count())]

    def _show(self, pixmap: QtGui.QPixmap, path: str | Path) -> None:
        self.image.set_source(pixmap)
        self.caption.setText(Path(path).name)
        self.current = str(path)
        self._update_actions()

    def _show_item(self, item: QtWidgets.QListWidgetItem) -> None:
        path = item.data(PATH_ROLE)
        if not self.show_file(path):
            self.message.emit(f"{Path(path).name}: cannot be shown (the file was moved or deleted)")

    def _update_actions(self) -> None:
        for action in self.actions_by_name.values():
            action.setEnabled(self.current_file() is not None)

    # --- actions on one image ---------------------------------------------------------------------------------------
    def _existing(self, path: str | Path | None) -> Path | None:
        """`path` as a Path when the file is still there; otherwise None, with a message."""
        if path is None:
            return None
        file = Path(path)
        if not file.is_file():
            self.message.emit(f"{file.name}: the file no longer exists ({file.parent})")
            return None
        return file

    def open_file(self, path: str | Path | None) -> bool:
        """Open the image in the system's viewer."""
        file = self._existing(path)
        if file is None:
            return False
        if not open_url(QtCore.QUrl.fromLocalFile(str(file))):
            self.message.emit(f"{file.name}: no application to open it with")
            return False
        return True

    def open_folder(self, path: str | Path | None) -> bool:
        """Open the folder holding the image in the file manager."""
        file = self._existing(path)
        if file is None:
            return False
        if not open_url(QtCore.QUrl.fromLocalFile(str(file.parent))):
            self.message.emit(f"{file.parent}: could not open the folder")
            return False
        return True

    def copy_image(self, path: str | Path | None) -> bool:
        """Put the image's pixels on the clipboard."""
        file = self._existing(path)
        if file is None:
            return False
        image = QtGui.QImage(str(file))
        if image.isNull():
            self.message.emit(f"{file.name}: cannot be read as an image")
            return False
        QtGui.QGuiApplication.clipboard().setImage(image)
        self.message.emit(f"Copied {file.name} ({image.width()}×{image.height()}) to the clipboard")
        return True

    def copy_path(self, path: str | Path | None) -> bool:
        """Put the image's full path on the clipboard (as text)."""
        if path is None:
            return False
        QtGui.QGuiApplication.clipboard().setText(str(path))
        self.message.emit(f"Copied the path of {Path(path).name}")
        return True

    def load_workflow(self, path: str | Path | None) -> bool:
        """Ask the window to restore the workflow embedded in the image (see :attr:`workflow_requested`)."""
        file = self._existing(path)
        if file is None:
            return False
        self.workflow_requested.emit(str(file))
        return True

    def act(self, name: str, path: str | Path | None = None) -> bool:
        """Run the action `name` (one of :data:`ACTIONS`) on `path`, by default on the file shown now."""
        return getattr(self, name)(path if path is not None else self.current_file())

    # --- context menus ----------------------------------------------------------------------------------------------
    def context_menu(self, path: str | Path) -> QtWidgets.QMenu:
        """The actions for the image at `path`, as a menu (owned by the panel; deleted after use)."""
        menu = QtWidgets.QMenu(self)
        for name, label, tip in ACTIONS:
            action = menu.addAction(label)
            action.setToolTip(tip)
            action.triggered.connect(lambda _checked=False, name=name: self.act(name, path))
        return menu

    def _on_image_menu(self, pos: QtCore.QPoint) -> None:
        if self.current_file() is not None:
            self.popup_menu(self.context_menu(self.current_file()), self.image.mapToGlobal(pos))

    def _on_history_menu(self, pos: QtCore.QPoint) -> None:
        item = self.history.itemAt(pos)
        if item is not None:
            self.popup_menu(self.context_menu(item.data(PATH_ROLE)), self.history.viewport().mapToGlobal(pos))

    def popup_menu(self, menu: QtWidgets.QMenu, global_pos: QtCore.QPoint) -> None:
        """Show a context menu at `global_pos` and delete it afterwards (tests monkeypatch this: nobody can click
        a menu offscreen)."""
        if QtWidgets.QApplication.platformName() != "offscreen":
            menu.exec(global_pos)
        menu.deleteLater()
