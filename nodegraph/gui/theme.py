"""The app's look: a dark Fusion palette whose colours are NodeGraphQt's canvas colours, so the docks, menus and lists
read as one app with the node canvas; and the HiDPI settings Qt needs before the application exists.

Qt 6 scales to the screen's device pixel ratio by itself; what is left to do here is to keep fractional ratios
(150 %, 175 %) as they are instead of rounding them, and to draw pixmaps at the ratio of the widget showing them.
"""

from __future__ import annotations

from NodeGraphQt.constants import NodeEnum, ViewerEnum
from PySide6 import QtCore, QtGui, QtWidgets

#: The canvas background and grid (NodeGraphQt's defaults): lists and text fields use the canvas colour, panels
#: the grid colour, so the canvas and the panels around it are the same family of greys.
CANVAS = QtGui.QColor(*ViewerEnum.BACKGROUND_COLOR.value)
GRID = QtGui.QColor(*ViewerEnum.GRID_COLOR.value)
#: NodeGraphQt draws text as the inverse of the canvas colour.
TEXT = QtGui.QColor(*(255 - c for c in ViewerEnum.BACKGROUND_COLOR.value))
#: The border NodeGraphQt draws around a selected node; used for focus and the current tab, as on the canvas.
ACCENT = QtGui.QColor(*NodeEnum.SELECTED_BORDER_COLOR.value[:3])
HIGHLIGHT = QtGui.QColor(58, 110, 165)
LINK = QtGui.QColor(110, 170, 240)

_MARK_BEGIN = "/* nodegraph dark theme { */"
_MARK_END = "/* } nodegraph dark theme */"


def prepare_high_dpi() -> None:
    """Keep fractional screen scale factors (1.25, 1.5 …) instead of rounding them; call before the QApplication
    exists (Qt ignores the setting afterwards, so then this does nothing)."""
    if QtCore.QCoreApplication.instance() is not None:
        return
    QtGui.QGuiApplication.setHighDpiScaleFactorRoundingPolicy(
        QtCore.Qt.HighDpiScaleFactorRoundingPolicy.PassThrough)


def dark_palette() -> QtGui.QPalette:
    """The dark palette: canvas grey for lists and fields, grid grey for panels, light text, muted disabled text."""
    role, group = QtGui.QPalette.ColorRole, QtGui.QPalette.ColorGroup
    palette = QtGui.QPalette()
    colours = {
        role.Window: GRID,
        role.WindowText: TEXT,
        role.Base: CANVAS,
        role.AlternateBase: QtGui.QColor(40, 40, 40),
        role.ToolTipBase: QtGui.QColor(25, 25, 25),
        role.ToolTipText: TEXT,
        role.PlaceholderText: QtGui.QColor(130, 130, 130),
        role.Text: TEXT,
        role.Button: QtGui.QColor(53, 53, 53),
        role.ButtonText: TEXT,
        role.BrightText: QtGui.QColor(255, 90, 90),
        role.Light: QtGui.QColor(70, 70, 70),
        role.Midlight: QtGui.QColor(60, 60, 60),
        role.Mid: QtGui.QColor(40, 40, 40),
        role.Dark: QtGui.QColor(25, 25, 25),
        role.Shadow: QtGui.QColor(10, 10, 10),
        role.Highlight: HIGHLIGHT,
        role.HighlightedText: QtGui.QColor(255, 255, 255),
        role.Link: LINK,
        role.LinkVisited: LINK.darker(120),
    }
    for colour_role, colour in colours.items():
        palette.setColor(colour_role, colour)
    muted = QtGui.QColor(120, 120, 120)
    for colour_role in (role.WindowText, role.Text, role.ButtonText, role.HighlightedText):
        palette.setColor(group.Disabled, colour_role, muted)
    palette.setColor(group.Disabled, role.Highlight, QtGui.QColor(70, 70, 70))
    palette.setColor(group.Disabled, role.Base, GRID)
    return palette


def _stylesheet() -> str:
    def rgb(colour: QtGui.QColor) -> str:
        return f"rgb({colour.red()}, {colour.green()}, {colour.blue()})"

    # Only what the palette cannot say: tooltips, dock titles, splitters between docks, and the status bar line.
    return "\n".join([
        _MARK_BEGIN,
        f"QToolTip {{ color: {rgb(TEXT)}; background-color: rgb(25, 25, 25);"
        f" border: 1px solid {rgb(GRID.lighter(160))}; padding: 3px; }}",
        f"QDockWidget::title {{ background-color: {rgb(CANVAS.darker(120))}; padding: 4px 6px; }}",
        f"QMainWindow::separator {{ background-color: {rgb(CANVAS.darker(120))}; width: 4px; height: 4px; }}",
        f"QMainWindow::separator:hover {{ background-color: {rgb(HIGHLIGHT)}; }}",
        f"QStatusBar {{ border-top: 1px solid {rgb(CANVAS.darker(120))}; }}",
        f"QMenu::separator {{ height: 1px; background: {rgb(GRID.lighter(150))}; margin: 4px 8px; }}",
        _MARK_END,
    ])


def apply_theme(app: QtWidgets.QApplication) -> None:
    """Give the whole app the dark theme (Fusion style, dark palette, a small stylesheet); calling it again changes
    nothing, and a stylesheet set by someone else is kept."""
    # With a stylesheet set, app.style() is Qt's stylesheet wrapper (no name): setting Fusion again is harmless.
    if app.style().name().lower() != "fusion":
        app.setStyle("Fusion")
    app.setPalette(dark_palette())
    sheet = app.styleSheet()
    if _MARK_BEGIN in sheet and _MARK_END in sheet:
        before, rest = sheet.split(_MARK_BEGIN, 1)
        after = rest.split(_MARK_END, 1)[1]
        sheet = before + _stylesheet() + after
    else:
        sheet = (sheet + "\n" if sheet else "") + _stylesheet()
    if sheet != app.styleSheet():
        app.setStyleSheet(sheet)


def sharp_pixmap(pixmap: QtGui.QPixmap, size: QtCore.QSize, widget: QtWidgets.QWidget) -> QtGui.QPixmap:
    """`pixmap` scaled to fit `size` (logical pixels, aspect kept) at `widget`'s device pixel ratio, so it stays
    sharp on a HiDPI screen instead of being drawn at 1x and stretched."""
    ratio = widget.devicePixelRatioF()
    scaled = pixmap.scaled(size * ratio, QtCore.Qt.AspectRatioMode.KeepAspectRatio,
                           QtCore.Qt.TransformationMode.SmoothTransformation)
    scaled.setDevicePixelRatio(ratio)
    return scaled
