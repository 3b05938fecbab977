"""Render the app icon (resources/icons/nodegraph.svg) into what each platform's installer wants: PNGs for the
Linux icon theme and the AppImage, an .ico for Windows and an .icns for macOS.

    python packaging/icons.py OUT_DIR

Runs in the build environment: Qt's SVG renderer draws the PNGs, Pillow writes the .ico and .icns.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

SVG = Path(__file__).resolve().parents[1] / "resources" / "icons" / "nodegraph.svg"
PNG_SIZES = (16, 24, 32, 48, 64, 128, 256, 512)


def render(out: Path) -> list[Path]:
    """Write nodegraph-<size>.png for every size, nodegraph.ico and nodegraph.icns into `out`."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PIL import Image
    from PySide6 import QtCore, QtGui, QtSvg

    app = QtGui.QGuiApplication.instance() or QtGui.QGuiApplication([])  # noqa: F841 (Qt needs one to paint)
    renderer = QtSvg.QSvgRenderer(str(SVG))
    if not renderer.isValid():
        raise SystemExit(f"icons: cannot read {SVG}")
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for size in PNG_SIZES:
        image = QtGui.QImage(size, size, QtGui.QImage.Format.Format_ARGB32_Premultiplied)
        image.fill(QtCore.Qt.GlobalColor.transparent)
        painter = QtGui.QPainter(image)
        painter.setRenderHint(QtGui.QPainter.RenderHint.Antialiasing)
        renderer.render(painter)
        painter.end()
        path = out / f"nodegraph-{size}.png"
        if not image.save(str(path)):
            raise SystemExit(f"icons: cannot write {path}")
        written.append(path)
    largest = Image.open(out / f"nodegraph-{PNG_SIZES[-1]}.png")
    largest.save(out / "nodegraph.ico", sizes=[(s, s) for s in PNG_SIZES if s <= 256])
    largest.save(out / "nodegraph.icns")
    return [*written, out / "nodegraph.ico", out / "nodegraph.icns"]


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    for file in render(Path(sys.argv[1])):
        print(file)
