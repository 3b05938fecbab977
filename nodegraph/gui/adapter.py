"""The bridge between the core :class:`Workflow` (the single source of truth) and the NodeGraphQt canvas.

Every edit goes through NodeGraphQt's undo commands; the adapter listens to the signals those commands emit on do,
undo and redo (node created/deleted, port connected/disconnected, property changed, undo index changed for moves)
and applies the same change to the core workflow, so Undo/Redo restores the core graph exactly.
"""

from __future__ import annotations

import contextlib
import copy
import re
from collections.abc import Iterator
from typing import Any

from NodeGraphQt import NodeGraph
from PySide6 import QtCore

from nodegraph.core.graph import Link, NodeInstance, Workflow
from nodegraph.core.registry import NodeRegistry
from nodegraph.core.types import PortType, literal_type_problem, types_compatible
from nodegraph.gui.placeholder import make_placeholder_view
from nodegraph.gui.widgets import (
    PROP_PREFIX,
    WidgetEmbedder,
    from_widget,
    has_widget,
    register_node_classes,
    to_widget,
    view_type,
)


class CanvasGraph(NodeGraph):
    """A NodeGraphQt graph that refuses connections the adapter's type check rejects (drags included), can add
    many nodes at once (:meth:`batch`) and embeds node widgets when first shown (see widgets.WidgetEmbedder)."""

    accepts: Any = None
    _names: set[str] | None = None  # during a batch: every node name in the graph

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.embedder = WidgetEmbedder(self.viewer())

    def _on_connection_changed(self, disconnected: list, connected: list) -> None:
        if self.accepts is not None:
            connected = [pair for pair in connected if self.accepts(*pair)]
        super()._on_connection_changed(disconnected, connected)

    def get_unique_name(self, name: str) -> str:
        """`name`, or `name` followed by the first free number when a node already has it (as NodeGraphQt does,
        which searches a list of every name for each candidate: cubic in the number of nodes of one type)."""
        name = " ".join(name.split())
        taken = self._names if self._names is not None else {n.name() for n in self.all_nodes()}
        if name in taken:
            numbered = re.search(r"\w+ (\d+)$", name)
            base = name[:-len(numbered.group(1))].strip() if numbered else name
            number = 1
            while f"{base} {number}" in taken:
                number += 1
            name = f"{base} {number}"
        if self._names is not None:
            self._names.add(name)
        return name

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Add many nodes in one go: their layouts wait for :meth:`draw_held` (or the end of the batch), and unique
        names are checked against a set kept up to date instead of a list of every node's name."""
        scene = self.scene()
        scene.held_layouts = {}
        self._names = {n.name() for n in self.all_nodes()}
        try:
            yield
        finally:
            self.draw_held()
            self._names = None
            scene.held_layouts = None

    def draw_held(self) -> None:
        """Lay out the nodes whose layout a :meth:`batch` held back, once each."""
        scene = self.scene()
        held = getattr(scene, "held_layouts", None)
        if not held:
            return
        scene.held_layouts = None
        try:
            for item in held:
                item.draw_node()
                node = self.model.nodes.get(item.id)
                if node is not None:  # what NodeGraphQt's NodeAddedCmd records once the node is laid out
                    node.model.width, node.model.height = item.width, item.height
        finally:
            scene.held_layouts = {}


MODE_COLOURS = {"bypass": (110, 50, 150, 255)}


def _number(value: float) -> float | int:
    value = round(float(value), 2)
    return int(value) if value.is_integer() else value


