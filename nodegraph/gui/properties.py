"""The properties panel: a form with one editor per literal input of the selected node, following its spec; edits go
through the adapter as undoable value changes. Also the seed control (fixed / increment / randomize after each run)."""

from __future__ import annotations

import random
from typing import Any

from PySide6 import QtCore, QtGui, QtWidgets

from nodegraph.core.schema import InputSpec
from nodegraph.core.types import PortType
from nodegraph.gui.widgets import has_widget

SEED_MODES = ("fixed", "increment", "randomize")
INT32 = (-(2 ** 31), 2 ** 31 - 1)


def is_seed(spec: InputSpec) -> bool:
    """True for an INT input holding a random seed ("seed", "noise_seed", …)."""
    return spec.type == PortType.INT and (spec.name == "seed" or spec.name.endswith("_seed"))


def next_seed(mode: str, value: int, spec: InputSpec, rng: random.Random | None = None) -> int:
    """The seed after a finished run: unchanged ("fixed"), value + 1 ("increment", wrapping to the minimum past the
    maximum) or a random 0..2**32-1 ("randomize", kept within the input's limits)."""
    low = int(spec.min) if spec.min is not None else 0
    high = int(spec.max) if spec.max is not None else 2 ** 64 - 1
    if mode == "increment":
        value = value + 1
        return low if value > high else value
    if mode == "randomize":
        value = (rng or random).randrange(0, 2 ** 32)
        return min(max(value, low), high)
    return value


def apply_seed_controls(adapter: Any, rng: random.Random | None = None) -> dict[tuple[str, str], int]:
    """Apply every node's ``ui["seed_control"]`` to its seed inputs (undoable value changes); returns the changes."""
    changed = {}
    for node in list(adapter.workflow):
        mode = node.ui.get("seed_control", "fixed")
        node_def = adapter.registry.get(node.type)
        if mode == "fixed" or node_def is None:
            continue
        for spec in node_def.literal_inputs:
            if is_seed(spec) and has_widget(spec):
                value = node.inputs.get(spec.name, spec.default) or 0
                new = next_seed(mode, int(value), spec, rng)
                if new != value:
                    adapter.set_value(node.id, spec.name, new)
                    changed[(node.id, spec.name)] = new
    return changed


class _CommitPlainTextEdit(QtWidgets.QPlainTextEdit):
    committed = QtCore.Signal()

    def focusOutEvent(self, event: Any) -> None:  # noqa: N802 (Qt override)
        super().focusOutEvent(event)
        self.committed.emit()


def _decimals(step: float | None) -> int:
    if not step:
        return 3
    text = f"{step:.6f}".rstrip("0")
    return max(1, len(text.split(".")[1]) if "." in text else 1)


