"""Edit menu actions on the canvas (bypass, mute, copy, paste, duplicate, delete, select all, framing, auto-layout,
groups) and the Queue ×N control next to Run.

Every edit is an undo command on the adapter's stack; the clipboard holds the core workflow document (JSON) of the
copied nodes and the links between them. Pasting other tools' text (AUTOMATIC1111 infotext, a ComfyUI workflow)
imports it as a new workflow instead.
"""

from __future__ import annotations

from typing import Any

from PySide6 import QtGui, QtWidgets

from nodegraph.core.errors import NodegraphError, WorkflowError
from nodegraph.core.graph import Workflow
from nodegraph.core.workflow_io import dumps, loads
from nodegraph.gui.groups import Groups

PASTE_OFFSET = (40.0, 40.0)


class ModeCommand(QtGui.QUndoCommand):
    """Set the mode of some nodes in the core workflow (undoable), shown on the canvas."""

    def __init__(self, adapter: Any, changes: dict[str, tuple[str, str]], text: str):
        super().__init__(text)
        self.adapter = adapter
        self.changes = changes  # node id -> (old mode, new mode)

    def _apply(self, which: int) -> None:
        for node_id, modes in self.changes.items():
            if node_id in self.adapter.workflow:
                self.adapter.workflow.set_mode(node_id, modes[which])
                self.adapter.show_mode(node_id)
        self.adapter.changed.emit()

    def redo(self) -> None:  # noqa: D102
        self._apply(1)

    def undo(self) -> None:  # noqa: D102
        self._apply(0)


class EditActions:
    """Adds the canvas edit actions to the window's Edit menu."""

    def __init__(self, window: Any):
        self.window = window
        self.adapter = window.adapter
        self.graph = window.adapter.graph
        menu = self._edit_menu()
        menu.addSeparator()
        add = self._add
        add(menu, "&Copy", self.copy, QtGui.QKeySequence.StandardKey.Copy)
        add(menu, "&Paste", self.paste, QtGui.QKeySequence.StandardKey.Paste)
        add(menu, "D&uplicate", self.duplicate, "Ctrl+D")
        add(menu, "&Delete", self.delete, QtGui.QKeySequence.StandardKey.Delete)
        add(menu, "Select &All", self.select_all, QtGui.QKeySequence.StandardKey.SelectAll)
        menu.addSeparator()
        add(menu, "&Bypass", lambda: self.toggle_mode("bypass"), "Ctrl+B")
        add(menu, "&Mute", lambda: self.toggle_mode("mute"), "Ctrl+M")
        menu.addSeparator()
        add(menu, "Frame A&ll", self.frame_all, "Home")
        add(menu, "&Frame Selected", self.frame_selected, "F")
        add(menu, "Auto &Layout", self.auto_layout, "Ctrl+L")
        menu.addSeparator()
        self.groups = Groups(self.adapter, window)  # backdrops, kept in workflow.meta["groups"]
        add(menu, "&Group", self.groups.group_selected, "Ctrl+G")
        add(menu, "U&ngroup", self.groups.ungroup_selected, "Ctrl+Shift+G")
        add(menu, "&Rename Group…", self.groups.rename_selected, "F2")

    def _edit_menu(self) -> QtWidgets.QMenu:
        for action in self.window.menuBar().actions():
            if action.menu() is not None and action.text().replace("&", "") == "Edit":
                return action.menu()
        return self.window.menuBar().addMenu("&Edit")

    def _add(self, menu: QtWidgets.QMenu, text: str, slot: Any, shortcut: Any) -> QtGui.QAction:
        action = QtGui.QAction(text, self.window)
        action.setShortcut(QtGui.QKeySequence(shortcut))
        action.triggered.connect(slot)
        menu.addAction(action)
        return action

    # --- modes ------------------------------------------------------------------------------------------------------
    def toggle_mode(self, mode: str, node_ids: list[str] | None = None) -> None:
        """Put the nodes (default: the selection) in `mode`, or back to normal when all of them already are."""
        node_ids = self.adapter.selected_ids() if node_ids is None else node_ids
        if not node_ids:
            return
        workflow = self.adapter.workflow
        new = "normal" if all(workflow.node(n).mode == mode for n in node_ids) else mode
        changes = {n: (workflow.node(n).mode, new) for n in node_ids if workflow.node(n).mode != new}
        if changes:
            self.adapter.undo_stack.push(ModeCommand(self.adapter, changes, f"{new} {len(changes)} node(s)"))

    # --- clipboard --------------------------------------------------------------------------------------------------
    def fragment(self, node_ids: list[str]) -> Workflow:
        """The nodes and the links between them, as a workflow of their own."""
        workflow = self.adapter.workflow
        keep = set(node_ids)
        return Workflow([workflow.node(n) for n in node_ids],
                        [link for link in workflow.links if link.from_node in keep and link.to_node in keep]).copy()

    def copy(self) -> bool:
        """Copy the selected nodes (with the links between them) to the clipboard as workflow JSON."""
        node_ids = self.adapter.selected_ids()
        if not node_ids:
            return False
        QtWidgets.QApplication.clipboard().setText(dumps(self.fragment(node_ids)))
        return True

    def paste(self) -> list[str]:
        """Paste nodes from the clipboard (new ids, offset positions) as one undoable edit; returns the new ids.

        Text that is not our node clipboard but another tool's work (AUTOMATIC1111 infotext, ComfyUI workflow JSON)
        replaces the workflow with its import, after offering to save unsaved work; the ids returned are then every
        node of the imported workflow. Any other text pastes nothing, silently."""
        text = QtWidgets.QApplication.clipboard().text()
        try:
            fragment = loads(text)
        except (WorkflowError, ValueError):
            return self.paste_import(text)
        return self.insert(fragment)

    def paste_import(self, text: str) -> list[str]:
        """Import pasted text as a new, unsaved workflow (see :meth:`paste`); [] when it is not importable or the
        user keeps the current work."""
        if not text.strip():
            return []
        from nodegraph.interop import import_text

        try:
            with self.window.importing("pasted text"):
                result = import_text(text, getattr(self.window, "model_folders", None))
        except (NodegraphError, ValueError):
            return []  # just text: nothing to paste
        if not self.window.confirm_replace():
            return []
        try:
            self.window.open_imported(result, "pasted text")
        except NodegraphError as error:
            self.window.show_import_error(str(error))
            return []
        return list(self.adapter.workflow.nodes)

    def duplicate(self) -> list[str]:
        """Duplicate the selected nodes and the links between them (one undoable edit)."""
        node_ids = self.adapter.selected_ids()
        return self.insert(self.fragment(node_ids)) if node_ids else []

    def insert(self, fragment: Workflow) -> list[str]:
        """Add a workflow fragment's nodes under new ids, offset, with its internal links; selects the new nodes."""
        adapter = self.adapter
        nodes = [n for n in fragment if adapter.registry.get(n.type) is not None]
        if not nodes:
            return []
        renamed: dict[str, str] = {}
        adapter.undo_stack.beginMacro(f"paste {len(nodes)} node(s)")
        try:
            for node in nodes:
                x, y = (node.ui.get("pos") or [0, 0])[:2]
                new_id = adapter.add_node(node.type, (float(x) + PASTE_OFFSET[0], float(y) + PASTE_OFFSET[1]),
                                          inputs=dict(node.inputs), title=node.title)
                renamed[node.id] = new_id
                if node.mode != "normal":  # kept by the delete/undo snapshots, so redo restores it too
                    adapter.workflow.node(new_id).mode = node.mode
                    adapter.show_mode(new_id)
            for link in fragment.links:
                if link.from_node in renamed and link.to_node in renamed:
                    adapter.connect(renamed[link.from_node], link.from_output, renamed[link.to_node], link.to_input)
        finally:
            adapter.undo_stack.endMacro()
        self.graph.scene().clearSelection()  # view-level selection: not an undo step
        for new_id in renamed.values():
            adapter.view_node(new_id).view.selected = True
        return list(renamed.values())

    # --- selection and view -----------------------------------------------------------------------------------------
    def delete(self) -> None:
        """Delete the selected nodes, their links and the selected groups (one undoable edit)."""
        node_ids = self.adapter.selected_ids()
        backdrops = self.groups.selected()
        if not node_ids and not backdrops:
            return
        self.adapter.undo_stack.beginMacro("delete")
        try:
            if node_ids:
                self.adapter.remove_nodes(node_ids)
            self.groups.remove(backdrops)
        finally:
            self.adapter.undo_stack.endMacro()

    def select_all(self) -> None:
        """Select every node."""
        self.graph.select_all()

    def frame_all(self) -> None:
        """Zoom to show every node (as opening a workflow does: never zoomed in past 100 %)."""
        self.adapter.frame_all()

    def frame_selected(self) -> None:
        """Zoom to the selected nodes (all of them when none is selected)."""
        self.graph.fit_to_selection()

    def auto_layout(self) -> None:
        """Arrange the nodes (all, or the selection) by their links; one undoable edit."""
        nodes = self.graph.selected_nodes() or self.graph.all_nodes()
        if nodes:
            self.graph.auto_layout_nodes(nodes=nodes)


