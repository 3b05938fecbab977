"""Finding and adding nodes: a palette dock (node types by category, with a search box) and a quick-search popup on
the canvas (Tab, or a double-click on empty canvas). Both add nodes through the adapter, so adding is undoable."""

from __future__ import annotations

from typing import Any

from PySide6 import QtCore, QtGui, QtWidgets

from nodegraph.core.registry import NodeRegistry
from nodegraph.core.schema import NodeDef

TYPE_ROLE = QtCore.Qt.ItemDataRole.UserRole


def matches(node_def: NodeDef, text: str) -> bool:
    """True when every word of `text` occurs in the node's display name, type id, category or description."""
    haystack = " ".join((node_def.display_name, node_def.type, node_def.category, node_def.description)).lower()
    return all(word in haystack for word in text.lower().split())


def search(registry: NodeRegistry, text: str) -> list[NodeDef]:
    """The node types matching `text`; names starting with the text come first."""
    found = [d for d in registry if matches(d, text)]
    first = text.strip().lower()
    return sorted(found, key=lambda d: (not (d.display_name or d.type).lower().startswith(first),
                                        (d.display_name or d.type).lower()))


class NodePalette(QtWidgets.QWidget):
    """Node types grouped by category; double-click or Enter on a type emits `chosen(type_id)`."""

    chosen = QtCore.Signal(str)

    def __init__(self, registry: NodeRegistry, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self.registry = registry
        self.search_box = QtWidgets.QLineEdit()
        self.search_box.setPlaceholderText("Search nodes…")
        self.search_box.setClearButtonEnabled(True)
        self.tree = QtWidgets.QTreeWidget()
        self.tree.setHeaderHidden(True)
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addWidget(self.search_box)
        layout.addWidget(self.tree)
        self._fill()
        self.search_box.textChanged.connect(self.filter)
        self.search_box.returnPressed.connect(self._choose_first)
        self.tree.itemActivated.connect(self._on_activated)  # double-click and Enter

    def _fill(self) -> None:
        categories: dict[str, QtWidgets.QTreeWidgetItem] = {}
        for node_def in sorted(self.registry, key=lambda d: (d.category.lower(), (d.display_name or d.type).lower())):
            parent = categories.get(node_def.category)
            if parent is None:
                parent = categories[node_def.category] = QtWidgets.QTreeWidgetItem(self.tree, [node_def.category])
                parent.setFlags(parent.flags() & ~QtCore.Qt.ItemFlag.ItemIsSelectable)
            item = QtWidgets.QTreeWidgetItem(parent, [node_def.display_name or node_def.type])
            item.setData(0, TYPE_ROLE, node_def.type)
            item.setToolTip(0, f"{node_def.type}\n{node_def.description}".strip())
        self.tree.expandAll()

    def type_items(self) -> list[QtWidgets.QTreeWidgetItem]:
        """Every node-type item (all categories)."""
        root = self.tree.invisibleRootItem()
        return [root.child(i).child(j) for i in range(root.childCount()) for j in range(root.child(i).childCount())]

    def visible_types(self) -> list[str]:
        """The type ids the current search shows."""
        return [item.data(0, TYPE_ROLE) for item in self.type_items()
                if not item.isHidden() and not item.parent().isHidden()]

    def filter(self, text: str) -> None:
        """Show only the node types matching `text` (and the categories holding them)."""
        root = self.tree.invisibleRootItem()
        for i in range(root.childCount()):
            category = root.child(i)
            shown = 0
            for j in range(category.childCount()):
                item = category.child(j)
                hide = not matches(self.registry[item.data(0, TYPE_ROLE)], text)
                item.setHidden(hide)
                shown += not hide
            category.setHidden(shown == 0)
        visible = [item for item in self.type_items() if not item.isHidden() and not item.parent().isHidden()]
        if text and visible:
            self.tree.setCurrentItem(visible[0])

    def _choose_first(self) -> None:
        item = self.tree.currentItem()
        if item is None or item.isHidden() or item.data(0, TYPE_ROLE) is None:
            types = self.visible_types()
            if types:
                self.chosen.emit(types[0])
            return
        self.chosen.emit(item.data(0, TYPE_ROLE))

    def _on_activated(self, item: QtWidgets.QTreeWidgetItem, _column: int = 0) -> None:
        type_id = item.data(0, TYPE_ROLE)
        if type_id:
            self.chosen.emit(type_id)


class QuickSearch(QtWidgets.QFrame):
    """A small popup with a search field and the matching node types; Enter emits `chosen(type_id, scene_pos)`."""

    chosen = QtCore.Signal(str, QtCore.QPointF)

    def __init__(self, registry: NodeRegistry, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent, QtCore.Qt.WindowType.Popup)
        self.registry = registry
        self.scene_pos = QtCore.QPointF()
        self.setFrameShape(QtWidgets.QFrame.Shape.StyledPanel)
        self.edit = QtWidgets.QLineEdit()
        self.edit.setPlaceholderText("Add node…")
        self.list = QtWidgets.QListWidget()
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addWidget(self.edit)
        layout.addWidget(self.list)
        self.resize(260, 300)
        self.edit.textChanged.connect(self.filter)
        self.edit.returnPressed.connect(self.accept)
        self.list.itemActivated.connect(lambda _item: self.accept())
        self.edit.installEventFilter(self)
        self.filter("")

    def filter(self, text: str) -> None:
        """List the node types matching `text`; the first is current."""
        self.list.clear()
        for node_def in search(self.registry, text):
            item = QtWidgets.QListWidgetItem(f"{node_def.display_name or node_def.type}  ·  {node_def.category}")
            item.setData(TYPE_ROLE, node_def.type)
            item.setToolTip(node_def.description)
            self.list.addItem(item)
        if self.list.count():
            self.list.setCurrentRow(0)

    def listed_types(self) -> list[str]:
        """The type ids listed now."""
        return [self.list.item(i).data(TYPE_ROLE) for i in range(self.list.count())]

    def popup(self, global_pos: QtCore.QPoint, scene_pos: QtCore.QPointF) -> None:
        """Show at `global_pos`; the chosen node will be added at `scene_pos`."""
        self.scene_pos = QtCore.QPointF(scene_pos)
        self.edit.clear()
        self.filter("")
        self.move(global_pos)
        self.show()
        self.edit.setFocus()

    def accept(self) -> None:
        """Emit the current type and close."""
        item = self.list.currentItem()
        self.hide()
        if item is not None:
            self.chosen.emit(item.data(TYPE_ROLE), self.scene_pos)

    def eventFilter(self, watched: Any, event: QtCore.QEvent) -> bool:  # noqa: N802 (Qt override)
        """Up/Down in the search field move through the list."""
        if event.type() == QtCore.QEvent.Type.KeyPress and event.key() in (QtCore.Qt.Key.Key_Up,
                                                                            QtCore.Qt.Key.Key_Down):
            row = self.list.currentRow() + (1 if event.key() == QtCore.Qt.Key.Key_Down else -1)
            if 0 <= row < self.list.count():
                self.list.setCurrentRow(row)
            return True
        return super().eventFilter(watched, event)


class CanvasSearchTrigger(QtCore.QObject):
    """Opens the quick search on Tab over the canvas, or on a double-click on empty canvas."""

    def __init__(self, viewer: QtWidgets.QGraphicsView, quick: QuickSearch):
        super().__init__(viewer)
        self.viewer = viewer
        self.quick = quick
        viewer.installEventFilter(self)
        viewer.viewport().installEventFilter(self)

    def open_at(self, view_pos: QtCore.QPoint) -> None:
        """Open the popup at a position in the viewer's coordinates."""
        self.quick.popup(self.viewer.mapToGlobal(view_pos), self.viewer.mapToScene(view_pos))

    def eventFilter(self, watched: Any, event: QtCore.QEvent) -> bool:  # noqa: N802 (Qt override)
        """Intercept Tab (before NodeGraphQt's own search) and double-clicks on empty canvas."""
        kind = event.type()
        if kind in (QtCore.QEvent.Type.KeyPress, QtCore.QEvent.Type.ShortcutOverride) \
                and event.key() == QtCore.Qt.Key.Key_Tab and not event.modifiers():
            if kind == QtCore.QEvent.Type.KeyPress:
                pos = self.viewer.mapFromGlobal(QtGui.QCursor.pos())
                if not self.viewer.rect().contains(pos):
                    pos = self.viewer.rect().center()
                self.open_at(pos)
            event.accept()
            return True
        if kind == QtCore.QEvent.Type.MouseButtonDblClick and watched is self.viewer.viewport() \
                and event.button() == QtCore.Qt.MouseButton.LeftButton:
            pos = event.position().toPoint()
            if self.viewer.itemAt(pos) is None:
                self.open_at(pos)
                return True
        return super().eventFilter(watched, event)


def install_node_tools(window: Any) -> tuple[NodePalette, QuickSearch, Any]:
    """Give `window` (a MainWindow) the palette dock, the canvas quick search and the properties dock."""
    from nodegraph.gui.properties import PropertiesPanel

    adapter = window.adapter
    viewer = adapter.graph.viewer()

    def add_at(type_id: str, pos: tuple[float, float]) -> None:
        node_id = adapter.add_node(type_id, pos)
        viewer.scene().clearSelection()
        adapter.view_node(node_id).view.setSelected(True)  # not set_selected: that is an undo step

    def add_at_centre(type_id: str) -> None:
        centre = viewer.mapToScene(viewer.viewport().rect().center())
        add_at(type_id, (round(centre.x(), 2), round(centre.y(), 2)))

    palette = NodePalette(window.registry)
    palette.chosen.connect(add_at_centre)
    dock = QtWidgets.QDockWidget("Nodes", window)
    dock.setObjectName("palette_dock")
    dock.setWidget(palette)
    window.addDockWidget(QtCore.Qt.DockWidgetArea.LeftDockWidgetArea, dock)

    quick = QuickSearch(window.registry, window)
    quick.chosen.connect(lambda type_id, pos: add_at(type_id, (round(pos.x(), 2), round(pos.y(), 2))))
    quick.trigger = CanvasSearchTrigger(viewer, quick)

    properties = PropertiesPanel(adapter)
    props_dock = QtWidgets.QDockWidget("Properties", window)
    props_dock.setObjectName("properties_dock")
    props_dock.setWidget(properties)
    window.addDockWidget(QtCore.Qt.DockWidgetArea.RightDockWidgetArea, props_dock)
    return palette, quick, properties