class PropertiesPanel(QtWidgets.QWidget):
    """The form of the selected node (`node_id`); `editors` maps input names to their editor widgets."""

    def __init__(self, adapter: Any, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self.adapter = adapter
        self.node_id: str | None = None
        self.editors: dict[str, QtWidgets.QWidget] = {}
        self.seed_controls: dict[str, QtWidgets.QComboBox] = {}
        self._setters: dict[str, Any] = {}
        self._updating = False
        self.header = QtWidgets.QLabel("No node selected")
        self.header.setWordWrap(True)
        self.form_host = QtWidgets.QWidget()
        self.form = QtWidgets.QFormLayout(self.form_host)
        scroll = QtWidgets.QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(self.form_host)
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addWidget(self.header)
        layout.addWidget(scroll)
        scene = adapter.graph.viewer().scene()
        scene.selectionChanged.connect(self._on_selection_changed)
        adapter.changed.connect(self.refresh)

    # --- selection ------------------------------------------------------------------------------------------------
    def _on_selection_changed(self) -> None:
        try:
            selected = self.adapter.graph.selected_nodes()
        except RuntimeError:  # the scene is going away
            return
        ids = [self.adapter._ids.get(view.id) for view in selected]
        ids = [node_id for node_id in ids if node_id in self.adapter.workflow]
        self.show_node(ids[0] if len(ids) == 1 else None)

    def show_node(self, node_id: str | None) -> None:
        """Build the form of `node_id` (None: an empty form)."""
        while self.form.rowCount():
            self.form.removeRow(0)
        self.editors.clear()
        self.seed_controls.clear()
        self._setters.clear()
        self.node_id = node_id if node_id in self.adapter.workflow else None
        if self.node_id is None:
            self.header.setText("No node selected")
            return
        node = self.adapter.workflow.node(self.node_id)
        node_def = self.adapter.registry.get(node.type)
        if node_def is None:
            self.header.setText(f"{node.id}: unknown node type {node.type}")
            return
        self.header.setText(f"<b>{node.title or node_def.display_name or node.type}</b> ({node.id})")
        self.header.setToolTip(node_def.description)
        for spec in node_def.literal_inputs:
            if not has_widget(spec):
                continue
            editor = self._make_editor(spec)
            editor.setToolTip(spec.tooltip)
            self.editors[spec.name] = editor
            row: QtWidgets.QWidget = editor
            if is_seed(spec):
                row = QtWidgets.QWidget()
                box = QtWidgets.QHBoxLayout(row)
                box.setContentsMargins(0, 0, 0, 0)
                control = QtWidgets.QComboBox()
                control.addItems(SEED_MODES)
                mode = node.ui.get("seed_control", "fixed")
                control.setCurrentText(mode if mode in SEED_MODES else "fixed")
                control.currentTextChanged.connect(self._set_seed_mode)
                self.seed_controls[spec.name] = control
                box.addWidget(editor, 1)
                box.addWidget(control)
            self.form.addRow(spec.name, row)
        self.refresh()

    def _set_seed_mode(self, mode: str) -> None:
        if self.node_id in self.adapter.workflow:
            self.adapter.workflow.node(self.node_id).ui["seed_control"] = mode

    def refresh(self) -> None:
        """Show the core graph's current values (after an edit on the canvas, an undo, …)."""
        if self.node_id is not None and self.node_id not in self.adapter.workflow:
            self.show_node(None)
            return
        if self.node_id is None or self._updating:
            return
        node = self.adapter.workflow.node(self.node_id)
        node_def = self.adapter.registry[node.type]
        self._updating = True
        try:
            for name, setter in self._setters.items():
                spec = node_def.input(name)
                setter(node.inputs.get(name, spec.default))
        finally:
            self._updating = False

    # --- editors --------------------------------------------------------------------------------------------------
    def _commit(self, name: str, value: Any) -> None:
        if self._updating or self.node_id not in self.adapter.workflow:
            return
        node = self.adapter.workflow.node(self.node_id)
        spec = self.adapter.registry[node.type].input(name)
        if node.inputs.get(name, spec.default) == value:
            return
        try:
            self.adapter.set_value(self.node_id, name, value)
        except ValueError:
            self.refresh()  # refused: show the value kept

    def _make_editor(self, spec: InputSpec) -> QtWidgets.QWidget:
        name = spec.name
        if spec.type == PortType.BOOLEAN:
            check = QtWidgets.QCheckBox()
            check.toggled.connect(lambda on: self._commit(name, bool(on)))
            self._setters[name] = lambda v: check.setChecked(bool(v))
            return check
        if spec.type == PortType.CHOICE:
            combo = QtWidgets.QComboBox()
            labels = dict(spec.labels)
            for choice in spec.choices:
                combo.addItem(labels.get(choice, choice), choice)
            combo.activated.connect(lambda _i: self._commit(name, combo.currentData()))
            self._setters[name] = lambda v: combo.setCurrentIndex(max(0, combo.findData(v)))
            return combo
        if spec.file_kind:
            return self._file_combo(spec)
        if spec.type == PortType.INT:
            low = int(spec.min) if spec.min is not None else INT32[0]
            high = int(spec.max) if spec.max is not None else INT32[1]
            if low < INT32[0] or high > INT32[1]:
                return self._big_int_edit(spec, low, high)
            spin = QtWidgets.QSpinBox()
            spin.setRange(low, high)
            spin.setSingleStep(max(int(spec.step or 1), spec.multiple_of or 1))
            spin.setKeyboardTracking(False)
            spin.editingFinished.connect(lambda: self._commit(name, spin.value()))
            spin.valueChanged.connect(lambda _v: spin.hasFocus() or self._commit(name, spin.value()))
            self._setters[name] = lambda v: spin.setValue(int(v or 0))
            return spin
        if spec.type == PortType.FLOAT:
            dspin = QtWidgets.QDoubleSpinBox()
            dspin.setDecimals(_decimals(spec.step))
            dspin.setRange(spec.min if spec.min is not None else -1e9, spec.max if spec.max is not None else 1e9)
            dspin.setSingleStep(spec.step or 0.1)
            dspin.setKeyboardTracking(False)
            dspin.editingFinished.connect(lambda: self._commit(name, round(dspin.value(), dspin.decimals())))
            dspin.valueChanged.connect(
                lambda _v: dspin.hasFocus() or self._commit(name, round(dspin.value(), dspin.decimals())))
            self._setters[name] = lambda v: dspin.setValue(float(v or 0))
            return dspin
        if spec.multiline:
            text = _CommitPlainTextEdit()
            text.setMinimumHeight(80)
            text.committed.connect(lambda: self._commit(name, text.toPlainText()))
            self._setters[name] = lambda v: text.toPlainText() != (v or "") and text.setPlainText(v or "")
            return text
        line = QtWidgets.QLineEdit()
        line.editingFinished.connect(lambda: self._commit(name, line.text()))
        self._setters[name] = lambda v: line.setText("" if v is None else str(v))
        return line

    def _big_int_edit(self, spec: InputSpec, low: int, high: int) -> QtWidgets.QLineEdit:
        """A 64-bit INT (seeds): QSpinBox is 32-bit, so a line edit that only takes integers within the limits."""
        line = QtWidgets.QLineEdit()
        line.setValidator(QtGui.QRegularExpressionValidator(QtCore.QRegularExpression(r"-?\d{0,20}"), line))
        line.setPlaceholderText(f"{low} … {high}")

        def commit() -> None:
            try:
                value = int(line.text())
            except ValueError:
                self.refresh()
                return
            if low <= value <= high:
                self._commit(spec.name, value)
            else:
                self.refresh()

        line.editingFinished.connect(commit)
        self._setters[spec.name] = lambda v: line.setText("" if v is None else str(v))
        return line

    def _file_combo(self, spec: InputSpec) -> QtWidgets.QComboBox:
        """An editable combo listing the model files of the input's kind."""
        from nodegraph.models.discovery import ModelFolders

        combo = QtWidgets.QComboBox()
        combo.setEditable(True)
        combo.setInsertPolicy(QtWidgets.QComboBox.InsertPolicy.NoInsert)
        try:
            # The window's folders include those added in the settings; a bare adapter searches the defaults.
            folders = getattr(self.adapter.parent(), "model_folders", None) or ModelFolders()
            names = folders.list(spec.file_kind)
        except (ValueError, OSError):
            folders, names = None, []
        fitting, other, line = names, [], None
        if folders is not None and self.node_id is not None:
            from nodegraph.models.preflight import sort_for_model_line

            fitting, other, line = sort_for_model_line(self.adapter.workflow, self.adapter.registry, folders,
                                                       self.node_id, names)
        combo.addItems(fitting)
        if other:  # files made for another model line than the checkpoint upstream: listed last, greyed
            combo.insertSeparator(combo.count())
            for name, other_line in other:
                combo.addItem(name)
                index = combo.count() - 1
                combo.setItemData(index, QtGui.QBrush(QtGui.QColor(130, 130, 130)),
                                  QtCore.Qt.ItemDataRole.ForegroundRole)
                combo.setItemData(index, f"made for {other_line.upper()} models; the checkpoint is "
                                         f"{line.upper()}", QtCore.Qt.ItemDataRole.ToolTipRole)
        combo.activated.connect(lambda _i: self._commit(spec.name, combo.currentText()))
        combo.lineEdit().editingFinished.connect(lambda: self._commit(spec.name, combo.currentText()))
        self._setters[spec.name] = lambda v: combo.setEditText("" if v is None else str(v))
        return combo
