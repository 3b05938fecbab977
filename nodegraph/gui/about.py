"""Help ▸ About: the version and build (installer variant, torch build), the versions of the libraries that matter
for support, and where the user's files live. Also the app icon, shared by the window and the About box."""

from __future__ import annotations

import html
import platform
import sys

from PySide6 import QtCore, QtGui, QtWidgets

from nodegraph.build_info import build_info
from nodegraph.paths import app_home, resources_dir

ICON_FILE = resources_dir() / "icons" / "nodegraph.svg"
PROJECT_LICENCE = "Apache-2.0"


def app_icon() -> QtGui.QIcon:
    """The nodegraph icon (an empty icon when the resources are incomplete: never an error)."""
    return QtGui.QIcon(str(ICON_FILE)) if ICON_FILE.is_file() else QtGui.QIcon()


def about_text() -> str:
    """The About box's rich text: the build line, library versions (torch only if already loaded: opening the
    dialog must never import it) and the data folder."""
    info = build_info()
    torch = sys.modules.get("torch")
    rows = [info.describe()]
    if torch is not None:
        rows.append(f"torch {torch.__version__}" + (f" (CUDA {torch.version.cuda})" if torch.version.cuda else ""))
    elif not info.torch:  # an installer's line above names its torch already
        rows.append("torch: loads at the first run")
    rows += [f"Python {platform.python_version()}, Qt {QtCore.qVersion()}, {platform.system()} {platform.machine()}",
             f"Your files: {app_home()}"]
    if info.commit:
        rows.append(f"Source revision {info.commit}")
    return (f"<h3>nodegraph {html.escape(info.version)}</h3>"
            "<p>A native node-graph app for Stable Diffusion.</p>"
            f"<p>{'<br>'.join(html.escape(row) for row in rows)}</p>"
            f"<p>Licensed under {PROJECT_LICENCE}.</p>")


def show_about(parent: QtWidgets.QWidget) -> None:
    """Show the About box (modal)."""
    box = QtWidgets.QMessageBox(parent)
    box.setWindowTitle("About nodegraph")
    box.setIconPixmap(app_icon().pixmap(96, 96))
    box.setTextFormat(QtCore.Qt.TextFormat.RichText)
    box.setText(about_text())
    box.setTextInteractionFlags(QtCore.Qt.TextInteractionFlag.TextSelectableByMouse)
    box.exec()
