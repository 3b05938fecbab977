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
    torch_line = (f"torch {torch.__version__} (CUDA {torch.version.cuda})" if torch is not None and torch.version.cuda
                  else f"torch {torch.__version__}" if torch is not None
                  else f"torch {info.torch}" if info.torch else "torch: loads at the first run")
    rows = [
        html.escape(info.describe()),
        html.escape(torch_line),
        html.escape(f"Python {platform.python_version()}, Qt {QtCore.qVersion()}, {platform.system()} "
                    f"{platform.machine()}"),
        html.escape(f"Your files: {app_home()}"),
    ]
    if info.commit:
        rows.append(html.escape(f"Source revision {info.commit}"))
    return (f"<h3>nodegraph {html.escape(info.version)}</h3>"
            "<p>A native node-graph app for Stable Diffusion.</p>"
            f"<p>{'<br>'.join(rows)}</p>"
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
