"""The image panel: the live latent preview while sampling, the latest output image, and this session's history."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6 import QtCore, QtGui, QtWidgets

#: History entries keep their file path under this item data role.
PATH_ROLE = QtCore.Qt.ItemDataRole.UserRole


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
        self.setPixmap(self._pixmap.scaled(self.size(), QtCore.Qt.AspectRatioMode.KeepAspectRatio,
                                           QtCore.Qt.TransformationMode.SmoothTransformation))

    def resizeEvent(self, event: QtGui.QResizeEvent) -> None:  # noqa: N802 (Qt override)
        super().resizeEvent(event)
        self._rescale()


class ImagePanel(QtWidgets.QWidget):
    """Shows one image scaled to fit (a preview or an output file) above a list of this session's images."""

    def __init__(self, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self.image = _ScaledLabel(self)
        self.caption = QtWidgets.QLabel("No image yet", self)
        self.caption.setAlignment(QtCore.Qt.AlignmentFlag.AlignCenter)
        self.history = QtWidgets.QListWidget(self)
        self.history.setViewMode(QtWidgets.QListView.ViewMode.IconMode)
        self.history.setIconSize(QtCore.QSize(64, 64))
        self.history.setFlow(QtWidgets.QListView.Flow.LeftToRight)
        self.history.setWrapping(False)
        self.history.setMaximumHeight(100)
        self.history.itemClicked.connect(lambda item: self.show_file(item.data(PATH_ROLE)))
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.image, 1)
        layout.addWidget(self.caption)
        layout.addWidget(self.history)
        self.current: str | None = None  # the file shown, or "preview"

    def pixmap(self) -> QtGui.QPixmap:
        """The (unscaled) image shown now; null when none."""
        return self.image.source()

    def show_preview(self, array: Any, caption: str = "Preview") -> None:
        """Show a live preview (HxWx3 uint8); not added to the history."""
        self.image.set_source(QtGui.QPixmap.fromImage(array_to_image(array)))
        self.caption.setText(caption)
        self.current = "preview"

    def show_file(self, path: str | Path) -> bool:
        """Show an image file; False (and nothing changed) when it cannot be read."""
        pixmap = QtGui.QPixmap(str(path))
        if pixmap.isNull():
            return False
        self.image.set_source(pixmap)
        self.caption.setText(Path(path).name)
        self.current = str(path)
        return True

    def add_output(self, path: str | Path) -> bool:
        """A new output file: show it and put it first in the history (False when it cannot be read)."""
        pixmap = QtGui.QPixmap(str(path))
        if pixmap.isNull():
            return False
        icon = QtGui.QIcon(pixmap.scaled(64, 64, QtCore.Qt.AspectRatioMode.KeepAspectRatio,
                                         QtCore.Qt.TransformationMode.SmoothTransformation))
        item = QtWidgets.QListWidgetItem(icon, Path(path).name)
        item.setData(PATH_ROLE, str(path))
        item.setToolTip(str(path))
        self.history.insertItem(0, item)
        self.image.set_source(pixmap)
        self.caption.setText(Path(path).name)
        self.current = str(path)
        return True

    def history_paths(self) -> list[str]:
        """The files in the history, newest first."""
        return [self.history.item(i).data(PATH_ROLE) for i in range(self.history.count())]
