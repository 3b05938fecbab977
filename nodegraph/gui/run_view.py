"""Run feedback in the main window, driven by the worker's event signals.

* per-node state on the canvas: running (highlighted), cached, finished (with its time), failed (red, message in the
  tooltip); states reset when the next run starts;
* what nodes report (``NodeMessage``: info, or a warning in amber) as lines under the node it is about and in its
  tooltip, and in the problems dock; they too go when the next run starts;
* a problems dock listing validation problems (checked before a run starts), a failed node's message and the nodes'
  messages; clicking an entry selects and centres on its node;
* a progress bar in the status bar with ``step/total`` and an ETA;
* the image panel dock: live previews from progress events, the last PNG a node wrote, and the session's history;
  its "Load workflow" restores an image's embedded workflow the way dropping the PNG on the window does.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from PySide6 import QtCore, QtGui, QtWidgets

from nodegraph.core.graph import Workflow
from nodegraph.core.validate import Problem, validate
from nodegraph.engine.events import (
    NodeCached,
    NodeFailed,
    NodeFinished,
    NodeMessage,
    NodeStarted,
    Progress,
    RunCancelled,
)
from nodegraph.gui.drops import handle_drop
from nodegraph.gui.image_panel import ImagePanel
from nodegraph.gui.node_messages import LEVEL_COLOURS, MessageLines, messages_html, one_line

#: Node states and how they look: (fill colour, border colour, badge colour); None keeps the node's own colour.
STATE_LOOK: dict[str, tuple[tuple[int, int, int, int] | None, tuple[int, int, int, int], str]] = {
    "running": ((40, 90, 140, 255), (80, 200, 255, 255), "#50c8ff"),
    "cached": (None, (120, 120, 120, 255), "#9a9a9a"),
    "finished": (None, (90, 200, 110, 255), "#5ac86e"),
    "failed": ((150, 35, 35, 255), (255, 70, 70, 255), "#ff4646"),
    "cancelled": (None, (220, 170, 60, 255), "#dcaa3c"),
}

NODE_ROLE = QtCore.Qt.ItemDataRole.UserRole


def format_seconds(seconds: float) -> str:
    """A short duration: '0.42 s', '12.3 s', '2:05'."""
    if seconds < 10:
        return f"{seconds:.2f} s"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes}:{secs:02d}"


class NodeStates:
    """Shows each node's run state on its NodeGraphQt view without touching the model or the undo stack.

    The view's colours are set directly (the model keeps the user's colours, so saving and copying are unaffected)
    and a small text badge above the node shows the state or the time; the tooltip holds the detail. Messages the
    run reported about a node show as lines under it (:class:`~nodegraph.gui.node_messages.MessageLines`) and in its
    tooltip.
    """

    def __init__(self, adapter: Any):
        self.adapter = adapter
        self.states: dict[str, str] = {}
        self.tooltips: dict[str, str] = {}
        self.messages: dict[str, list[tuple[str, str]]] = {}  # node id -> (level, text), in the order they came
        self._details: dict[str, str] = {}  # node id -> the state's detail in the tooltip
        self._saved: dict[str, tuple[Any, Any, Any, str]] = {}  # node id -> (view, colour, border, tooltip)
        self._badges: dict[str, QtWidgets.QGraphicsSimpleTextItem] = {}
        self._lines: dict[str, MessageLines] = {}

    def _view(self, node_id: str) -> Any:
        try:
            return self.adapter.view_node(node_id)
        except KeyError:
            return None

    def set(self, node_id: str, state: str, text: str = "", tooltip: str = "") -> None:
        """Show `state` on the node; `text` goes in the badge (the state's name by default), `tooltip` after the
        node's name in its tooltip."""
        view = self._view(node_id)
        if view is None:
            return
        item = view.view
        self._remember(node_id, view)
        fill, border, badge_colour = STATE_LOOK[state]
        item.color = fill if fill is not None else self._saved[node_id][1]
        item.border_color = border
        badge = self._badges.get(node_id)
        if badge is None or badge.parentItem() is not item:
            badge = QtWidgets.QGraphicsSimpleTextItem(item)
            self._badges[node_id] = badge
        badge.setText(text or state)
        badge.setBrush(QtGui.QColor(badge_colour))
        badge.setPos(2, -badge.boundingRect().height() - 2)
        self.states[node_id] = state
        self._details[node_id] = tooltip
        self._show_tooltip(node_id, view)

    def add_message(self, node_id: str, level: str, text: str) -> bool:
        """Show a message the run reported about `node_id` under the node and in its tooltip; False when the node
        already shows the same message (two samplers applying one LoRA node report it twice)."""
        messages = self.messages.setdefault(node_id, [])
        if (level, text) in messages:
            return False
        messages.append((level, text))
        view = self._view(node_id)
        if view is None:  # not on the canvas (any more): the problems dock still lists it
            return True
        self._remember(node_id, view)
        lines = self._lines.get(node_id)
        if lines is None or lines.parentItem() is not view.view:
            lines = MessageLines(view.view)
            self._lines[node_id] = lines
        lines.set_messages(messages)
        self._show_tooltip(node_id, view)
        return True

    def message_lines(self, node_id: str) -> list[str]:
        """The message lines shown under the node (empty when it has none)."""
        lines = self._lines.get(node_id)
        return lines.texts() if lines is not None else []

    def node_name(self, node_id: str) -> str:
        """The node's name as the canvas shows it (its title), '' when it is not on the canvas."""
        view = self._view(node_id)
        return view.name() if view is not None else ""

    def _remember(self, node_id: str, view: Any) -> None:
        """Keep the node's own look, once per run, so :meth:`reset` can restore it."""
        item = view.view
        if node_id not in self._saved or self._saved[node_id][0] is not view:
            self._saved[node_id] = (view, tuple(item.color), tuple(item.border_color), item.toolTip())

    def _show_tooltip(self, node_id: str, view: Any) -> None:
        state, detail = self.states.get(node_id), self._details.get(node_id, "")
        tip = f"<b>{view.name()}</b>" + (f" — {state}" if state else "")
        if detail:
            tip += "<br/>" + detail.replace("&", "&amp;").replace("<", "&lt;").replace("\n", "<br/>")
        tip += messages_html(self.messages.get(node_id, ()))
        view.view.setToolTip(tip)
        self.tooltips[node_id] = tip

    def reset(self) -> None:
        """Back to the nodes' own look (before a new run)."""
        for node_id, (view, colour, border, tooltip) in self._saved.items():
            try:
                view.view.color = colour
                view.view.border_color = border
                view.view.setToolTip(tooltip)
                for child in (self._badges.get(node_id), self._lines.get(node_id)):
                    if child is not None and child.scene() is not None:
                        child.scene().removeItem(child)
            except RuntimeError:  # the view was deleted with its node
                pass
        self._saved.clear()
        self._badges.clear()
        self._lines.clear()
        self.states.clear()
        self.tooltips.clear()
        self.messages.clear()
        self._details.clear()

    def badge_text(self, node_id: str) -> str:
        """The text shown above the node ('' when it has no state)."""
        badge = self._badges.get(node_id)
        return badge.text() if badge is not None else ""


class ProblemsPanel(QtWidgets.QListWidget):
    """A list of problems; clicking one selects and centres on its node."""

    def __init__(self, adapter: Any, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self.adapter = adapter
        self.itemClicked.connect(self._on_clicked)
        self.itemActivated.connect(self._on_clicked)

    def add_problem(self, message: str, node_id: str | None = None) -> None:
        item = QtWidgets.QListWidgetItem(message)
        item.setData(NODE_ROLE, node_id)
        item.setToolTip(message)
        if node_id is not None:
            item.setForeground(QtGui.QColor("#ff6b6b"))
        self.addItem(item)

    def add_message(self, message: str, level: str, node_id: str | None = None) -> None:
        """List a node's message (one line here, whole in the tooltip), coloured by its level."""
        item = QtWidgets.QListWidgetItem(one_line(message))
        item.setData(NODE_ROLE, node_id)
        item.setToolTip(message)
        item.setForeground(QtGui.QColor(LEVEL_COLOURS.get(level, LEVEL_COLOURS["info"])))
        self.addItem(item)

    def messages(self) -> list[str]:
        return [self.item(i).text() for i in range(self.count())]

    def select_node(self, node_id: str) -> bool:
        """Select only `node_id` and centre the canvas on it; False when it is not on the canvas."""
        try:
            view = self.adapter.view_node(node_id)
        except KeyError:
            return False
        graph = self.adapter.graph
        graph.clear_selection()
        view.set_selected(True)
        graph.center_on([view])
        return True

    def _on_clicked(self, item: QtWidgets.QListWidgetItem) -> None:
        node_id = item.data(NODE_ROLE)
        if node_id:
            self.select_node(node_id)


class RunProgress(QtWidgets.QProgressBar):
    """The status-bar progress bar: ``node step/total · ETA``; hidden until a node reports progress."""

    def __init__(self, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self.setMaximumWidth(320)
        self.setTextVisible(True)
        self.hide()
        self._node: str | None = None
        self._started = 0.0

    def start_node(self, node_id: str) -> None:
        self._node = node_id
        self._started = time.perf_counter()

    def update_progress(self, node_id: str, step: int, total: int) -> None:
        if node_id != self._node:
            self.start_node(node_id)
        total = max(int(total), 1)
        step = max(0, min(int(step), total))
        self.setRange(0, total)
        self.setValue(step)
        elapsed = time.perf_counter() - self._started
        if step >= total:
            eta = "done"
        elif step > 0:
            eta = "ETA " + format_seconds(elapsed / step * (total - step))
        else:
            eta = "ETA …"
        self.setFormat(f"{node_id} {step}/{total} · {eta}")
        self.show()

    def reset_run(self) -> None:
        self._node = None
        self.reset()
        self.hide()


class RunFeedback(QtCore.QObject):
    """Owns the run feedback widgets of a main window (which must have `adapter` and `executor`)."""

    def __init__(self, window: QtWidgets.QMainWindow):
        super().__init__(window)
        self.window = window
        adapter = window.adapter  # type: ignore[attr-defined]
        self.adapter = adapter
        self.nodes = NodeStates(adapter)
        self.problems = ProblemsPanel(adapter)
        self.problems_dock = QtWidgets.QDockWidget("Problems", window)
        self.problems_dock.setObjectName("problems_dock")
        self.problems_dock.setWidget(self.problems)
        window.addDockWidget(QtCore.Qt.DockWidgetArea.BottomDockWidgetArea, self.problems_dock)
        # A short strip under the canvas: the canvas keeps most of the window.
        window.resizeDocks([self.problems_dock], [110], QtCore.Qt.Orientation.Vertical)
        self.image_panel = ImagePanel()
        self.image_panel.message.connect(self.show_message)
        self.image_panel.workflow_requested.connect(self.load_image_workflow)
        self.image_dock = QtWidgets.QDockWidget("Image", window)
        self.image_dock.setObjectName("image_dock")
        self.image_dock.setWidget(self.image_panel)
        window.addDockWidget(QtCore.Qt.DockWidgetArea.RightDockWidgetArea, self.image_dock)
        self.progress = RunProgress()
        window.statusBar().addPermanentWidget(self.progress)
        self.warnings = 0  # warnings the nodes reported in the current run

    def show_message(self, text: str) -> None:
        """Show a short message in the window's status bar (the run state label)."""
        self.window.state_label.setText(text)  # type: ignore[attr-defined]

    def load_image_workflow(self, path: str) -> list[str]:
        """Replace the canvas with the workflow embedded in the PNG at `path`, exactly as dropping it does (after
        offering to save unsaved work; cancelling keeps it); returns the problems (already shown in the status bar)."""
        if not self.window.confirm_replace():  # type: ignore[attr-defined]
            return []
        problems = handle_drop(self.window, [Path(path)])
        if not problems:
            self.show_message(f"Loaded the workflow saved in {Path(path).name}")
        return problems

    # --- before a run -----------------------------------------------------------------------------------------------
    def check(self, workflow: Workflow) -> list[Problem]:
        """Validate `workflow` and list its problems (empty: it may run)."""
        executor = getattr(self.window, "executor", None)
        problems = validate(workflow, self.adapter.registry, file_check=getattr(executor, "file_check", None))
        self.problems.clear()
        self.show_problems(problems)
        return problems

    def show_problems(self, problems: list[Any]) -> None:
        for problem in problems:
            self.problems.add_problem(str(problem), getattr(problem, "node_id", None))
        if problems:
            self.problems_dock.show()
            self.problems_dock.raise_()

    def run_started(self) -> None:
        """A new run: clear the previous run's node states, problems and progress."""
        self.nodes.reset()
        self.problems.clear()
        self.progress.reset_run()
        self.warnings = 0

    # --- during a run -----------------------------------------------------------------------------------------------
    def on_event(self, event: Any) -> None:
        """Slot for the worker's `event` signal (UI thread)."""
        if isinstance(event, NodeStarted):
            self.nodes.set(event.node_id, "running", "running…")
            self.progress.start_node(event.node_id)
        elif isinstance(event, Progress):
            self.progress.update_progress(event.node_id, event.step, event.total)
            if event.preview is not None:
                self.image_panel.show_preview(event.preview, f"Preview: {event.node_id} {event.step}/{event.total}")
        elif isinstance(event, NodeCached):
            self.nodes.set(event.node_id, "cached", "cached", "result reused from the cache")
        elif isinstance(event, NodeFinished):
            took = format_seconds(event.seconds)
            self.nodes.set(event.node_id, "finished", took, f"finished in {took}")
            self.show_files(event.files)
        elif isinstance(event, NodeFailed):
            self.nodes.set(event.node_id, "failed", "failed", event.message)
            self.problems.add_problem(f"node {event.node_id!r} failed: {event.message}", event.node_id)
            self.problems_dock.show()
            self.problems_dock.raise_()
        elif isinstance(event, NodeMessage):
            self.show_node_message(event.node_id, event.level, event.text)
        elif isinstance(event, RunCancelled) and event.node_id:
            self.nodes.set(event.node_id, "cancelled", "cancelled")

    def show_node_message(self, node_id: str, level: str, text: str) -> None:
        """Show what the run reported about a node: on the node, and listed in the problems dock, which a warning
        opens (a message the node already shows is not listed again)."""
        if not self.nodes.add_message(node_id, level, text):
            return
        name = self.nodes.node_name(node_id)
        self.problems.add_message(f"{level}: node {node_id!r}{f' ({name})' if name else ''}: {text}", level, node_id)
        if level == "warning":
            self.warnings += 1
            self.problems_dock.show()

    def show_files(self, files: Any) -> None:
        """Put every PNG in `files` in the history and show the last one."""
        for path in files:
            if Path(path).suffix.lower() == ".png":
                self.image_panel.add_output(path)

    def run_done(self, result: Any) -> None:
        """Slot for the worker's `done` signal: list what the events did not (invalid runs, failures to start)."""
        if result.status == "invalid":
            self.problems.clear()
            self.show_problems(list(result.problems))
        elif result.status == "failed" and not result.failed_node and result.message:
            self.problems.add_problem(f"run failed: {result.message}")
            self.problems_dock.show()
