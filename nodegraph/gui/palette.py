"""Finding and adding nodes: a palette dock (node types by category, with a search box) and a quick-search popup on
the canvas (Tab, a double-click on empty canvas, or a link dragged from a port and dropped on empty canvas, which
lists only the nodes that can take that link and links the chosen one). All add nodes through the adapter, so adding
is undoable."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from NodeGraphQt.qgraphics.port import PortItem
from PySide6 import QtCore, QtGui, QtWidgets

from nodegraph.core.registry import NodeRegistry
from nodegraph.core.schema import NodeDef
from nodegraph.core.types import types_compatible
from nodegraph.gui.widgets import has_widget

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


@dataclass(frozen=True)
class PortEnd:
    """The port a link drag started from: core node id, port name, whether it is an output, and its port type."""

    node_id: str
    port: str
    output: bool
    type: str


def link_port(node_def: NodeDef, end: PortEnd) -> str | None:
    """The port of a new `node_def` node that a link from/to `end` would use: an input port it can feed (when `end`
    is an output) or an output that can feed it (when `end` is an input); an exact type match first. None: none."""
    if end.output:
        ports = [(s.name, s.type) for s in node_def.inputs if not has_widget(s) and types_compatible(end.type, s.type)]
    else:
        ports = [(o.name, o.type) for o in node_def.outputs if types_compatible(o.type, end.type)]
    exact = [name for name, port_type in ports if port_type == end.type]
    return (exact or [name for name, _ in ports] or [None])[0]


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
    """A small popup with a search field and the matching node types; Enter emits `chosen(type_id, scene_pos)`.

    Opened for a link dropped on empty canvas (`port` set), it lists only the node types that can take the link and
    emits `chosen_linked(type_id, scene_pos, port)` instead.
    """

    chosen = QtCore.Signal(str, QtCore.QPointF)
    chosen_linked = QtCore.Signal(str, QtCore.QPointF, object)

    def __init__(self, registry: NodeRegistry, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent, QtCore.Qt.WindowType.Popup)
        self.registry = registry
        self.scene_pos = QtCore.QPointF()
        self.port: PortEnd | None = None
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
        """List the node types matching `text` (and able to take the dropped link, if any); the first is current."""
        self.list.clear()
        for node_def in search(self.registry, text):
            if self.port is not None and link_port(node_def, self.port) is None:
                continue
            item = QtWidgets.QListWidgetItem(f"{node_def.display_name or node_def.type}  ·  {node_def.category}")
            item.setData(TYPE_ROLE, node_def.type)
            item.setToolTip(node_def.description)
            self.list.addItem(item)
        if self.list.count():
            self.list.setCurrentRow(0)

    def listed_types(self) -> list[str]:
        """The type ids listed now."""
        return [self.list.item(i).data(TYPE_ROLE) for i in range(self.list.count())]

    def popup(self, global_pos: QtCore.QPoint, scene_pos: QtCore.QPointF, port: PortEnd | None = None) -> None:
        """Show at `global_pos`; the chosen node will be added at `scene_pos` (and linked to `port`, when given)."""
        self.scene_pos = QtCore.QPointF(scene_pos)
        self.port = port
        if port is None:
            self.edit.setPlaceholderText("Add node…")
        else:
            self.edit.setPlaceholderText(f"Add node with {'an input' if port.output else 'an output'} of {port.type}…")
        self.edit.clear()
        self.filter("")
        self.move(global_pos)
        self.show()
        self.edit.setFocus()

    def accept(self) -> None:
        """Emit the current type and close."""
        item = self.list.currentItem()
        self.hide()
        if item is None:
            return
        if self.port is None:
            self.chosen.emit(item.data(TYPE_ROLE), self.scene_pos)
        else:
            self.chosen_linked.emit(item.data(TYPE_ROLE), self.scene_pos, self.port)

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


class LinkDropTrigger(QtCore.QObject):
    """Opens the quick search, filtered to the nodes that can take the link, when a link dragged from a port is
    released on empty canvas (ComfyUI's behaviour).

    NodeGraphQt has no signal for this: NodeViewer.apply_live_connection (reached from sceneMouseReleaseEvent) just
    hides its live pipe when no port is under the cursor. So an event filter on the scene, not a subclass, sees the
    release first, while the viewer still knows the port the drag started from (its `_start_port`), and the search
    opens once NodeGraphQt has finished the release (a queued call): a link the drag pulled off an input is gone by
    then, or was put back for a click that did not move, in which case nothing opens.
    """

    def __init__(self, adapter: Any, quick: QuickSearch):
        self.viewer = adapter.graph.viewer()
        super().__init__(self.viewer)
        self.adapter = adapter
        self.quick = quick
        self.viewer.scene().installEventFilter(self)

    def eventFilter(self, watched: Any, event: QtCore.QEvent) -> bool:  # noqa: N802 (Qt override)
        """Note a link released away from every port; never consumes the event."""
        if event.type() == QtCore.QEvent.Type.GraphicsSceneMouseRelease \
                and event.button() != QtCore.Qt.MouseButton.MiddleButton:
            start = getattr(self.viewer, "_start_port", None)
            live = getattr(self.viewer, "_LIVE_PIPE", None)
            pos = QtCore.QPointF(event.scenePos())
            if start is not None and live is not None and live.isVisible() \
                    and not any(isinstance(item, PortItem) for item in self.viewer.scene().items(pos)):
                detached = getattr(self.viewer, "_detached_port", None)
                QtCore.QTimer.singleShot(0, self, lambda: self._released(start, detached, pos))
        return super().eventFilter(watched, event)

    def _released(self, start: PortItem, detached: PortItem | None, scene_pos: QtCore.QPointF) -> None:
        if detached is not None and detached in start.connected_ports:
            return  # a click on a linked port: NodeGraphQt put the link back
        end = self.port_end(start)
        if end is not None:
            self.open_at(end, scene_pos)

    def port_end(self, item: PortItem) -> PortEnd | None:
        """The core port a canvas port item shows (None for a port of no core node)."""
        node_id = self.adapter._ids.get(item.node.id)
        node = self.adapter.workflow.nodes.get(node_id)
        node_def = self.adapter.registry.get(node.type) if node is not None else None
        if node_def is None:
            return None
        output = item.port_type == "out"
        spec = node_def.output(item.name) if output else node_def.input(item.name)
        return PortEnd(node_id, item.name, output, spec.type) if spec is not None else None

    def open_at(self, end: PortEnd, scene_pos: QtCore.QPointF) -> None:
        """Open the search for nodes that can take a link from/to `end`; the chosen one goes to `scene_pos`."""
        view_pos = self.viewer.mapFromScene(scene_pos)
        self.quick.popup(self.viewer.mapToGlobal(view_pos), scene_pos, end)


def add_linked(adapter: Any, type_id: str, pos: tuple[float, float], end: PortEnd) -> str | None:
    """Add a node of `type_id` with its linking port at `pos`, linked to `end`, as one undoable edit; returns the new
    node's id (None, with nothing added, when the type has no port for the link)."""
    node_def = adapter.registry[type_id]
    port = link_port(node_def, end)
    if port is None:
        return None
    stack = adapter.undo_stack
    stack.beginMacro(f"add {node_def.display_name or type_id} linked to {end.node_id}.{end.port}")
    try:
        node_id = adapter.add_node(type_id, pos)
        view = adapter.view_node(node_id)
        port_item = (view.inputs() if end.output else view.outputs())[port].view
        centre = port_item.sceneBoundingRect().center()
        x, y = view.view.xy_pos
        adapter.move_node(node_id, (round(x + pos[0] - centre.x(), 2), round(y + pos[1] - centre.y(), 2)))
        if end.output:
            adapter.connect(end.node_id, end.port, node_id, port)
        else:
            adapter.connect(node_id, port, end.node_id, end.port)
    finally:
        stack.endMacro()
    return node_id


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
    quick.chosen_linked.connect(lambda type_id, pos, end: add_linked(adapter, type_id, (pos.x(), pos.y()), end))
    quick.link_trigger = LinkDropTrigger(adapter, quick)

    properties = PropertiesPanel(adapter)
    props_dock = QtWidgets.QDockWidget("Properties", window)
    props_dock.setObjectName("properties_dock")
    props_dock.setWidget(properties)
    window.addDockWidget(QtCore.Qt.DockWidgetArea.RightDockWidgetArea, props_dock)
    return palette, quick, properties
