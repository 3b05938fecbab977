"""What a node told the user during a run (``NodeMessage`` events), drawn on the canvas: a few short lines under the
node, amber for warnings and grey for information, with every message in full in the tooltip.

The lines are a child item of the node's view, like the state badge above it: they move with the node, never touch
the workflow or the undo stack, and go when the next run starts (see ``run_view.NodeStates``).
"""

from __future__ import annotations

from collections.abc import Sequence

from PySide6 import QtCore, QtGui, QtWidgets

#: The colour of each level's text on the dark canvas: warnings amber (like the "cancelled" state), info neutral.
LEVEL_COLOURS = {"warning": "#f5b942", "info": "#b4b4b4"}
#: The mark in front of each line.
LEVEL_MARKS = {"warning": "\u26a0", "info": "\u2139"}
#: The most lines shown under a node; the last one then says how many more the tooltip holds.
MAX_LINES = 3


def one_line(text: str) -> str:
    """`text` with its line breaks folded into spaces (a list entry or a line under a node is one line)."""
    return " ".join(part.strip() for part in text.splitlines() if part.strip())


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace("\n", "<br/>")


def messages_html(messages: Sequence[tuple[str, str]]) -> str:
    """The tooltip lines of a node's messages, ``(level, text)`` each, coloured by level ('' for none)."""
    return "".join(f'<br/><span style="color:{LEVEL_COLOURS.get(level, LEVEL_COLOURS["info"])}">'
                   f"{LEVEL_MARKS.get(level, '')} {_escape(text)}</span>" for level, text in messages)


def shown_lines(messages: Sequence[tuple[str, str]], limit: int = MAX_LINES) -> list[tuple[str, str]]:
    """The ``(level, text)`` lines shown under a node: warnings first, at most `limit`, the last one saying how many
    more there are when they do not all fit."""
    ordered = [m for m in messages if m[0] == "warning"] + [m for m in messages if m[0] != "warning"]
    lines = [(level, f"{LEVEL_MARKS.get(level, '')} {one_line(text)}") for level, text in ordered]
    if len(lines) > limit:
        hidden = len(lines) - limit + 1
        worst = "warning" if any(level == "warning" for level, _ in ordered[limit - 1:]) else "info"
        lines = lines[:limit - 1] + [(worst, f"+{hidden} more (hover for all)")]
    return lines


class MessageLines(QtWidgets.QGraphicsItem):
    """The message lines under a node: a child of the node's graphics item, placed just below it and as wide as it
    (longer lines are elided; the tooltip has them whole). Clicks go through to what lies beneath."""

    def __init__(self, parent: QtWidgets.QGraphicsItem):
        super().__init__(parent)
        self.setAcceptedMouseButtons(QtCore.Qt.MouseButton.NoButton)
        self.text_font = QtGui.QFont()
        self.text_font.setPointSizeF(max(self.text_font.pointSizeF() - 1, 7.0))
        self.lines: list[tuple[str, str]] = []
        self._width = 0.0
        self._height = 0.0

    def set_messages(self, messages: Sequence[tuple[str, str]]) -> None:
        """Show `messages` (``(level, text)`` pairs, in the order they came), below the node as it is now sized."""
        parent = self.parentItem()
        node_rect = parent.boundingRect() if parent is not None else QtCore.QRectF()
        metrics = QtGui.QFontMetricsF(self.text_font)
        self.prepareGeometryChange()
        self._width = max(node_rect.width(), 160.0)
        self.lines = [(level, metrics.elidedText(text, QtCore.Qt.TextElideMode.ElideRight, self._width))
                      for level, text in shown_lines(messages)]
        self._height = metrics.lineSpacing() * len(self.lines)
        self.setPos(node_rect.left(), node_rect.bottom() + 3)
        self.setToolTip(messages_html(messages).removeprefix("<br/>"))
        self.update()

    def texts(self) -> list[str]:
        """The lines as drawn (elided), for tests and accessibility."""
        return [text for _, text in self.lines]

    def boundingRect(self) -> QtCore.QRectF:  # noqa: N802 (Qt override)
        """The area the lines cover, in the node's coordinates once placed."""
        return QtCore.QRectF(0.0, 0.0, self._width, self._height)

    def paint(self, painter: QtGui.QPainter, option: QtWidgets.QStyleOptionGraphicsItem,
              widget: QtWidgets.QWidget | None = None) -> None:
        """Draw each line in its level's colour."""
        metrics = QtGui.QFontMetricsF(self.text_font)
        painter.setFont(self.text_font)
        for row, (level, text) in enumerate(self.lines):
            painter.setPen(QtGui.QColor(LEVEL_COLOURS.get(level, LEVEL_COLOURS["info"])))
            painter.drawText(QtCore.QPointF(0.0, row * metrics.lineSpacing() + metrics.ascent()), text)
