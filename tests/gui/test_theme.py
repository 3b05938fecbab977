"""The dark theme (palette matching NodeGraphQt's canvas, idempotent) and the HiDPI set-up."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from NodeGraphQt.constants import ViewerEnum
from PySide6 import QtGui, QtWidgets

from nodegraph.gui.theme import apply_theme, dark_palette

ROOT = Path(__file__).resolve().parents[2]
ROLE = QtGui.QPalette.ColorRole


@pytest.fixture
def app(qapp):
    """The test application, given back with its own style, palette and stylesheet afterwards."""
    style, palette, sheet = qapp.style().name(), QtGui.QPalette(qapp.palette()), qapp.styleSheet()
    yield qapp
    qapp.setStyleSheet(sheet)
    if style:
        qapp.setStyle(style)
    qapp.setPalette(palette)


def test_the_palette_is_dark_with_light_text_and_the_canvas_colour(app):
    app.setStyle("Windows")
    apply_theme(app)
    palette = app.palette()
    for role in (ROLE.Window, ROLE.Base, ROLE.Button, ROLE.ToolTipBase):
        assert palette.color(role).lightness() < 70, role
    for role in (ROLE.WindowText, ROLE.Text, ROLE.ButtonText, ROLE.ToolTipText, ROLE.HighlightedText):
        assert palette.color(role).lightness() > 190, role
    assert palette.color(ROLE.Base).getRgb()[:3] == ViewerEnum.BACKGROUND_COLOR.value
    disabled = palette.color(QtGui.QPalette.ColorGroup.Disabled, ROLE.Text).lightness()
    assert 90 < disabled < palette.color(ROLE.Text).lightness()
    app.setStyleSheet("")  # with a stylesheet, app.style() is Qt's stylesheet wrapper; the base style is below it
    assert app.style().name() == "fusion"


def test_widgets_created_after_the_theme_get_it(app, qtbot):
    apply_theme(app)
    tree = QtWidgets.QTreeWidget()
    qtbot.addWidget(tree)
    assert tree.palette().color(ROLE.Base) == dark_palette().color(ROLE.Base)
    assert tree.palette().color(ROLE.Text).lightness() > 190


def test_apply_theme_is_idempotent_and_keeps_another_stylesheet(app):
    app.setStyleSheet("QLabel#mine { color: red; }")
    apply_theme(app)
    once = (app.styleSheet(), app.palette().color(ROLE.Window), app.style().name())
    apply_theme(app)
    assert (app.styleSheet(), app.palette().color(ROLE.Window), app.style().name()) == once
    sheet = app.styleSheet()
    assert sheet.count("QLabel#mine { color: red; }") == 1
    assert sheet.count("QToolTip") == 1 and sheet.count("nodegraph dark theme") == 2


def test_high_dpi_keeps_fractional_scales_and_pixmaps_are_drawn_at_the_screen_ratio():
    code = (
        "import json\n"
        "from PySide6 import QtCore, QtGui, QtWidgets\n"
        "from nodegraph.gui.theme import prepare_high_dpi, sharp_pixmap\n"
        "policy = QtCore.Qt.HighDpiScaleFactorRoundingPolicy\n"
        "QtGui.QGuiApplication.setHighDpiScaleFactorRoundingPolicy(policy.Round)\n"
        "prepare_high_dpi()\n"
        "app = QtWidgets.QApplication([])\n"
        "prepare_high_dpi()  # too late now: must do nothing\n"
        "label = QtWidgets.QLabel()\n"
        "source = QtGui.QPixmap(400, 200)\n"
        "shown = sharp_pixmap(source, QtCore.QSize(64, 64), label)\n"
        "print(json.dumps({'pass_through': QtGui.QGuiApplication.highDpiScaleFactorRoundingPolicy()"
        " == policy.PassThrough, 'ratio': label.devicePixelRatioF(), 'pixels': [shown.width(), shown.height()],"
        " 'pixmap_ratio': shown.devicePixelRatio()}))\n")
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", QT_SCALE_FACTOR="2")
    env.pop("QT_SCALE_FACTOR_ROUNDING_POLICY", None)
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result == {"pass_through": True, "ratio": 2.0, "pixels": [128, 64], "pixmap_ratio": 2.0}
