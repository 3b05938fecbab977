"""Groups: titled backdrops behind nodes on the canvas (Edit ▸ Group, Ctrl+G), saved in ``workflow.meta["groups"]``.

A group is shown by NodeGraphQt's BackdropNode, and NodeGraphQt's own undo commands change it: add, delete, move
(dragging a backdrop drags the nodes on it), resize (the corner handle) and rename (double-click, or Edit ▸ Rename
Group). After every change of the undo stack (do, undo, redo) the groups on the canvas are written back into the core
workflow's meta, so undo and redo restore meta exactly, and a loaded workflow's groups are shown as backdrops.
Backdrops are never core nodes. Copy/paste and duplicate do not copy groups.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from NodeGraphQt.base.commands import PropertyChangedCmd
from NodeGraphQt.nodes.backdrop_node import BackdropNode
from PySide6 import QtCore, QtWidgets

#: The key of the group list in ``workflow.meta``.
GROUPS_KEY = "groups"
DEFAULT_TITLE = "Group"
DEFAULT_SIZE = (400, 300)
DEFAULT_COLOR = (5, 129, 138)
#: Room left around the grouped nodes (the title bar fits in the top margin).
PADDING = 40.0


def _num(value: float) -> float | int:
    value = round(float(value), 2)
    return int(value) if value.is_integer() else value


def _pair(value: Any) -> tuple[float | int, float | int] | None:
    if isinstance(value, (list, tuple)) and len(value) == 2 \
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        return _num(value[0]), _num(value[1])
    return None


@dataclass(frozen=True)
class Group:
    """One group as the workflow file keeps it: a title, the top-left corner, the size and an RGB colour."""

    title: str
    pos: tuple[float | int, float | int]
    size: tuple[float | int, float | int]
    color: tuple[int, int, int] = DEFAULT_COLOR

    def to_meta(self) -> dict[str, Any]:
        """The entry written in ``meta["groups"]``."""
        return {"title": self.title, "pos": list(self.pos), "size": list(self.size), "color": list(self.color)}

    @classmethod
    def from_meta(cls, entry: Any) -> Group | None:
        """Read an entry of ``meta["groups"]``; None when it has no usable position (such entries are kept as they
        are, never shown). A missing title, size or colour takes the default."""
        if not isinstance(entry, dict) or _pair(entry.get("pos")) is None:
            return None
        size = _pair(entry.get("size")) or DEFAULT_SIZE
        color = entry.get("color")
        if not (isinstance(color, (list, tuple)) and len(color) in (3, 4)
                and all(isinstance(c, int) and not isinstance(c, bool) for c in color)):
            color = DEFAULT_COLOR
        title = entry.get("title", DEFAULT_TITLE)
        return cls(title if isinstance(title, str) else str(title), _pair(entry["pos"]),
                   (max(size[0], 1), max(size[1], 1)), tuple(min(max(c, 0), 255) for c in color[:3]))

    def sort_key(self) -> tuple:
        """Canonical order: larger groups first (so nested groups are drawn on top), then by position and title."""
        return -self.size[0] * self.size[1], self.pos[1], self.pos[0], self.title, self.color


def is_backdrop(node: Any) -> bool:
    """True for a group backdrop on the canvas (never a core node)."""
    return isinstance(node, BackdropNode)


class Groups(QtCore.QObject):
    """Keeps the canvas's backdrops and ``workflow.meta["groups"]`` in sync and offers the group edits.

    `window` is the parent widget of the title dialog (None in adapter-only use).
    """

    def __init__(self, adapter: Any, window: QtWidgets.QWidget | None = None):
        super().__init__(adapter)
        self.adapter = adapter
        self.graph = adapter.graph
        self.window = window
        self._shown: Any = None  # the workflow whose groups the canvas shows
        adapter.undo_stack.indexChanged.connect(self.refresh)
        adapter.changed.connect(self._on_changed)
        self.graph.node_double_clicked.connect(self._on_double_clicked)
        self._on_changed()

    # --- queries --------------------------------------------------------------------------------------------------
    def backdrops(self) -> list[BackdropNode]:
        """The group backdrops on the canvas."""
        return [node for node in self.graph.all_nodes() if is_backdrop(node)]

    def selected(self) -> list[BackdropNode]:
        """The selected group backdrops."""
        return [node for node in self.graph.selected_nodes() if is_backdrop(node)]

    @staticmethod
    def group_of(backdrop: BackdropNode) -> Group:
        """The group a backdrop shows."""
        x, y = backdrop.model.pos
        return Group(backdrop.name(), (_num(x), _num(y)), (_num(backdrop.view.width), _num(backdrop.view.height)),
                     tuple(int(c) for c in backdrop.model.color[:3]))

    def groups(self) -> list[Group]:
        """The groups on the canvas, in canonical order."""
        return sorted((self.group_of(b) for b in self.backdrops()), key=Group.sort_key)

    # --- core <-> canvas ------------------------------------------------------------------------------------------
    def refresh(self, _index: int = 0) -> None:
        """Write the canvas's groups into the workflow's meta (after an edit, an undo or a redo).

        Meta is left untouched while it already describes the canvas, so a file's own order is kept until a group
        changes; entries this build cannot show are kept as they are.
        """
        if getattr(self.adapter, "_syncing", False):  # the adapter is loading a workflow: not a user edit
            return
        if self.adapter.workflow is not self._shown:
            self.show_groups()
            return
        meta = self.adapter.workflow.meta
        entries = meta.get(GROUPS_KEY)
        entries = entries if isinstance(entries, list) else []
        parsed = [Group.from_meta(entry) for entry in entries]
        canvas = self.groups()
        if sorted((g for g in parsed if g is not None), key=Group.sort_key) == canvas:
            return
        kept = [entry for entry, group in zip(entries, parsed, strict=True) if group is None]
        if canvas or kept:
            meta[GROUPS_KEY] = [group.to_meta() for group in canvas] + kept
        else:
            meta.pop(GROUPS_KEY, None)

    def show_groups(self) -> None:
        """Show the groups of the adapter's workflow (after a load), replacing any backdrops; not an undo step."""
        workflow = self.adapter.workflow
        self._shown = workflow
        old = self.backdrops()
        if old:
            self.graph.delete_nodes(old, push_undo=False)
        entries = workflow.meta.get(GROUPS_KEY)
        groups = [Group.from_meta(entry) for entry in entries] if isinstance(entries, list) else []
        for group in sorted((g for g in groups if g is not None), key=Group.sort_key):
            self._create(group, push_undo=False)

    def _on_changed(self) -> None:
        if self.adapter.workflow is not self._shown and not getattr(self.adapter, "_syncing", False):
            self.show_groups()

    def _create(self, group: Group, push_undo: bool) -> BackdropNode:
        backdrop = self.graph.create_node(BackdropNode.type_, name=group.title, pos=[float(v) for v in group.pos],
                                          color=(*group.color, 255), selected=False, push_undo=push_undo)
        # Set directly, not with set_name()/set_size(): NodeGraphQt would rename a second "Group" to "Group 1" and
        # record extra undo steps. The node object outlives undo/redo of its creation, so these stick.
        backdrop.NODE_NAME = backdrop.model.name = backdrop.view.name = group.title
        backdrop.view.width, backdrop.view.height = float(group.size[0]), float(group.size[1])
        backdrop.model.width, backdrop.model.height = backdrop.view.width, backdrop.view.height
        return backdrop

    # --- edits (each one undo step) -------------------------------------------------------------------------------
    def group_nodes(self, nodes: list[Any], title: str = DEFAULT_TITLE) -> BackdropNode:
        """Put a backdrop titled `title` behind `nodes` (canvas nodes; none: a default-size group at the centre of
        the view)."""
        if nodes:
            rect = QtCore.QRectF()
            for node in nodes:
                rect = rect.united(node.view.sceneBoundingRect())
            rect.adjust(-PADDING, -PADDING, PADDING, PADDING)
        else:
            viewer = self.graph.viewer()
            centre = viewer.mapToScene(viewer.viewport().rect().center())
            rect = QtCore.QRectF(centre.x() - DEFAULT_SIZE[0] / 2, centre.y() - DEFAULT_SIZE[1] / 2, *DEFAULT_SIZE)
        group = Group(title, (_num(rect.x()), _num(rect.y())), (_num(rect.width()), _num(rect.height())))
        stack = self.adapter.undo_stack
        stack.beginMacro(f'group "{title}"')
        try:
            backdrop = self._create(group, push_undo=True)
        finally:
            stack.endMacro()
        return backdrop

    def group_selected(self) -> BackdropNode:
        """Edit ▸ Group: a group around the selected nodes (and groups)."""
        return self.group_nodes(self.graph.selected_nodes())

    def remove(self, backdrops: list[BackdropNode]) -> None:
        """Delete groups; the nodes on them stay."""
        if backdrops:
            self.graph.delete_nodes(backdrops)

    def ungroup_selected(self) -> None:
        """Edit ▸ Ungroup: delete the selected groups, keeping their nodes."""
        self.remove(self.selected())

    def rename(self, backdrop: BackdropNode, title: str) -> None:
        """Retitle a group. Two groups may share a title, so this bypasses NodeGraphQt's unique-name rule."""
        if title != backdrop.name():
            self.adapter.undo_stack.push(PropertyChangedCmd(backdrop, "name", title))

    def rename_selected(self) -> None:
        """Edit ▸ Rename Group: ask for a new title of the selected group."""
        selected = self.selected()
        if len(selected) == 1:
            self._ask_and_rename(selected[0])

    def _on_double_clicked(self, node: Any) -> None:
        if is_backdrop(node):
            self._ask_and_rename(node)

    def _ask_and_rename(self, backdrop: BackdropNode) -> None:
        title = self.ask_title(backdrop.name())
        if title is not None and title.strip():
            self.rename(backdrop, title.strip())

    def ask_title(self, current: str) -> str | None:
        """Ask for a group title (tests monkeypatch this); None when cancelled or when nobody can be asked."""
        if QtWidgets.QApplication.platformName() == "offscreen":
            return None  # nobody to ask
        text, ok = QtWidgets.QInputDialog.getText(self.window, "Rename group", "Title:", text=current)
        return text if ok else None