class GraphAdapter(QtCore.QObject):
    """Keeps a core :class:`Workflow` and a NodeGraphQt graph in sync; edits made here are undoable.

    Node ids are the core's; the view's own ids are an internal detail.
    """

    changed = QtCore.Signal()

    def __init__(self, registry: NodeRegistry, parent: QtCore.QObject | None = None):
        super().__init__(parent)
        self.registry = registry
        self.graph = CanvasGraph()
        self.graph.accepts = self._accepts_views
        register_node_classes(self.graph, registry)
        self.workflow = Workflow()
        self._views: dict[str, Any] = {}        # core id -> NodeGraphQt node
        self._ids: dict[str, str] = {}          # view id -> core id
        self._removed: dict[str, NodeInstance] = {}
        self._implicit: dict[str, set[str]] = {}  # core id -> literal inputs left unset when the node appeared
        self._pending: NodeInstance | None = None
        self._syncing = False
        self.graph.node_created.connect(self._on_node_created)
        self.graph.nodes_deleted.connect(self._on_nodes_deleted)
        self.graph.port_connected.connect(self._on_port_connected)
        self.graph.port_disconnected.connect(self._on_port_disconnected)
        self.graph.property_changed.connect(self._on_property_changed)
        self.undo_stack.indexChanged.connect(self._sync_positions)
        self._frame_on_show = False
        self.graph.viewer().installEventFilter(self)

    # --- public API -----------------------------------------------------------------------------------------------
    @property
    def undo_stack(self) -> Any:
        """NodeGraphQt's QUndoStack: every edit is a command on it."""
        return self.graph.undo_stack()

    def view_node(self, node_id: str) -> Any:
        """The NodeGraphQt node showing core node `node_id`."""
        return self._views[node_id]

    def add_node(self, type_id: str, pos: tuple[float, float] = (0, 0), node_id: str | None = None,
                 inputs: dict[str, Any] | None = None, title: str | None = None) -> str:
        """Add a node (undoable); `inputs` None fills every literal's default. Returns the core node id."""
        node_def = self.registry[type_id]
        if inputs is None:
            inputs = {s.name: s.default for s in node_def.literal_inputs if s.default is not None}
        node_id = node_id or self.workflow.new_id(type_id)
        if node_id in self.workflow:
            raise ValueError(f"node id {node_id!r} is already used")
        self._pending = NodeInstance(node_id, type_id, dict(inputs), title, ui={"pos": [pos[0], pos[1]]})
        try:
            self.graph.create_node(view_type(type_id), name=title or node_def.display_name, pos=list(pos),
                                   selected=False)
        finally:
            self._pending = None
        return node_id

    def remove_nodes(self, node_ids: list[str]) -> None:
        """Delete nodes and their links (undoable)."""
        self.graph.delete_nodes([self._views[n] for n in node_ids])

    def connect(self, from_node: str, from_output: str, to_node: str, to_input: str) -> bool:
        """Link an output to an input (undoable); False, with nothing changed, when the types are incompatible."""
        out_port = self._views[from_node].outputs().get(from_output)
        in_port = self._views[to_node].inputs().get(to_input)
        if out_port is None or in_port is None or not self._compatible(from_node, from_output, to_node, to_input):
            return False
        out_port.connect_to(in_port)
        return Link(from_node, from_output, to_node, to_input) in self.workflow.links

    def disconnect(self, to_node: str, to_input: str) -> None:
        """Remove the link into an input (undoable)."""
        in_port = self._views[to_node].inputs()[to_input]
        for other in list(in_port.connected_ports()):
            in_port.disconnect_from(other)

    def move_node(self, node_id: str, pos: tuple[float, float]) -> None:
        """Move a node (undoable), as a drag on the canvas does."""
        node = self._views[node_id]
        prev = node.view.xy_pos
        node.view.xy_pos = list(pos)
        self.graph._on_nodes_moved({node.view: prev})

    def set_value(self, node_id: str, name: str, value: Any) -> None:
        """Set a literal input (undoable) through its widget property; ValueError for a value its input refuses."""
        node_def = self.registry.get(self.workflow.node(node_id).type)
        spec = node_def.input(name) if node_def is not None else None  # a placeholder's values are read-only
        if spec is None or not has_widget(spec):
            raise ValueError(f"{node_id}.{name} has no widget")
        problem = literal_type_problem(spec.type, value) or (
            spec.type == PortType.CHOICE and value not in spec.choices and f"{value!r} is not a choice")
        if problem:
            raise ValueError(f"{node_id}.{name}: {problem}")
        self._views[node_id].set_property(PROP_PREFIX + name, to_widget(spec, value), push_undo=True)

    def selected_ids(self) -> list[str]:
        """Core ids of the nodes selected on the canvas."""
        return [self._ids[v.id] for v in self.graph.selected_nodes() if self._ids.get(v.id) in self.workflow]

    def show_mode(self, node_id: str) -> None:
        """Show a node's mode: bypassed nodes purple and see-through, muted ones greyed out with a cross."""
        view = self._views.get(node_id)
        node = self.workflow.nodes.get(node_id)
        if view is None or node is None:
            return
        item = view.view
        if not hasattr(item, "_mode_colour"):
            item._mode_colour = tuple(item.color)
        if node.mode == "bypass" and tuple(item.color) != MODE_COLOURS["bypass"]:
            item._mode_colour = tuple(item.color)
        item.color = MODE_COLOURS["bypass"] if node.mode == "bypass" else item._mode_colour
        item.setOpacity(0.55 if node.mode == "bypass" else 1.0)
        item.disabled = node.mode == "mute"
        item.update()

    def undo(self) -> None:
        """Undo the last edit."""
        self.undo_stack.undo()

    def redo(self) -> None:
        """Redo the last undone edit."""
        self.undo_stack.redo()

    def load(self, workflow: Workflow) -> None:
        """Show `workflow` (it becomes the adapter's core graph); clears the undo history."""
        self._syncing = True
        try:
            # Not clear_session(): it pushes an undo macro per connected port, each signalled to every listener.
            self.graph.delete_nodes(self.graph.all_nodes(), push_undo=False)
            self.undo_stack.clear()
            self._views.clear()
            self._ids.clear()
            self._removed.clear()
            self._implicit.clear()
            self.workflow = workflow
            with self.graph.batch():
                for node in workflow:
                    node_def = self.registry.get(node.type)
                    pos = node.ui.get("pos", [0, 0])
                    pos = [float(pos[0]), float(pos[1])]
                    if node_def is None:  # a placeholder: drawn apart, its values kept as they are
                        view = make_placeholder_view(node, workflow, self.registry)
                        view.model.pos = pos  # as create_node records it; add_node only places the item
                        self.graph.add_node(view, pos=pos, selected=False, push_undo=False)
                    else:
                        view = self.graph.create_node(view_type(node.type), name=node.title or node_def.display_name,
                                                      pos=pos, selected=False, push_undo=False)
                    self._bind(node.id, view)
                    self._show_values(node)
                    if node.mode != "normal":
                        self.show_mode(node.id)
                self.graph.draw_held()  # ports in place before the links are drawn to them
                for link in workflow.links:
                    if link.from_node in self._views and link.to_node in self._views:
                        out_port = self._views[link.from_node].outputs().get(link.from_output)
                        in_port = self._views[link.to_node].inputs().get(link.to_input)
                        if out_port is not None and in_port is not None:
                            out_port.connect_to(in_port, push_undo=False, emit_signal=False)
        finally:
            self._syncing = False
        self.undo_stack.clear()
        self.undo_stack.setClean()
        self.changed.emit()
        self.frame_all()

    def frame_all(self) -> None:
        """Zoom and scroll the canvas to show every node, never zooming in past 100 % (a small graph keeps its nodes
        at their size, a big one is zoomed out to fit). Until the canvas is shown it frames when it is."""
        viewer = self.graph.viewer()
        if not viewer.isVisible():
            self._frame_on_show = True
            return
        self._frame_on_show = False
        items = [node.view for node in self.graph.all_nodes()]
        if not items:
            viewer.reset_zoom()
            return
        rect = QtCore.QRectF()
        for item in items:
            rect = rect.united(item.sceneBoundingRect())
        margin = 20 + 0.05 * max(rect.width(), rect.height())
        rect.adjust(-margin, -margin, margin, margin)
        seen = viewer.viewport().size()
        if rect.width() <= seen.width() and rect.height() <= seen.height():
            viewer.reset_zoom(rect.center())  # NodeGraphQt's 100 %, centred on the nodes
        else:
            viewer.set_scene_rect([rect.x(), rect.y(), rect.width(), rect.height()])  # fitted, aspect kept

    def eventFilter(self, watched: QtCore.QObject, event: QtCore.QEvent) -> bool:  # noqa: N802 (Qt override)
        """Frame the graph loaded while the canvas was hidden when it shows (sized by then, not painted yet)."""
        if event.type() == QtCore.QEvent.Type.Show and self._frame_on_show:
            self.frame_all()
        return False

    def to_workflow(self) -> Workflow:
        """A copy of the core graph, for saving or running."""
        return self.workflow.copy()

    # --- type checks ----------------------------------------------------------------------------------------------
    def _compatible(self, from_node: str, from_output: str, to_node: str, to_input: str) -> bool:
        """Whether the link may be made; never to or from a placeholder, whose port types are unknown."""
        out_def = self.registry.get(self.workflow.node(from_node).type)
        in_def = self.registry.get(self.workflow.node(to_node).type)
        if out_def is None or in_def is None:
            return False
        out_spec, in_spec = out_def.output(from_output), in_def.input(to_input)
        return out_spec is not None and in_spec is not None and types_compatible(out_spec.type, in_spec.type)

    def _accepts_views(self, port_a: Any, port_b: Any) -> bool:
        ends = {p.port_type: p for p in (port_a, port_b)}
        if len(ends) != 2 or ends.get("in") is None or ends.get("out") is None:
            return False
        src, dst = ends["out"], ends["in"]
        return self._compatible(self._ids[src.node.id], src.name, self._ids[dst.node.id], dst.name)

    # --- view -> core -----------------------------------------------------------------------------------------------
    def _bind(self, node_id: str, view: Any) -> None:
        self._views[node_id] = view
        self._ids[view.id] = node_id

    def _show_values(self, node: NodeInstance) -> None:
        view = self._views[node.id]
        node_def = self.registry.get(node.type)
        if node_def is None:  # a placeholder has no widgets
            return
        self._implicit.setdefault(node.id, {s.name for s in node_def.literal_inputs if s.name not in node.inputs})
        for spec in node_def.inputs:
            value = node.inputs.get(spec.name)
            if spec.type == PortType.CHOICE and value is not None and value not in spec.choices:
                continue  # an unknown choice stays in the core graph; the combo cannot show it
            if has_widget(spec):
                view.set_property(PROP_PREFIX + spec.name, to_widget(spec, node.inputs.get(spec.name)),
                                  push_undo=False)

    def _on_node_created(self, view: Any) -> None:
        if self._syncing:
            return
        if not hasattr(view, "node_def"):  # groups.py: a group backdrop is not a core node
            return
        node_id = self._ids.get(view.id)
        if node_id is not None and node_id in self._removed:  # undo of a delete, or redo of an add
            node = self._removed.pop(node_id)
        elif self._pending is not None:
            node = self._pending
        else:  # created on the canvas (tab search, palette)
            node_def = view.node_def
            node = NodeInstance(self.workflow.new_id(node_def.type), node_def.type,
                                {s.name: s.default for s in node_def.literal_inputs if s.default is not None},
                                ui={"pos": [_number(v) for v in view.pos()]})
        self.workflow.nodes[node.id] = node
        self._bind(node.id, view)
        self._syncing = True
        try:
            self._show_values(node)
            if node.mode != "normal":
                self.show_mode(node.id)
        finally:
            self._syncing = False
        self.changed.emit()

    def _on_nodes_deleted(self, view_ids: list[str]) -> None:
        if self._syncing:
            return
        for view_id in view_ids:
            node_id = self._ids.get(view_id)
            if node_id in self.workflow:
                self._removed[node_id] = copy.deepcopy(self.workflow.node(node_id))
                self.workflow.remove_node(node_id)
                self._views.pop(node_id, None)
        self.changed.emit()

    def _link_of(self, in_port: Any, out_port: Any) -> Link:
        return Link(self._ids[out_port.node().id], out_port.name(), self._ids[in_port.node().id], in_port.name())

    def _on_port_connected(self, in_port: Any, out_port: Any) -> None:
        if not self._syncing:
            link = self._link_of(in_port, out_port)
            self.workflow.connect(link.from_node, link.from_output, link.to_node, link.to_input)
            self.changed.emit()

    def _on_port_disconnected(self, in_port: Any, out_port: Any) -> None:
        if not self._syncing:
            link = self._link_of(in_port, out_port)
            self.workflow.links = [existing for existing in self.workflow.links if existing != link]
            self.changed.emit()

    def _on_property_changed(self, view: Any, name: str, shown: Any) -> None:
        node_id = self._ids.get(view.id)
        if self._syncing or not name.startswith(PROP_PREFIX) or node_id not in self.workflow:
            return
        node = self.workflow.node(node_id)
        node_def = self.registry.get(node.type)
        spec = node_def.input(name[len(PROP_PREFIX):]) if node_def is not None else None
        if spec is None:
            return
        ok, value = from_widget(spec, shown)
        if not ok:
            return
        if value == spec.default and spec.name in self._implicit.get(node_id, ()):
            node.inputs.pop(spec.name, None)  # back to an unset input showing its default: undo restores "unset"
        else:
            node.inputs[spec.name] = value
        self.changed.emit()

    def _sync_positions(self, _index: int = 0) -> None:
        if self._syncing:
            return
        for node_id, view in self._views.items():
            node = self.workflow.nodes.get(node_id)
            if node is None:
                continue
            x, y = view.model.pos
            old = node.ui.get("pos")
            if not old or abs(old[0] - x) > 0.005 or abs(old[1] - y) > 0.005:
                node.ui["pos"] = [_number(x), _number(y)]
        self.changed.emit()