class RunQueue:
    """Queue ×N: a spin box next to Run; Run queues N snapshots of the workflow that run one after another.

    The window drives it: `fill` at Run, `next` to start each job, `record` when one ends, `clear` on Cancel.
    """

    def __init__(self, window: Any):
        self.window = window
        self.spin = QtWidgets.QSpinBox()
        self.spin.setRange(1, 99)
        self.spin.setPrefix("Queue ×")
        self.spin.setToolTip("How many times Run queues the workflow")
        toolbar = window.addToolBar("Run")
        toolbar.setObjectName("run_toolbar")
        toolbar.addAction(window.run_action)
        toolbar.addWidget(self.spin)
        toolbar.addAction(window.cancel_action)
        self.label = QtWidgets.QLabel("")
        window.statusBar().addPermanentWidget(self.label)
        self.pending: list[Workflow] = []
        self.total = 0
        self.index = 0
        self.results: list[Any] = []

    def fill(self, workflow: Workflow) -> None:
        """Queue N copies of `workflow` (snapshots: later edits do not change them)."""
        self.pending = [workflow.copy() for _ in range(self.spin.value())]
        self.total, self.index, self.results = len(self.pending), 0, []

    def next(self) -> Workflow | None:
        """The next queued workflow (None when the queue is empty); the status shows "running i/N"."""
        if not self.pending:
            return None
        self.index += 1
        self.label.setText(self.running_text())
        return self.pending.pop(0)

    def running_text(self) -> str:
        """"running i/N" for the job now running."""
        return f"running {self.index}/{self.total}"

    def record(self, result: Any) -> None:
        """Keep a finished job's result; clear the status once the queue is empty."""
        self.results.append(result)
        if not self.pending:
            self.label.setText("" if self.total <= 1 else f"ran {len(self.results)}/{self.total}")

    def clear(self) -> None:
        """Drop the jobs not started yet (Cancel)."""
        self.pending.clear()
