"""Node classes generated from node schemas: one NodeGraphQt class per :class:`NodeDef`, ports coloured by type,
literal inputs shown as widgets on the node. The nodes are built for opening big workflows quickly: a node lays
itself out only once it is in a scene (:class:`_NodeItem`), and its widgets are embedded when first shown
(:class:`_Boxed`, :class:`WidgetEmbedder`)."""

from __future__ import annotations

import hashlib
import re
import weakref
from typing import Any

import shiboken6
from NodeGraphQt import BaseNode
from NodeGraphQt.constants import LayoutDirectionEnum, NodePropWidgetEnum, ViewerEnum
from NodeGraphQt.errors import NodeWidgetError
from NodeGraphQt.qgraphics.node_base import NodeItem
from NodeGraphQt.widgets.node_widgets import NodeBaseWidget, NodeCheckBox, NodeComboBox, NodeLineEdit, _NodeGroupBox
from PySide6 import QtCore, QtWidgets

from nodegraph.core.registry import NodeRegistry
from nodegraph.core.schema import InputSpec, NodeDef
from nodegraph.core.types import PortType

#: The NodeGraphQt identifier of every generated node class.
IDENTIFIER = "nodegraph"
#: Widget properties are named with this prefix so input names never clash with NodeGraphQt's own properties.
PROP_PREFIX = "in_"

PORT_COLORS: dict[str, tuple[int, int, int]] = {
    PortType.MODEL: (180, 130, 255),
    PortType.CLIP: (255, 214, 90),
    PortType.VAE: (255, 100, 100),
    PortType.CONDITIONING: (255, 160, 50),
    PortType.LATENT: (255, 120, 200),
    PortType.IMAGE: (100, 180, 255),
    PortType.MASK: (120, 220, 120),
    PortType.UPSCALE_MODEL: (140, 110, 200),
    PortType.CONTROL_NET: (0, 200, 170),
    PortType.INT: (120, 200, 200),
    PortType.FLOAT: (150, 210, 170),
    PortType.STRING: (200, 200, 200),
    PortType.BOOLEAN: (220, 180, 140),
    PortType.CHOICE: (190, 190, 230),
    PortType.ANY: (160, 160, 160),
}


def port_color(port_type: str) -> tuple[int, int, int]:
    """The colour of a port of `port_type` (pack-defined types get a stable colour derived from their name)."""
    if port_type in PORT_COLORS:
        return PORT_COLORS[port_type]
    digest = hashlib.sha1(port_type.encode()).digest()
    return (80 + digest[0] % 160, 80 + digest[1] % 160, 80 + digest[2] % 160)


def has_widget(spec: InputSpec) -> bool:
    """True when the input is edited in a widget on the node; otherwise it is a port fed by a link."""
    return spec.is_literal and (spec.default is not None or spec.file_kind is not None or bool(spec.choices))


def class_name(type_id: str) -> str:
    """The generated NodeGraphQt class name of a node type."""
    return "N_" + re.sub(r"[^A-Za-z0-9_]", "_", type_id)


def view_type(type_id: str) -> str:
    """The NodeGraphQt node type string (``identifier.ClassName``) of a node type."""
    return f"{IDENTIFIER}.{class_name(type_id)}"


#: The size of an embedded node widget, by kind, label, items and title alignment: what a node widget not embedded
#: yet reserves (see :class:`_Boxed`).
_SIZES: dict[tuple, QtCore.QSizeF] = {}
#: Node widgets in a scene whose QWidget is not embedded yet.
_PENDING: weakref.WeakSet = weakref.WeakSet()


class _LabelBox(_NodeGroupBox):
    """NodeGraphQt's labelled box around a node widget, restyled only when its title alignment changes.

    NodeGraphQt sets the same style sheet again at every redraw of a node, and each setStyleSheet re-polishes the
    widget. Until the box is embedded in its node (``owner`` is then the node widget waiting for it), showing or
    hiding it only shows or hides that node widget: the box must never show as a window of its own."""

    _styled: tuple[str, bool] | None = None
    _unstyled = False  # styled for an alignment not applied yet
    owner: Any = None
    inner_css = ""  # the style of the widget in the box

    def setStyleSheet(self, css: str) -> None:  # noqa: N802 (Qt override)
        """Style the box (and the widget in it)."""
        super().setStyleSheet(self.inner_css + css)

    def setTitleAlign(self, align: str = "center") -> None:  # noqa: N802 (NodeGraphQt's name)
        """Style the title for `align` unless it already is (before the box is embedded: when it is)."""
        key = (align, bool(self.title()))
        if key != self._styled:
            self._styled = key
            self._unstyled = self.owner is not None
            if not self._unstyled:
                super().setTitleAlign(align)

    def apply_style(self) -> None:
        """Apply the style :meth:`setTitleAlign` left for the embedding."""
        if self._unstyled:
            self._unstyled = False
            super().setTitleAlign(self._styled[0])

    def setVisible(self, visible: bool) -> None:  # noqa: N802 (Qt override)
        """Show or hide the box (before it is embedded: the node widget, which embeds it when shown)."""
        if self.owner is None:  # embedded
            super().setVisible(visible)
            return
        owner = self.owner()
        if owner is None:  # its node widget is gone
            return
        owner.setVisible(visible)
        if visible:  # NodeGraphQt shows widgets while painting a node zoomed in: embed it right after
            QtCore.QTimer.singleShot(0, lambda ref=self.owner: ref() is not None and ref().embed())


class _Boxed:
    """Mixin for node widgets: the QWidget sits in a :class:`_LabelBox`, embedded in the node when first needed.

    Embedding a QWidget in a QGraphicsProxyWidget (a hidden native window, a style polish) is half the time to create a
    node, and a big workflow opened zoomed out shows no widget at all. Until it is embedded the box is a live, hidden
    QWidget (values, signals and the enabled state work as usual) and the node widget reserves the size the same kind
    of widget had once embedded (the first of each kind is embedded at once to learn it). :class:`WidgetEmbedder`
    embeds the widgets a view is about to paint."""

    _box: _LabelBox | None = None

    def widget(self) -> _LabelBox | None:
        """The box around the QWidget, embedded or not (NodeGraphQt reaches the QWidget through this)."""
        return self._box

    def set_custom_widget(self, widget: QtWidgets.QWidget, css: str = "") -> None:
        """Put `widget` under the label (once), `css` its style; it is embedded in the node later."""
        if self._box is not None:
            raise NodeWidgetError("Custom node widget already set.")
        box = _LabelBox(self._label)
        box.inner_css = css
        box.add_node_widget(widget)
        box.owner = weakref.ref(self)
        self._box = box
        if self.scene() is not None:
            _PENDING.add(self)

    def itemChange(self, change: Any, value: Any) -> Any:  # noqa: N802 (Qt override)
        """Keep a widget waiting for its embedding in the pending set while its node is in a scene (a deleted node
        may come back with Undo)."""
        if change == QtWidgets.QGraphicsItem.GraphicsItemChange.ItemSceneHasChanged and self._box is not None \
                and self._box.owner is not None:
            if value is None:
                _PENDING.discard(self)
            else:
                _PENDING.add(self)
        return super().itemChange(change, value)

    def _size_key(self) -> tuple:
        box = self._box
        control = box.get_node_widget()
        items = (tuple(control.itemText(i) for i in range(control.count()))
                 if isinstance(control, QtWidgets.QComboBox) else ())
        return type(self), box.title(), items, box._styled

    def reserve(self) -> None:
        """Before the node is laid out: take the size of this kind of widget (embedding it if none was yet)."""
        if self._box is None or self._box.owner is None:
            return
        size = _SIZES.get(self._size_key())
        if size is None:
            self.embed(relayout=False)
        else:
            self.resize(size)

    def embed(self, relayout: bool = True) -> None:
        """Embed the box in the node (once); lay the node out again if it is not the size reserved."""
        box = self._box
        if box is None or box.owner is None or not shiboken6.isValid(self):
            return
        box.owner = None
        _PENDING.discard(self)
        reserved, pos, hidden = QtCore.QSizeF(self.size()), self.pos(), not self.isVisibleTo(self.parentItem())
        key = self._size_key()
        size = _SIZES.get(key)
        if size is None:
            # The first of its kind is embedded as NodeGraphQt embeds every widget: unstyled, so it takes the size
            # of the unstyled box, and styled afterwards. That size is learnt for the others.
            if box.inner_css:
                box.get_node_widget().setStyleSheet(box.inner_css)
                box.inner_css = ""
            self.setWidget(box)
            box.apply_style()
            _SIZES[key] = QtCore.QSizeF(self.size())
        else:  # styled first (much cheaper than after) and given the size learnt
            box.apply_style()
            box.resize(size.toSize())
            self.setWidget(box)
        self.setPos(pos)  # setWidget moved it to the box's own position
        if hidden:  # setWidget showed it
            self.setVisible(False)
        node = self.parentItem()
        if relayout and self.size() != reserved and node is not None:
            node.draw_node()


class WidgetEmbedder(QtCore.QObject):
    """Embeds the node widgets a view is about to paint (in sight and not zoomed out to NodeGraphQt's blank boxes)
    just before the view paints them; see :class:`_Boxed`."""

    def __init__(self, viewer: QtWidgets.QGraphicsView):
        super().__init__(viewer)
        self._viewer = viewer
        viewer.viewport().installEventFilter(self)

    def eventFilter(self, watched: QtCore.QObject, event: QtCore.QEvent) -> bool:  # noqa: N802 (Qt override)
        """Before each paint of the view, embed the pending widgets it shows."""
        if event.type() == QtCore.QEvent.Type.Paint and _PENDING:
            self.embed_shown()
        return False

    def embed_shown(self) -> None:
        """Embed the pending node widgets in sight, on nodes wide enough on screen to show their widgets."""
        viewer = self._viewer
        scene, scale = viewer.scene(), viewer.transform().m11()
        sight = viewer.mapToScene(viewer.viewport().rect()).boundingRect()
        for widget in list(_PENDING):
            if not shiboken6.isValid(widget) or widget.scene() is not scene:
                continue
            node = widget.parentItem()
            # NodeGraphQt hides node widgets while a node is narrower on screen than _proxy_mode_threshold pixels.
            if node.width * scale + 2 >= node._proxy_mode_threshold and widget.sceneBoundingRect().intersects(sight):
                widget.embed()


def _css(selector: str, rules: dict[str, str]) -> str:
    return selector + " {\n" + "".join(f"  {name}:{value};\n" for name, value in rules.items()) + "}\n"


_BACKGROUND = ViewerEnum.BACKGROUND_COLOR.value
_TEXT = tuple(255 - c for c in _BACKGROUND)
#: NodeGraphQt's style of its node text fields and check boxes; here given to their label box, so a widget has one
#: style sheet (a style sheet on the field itself made creating it twice as slow).
_LINE_EDIT_CSS = _css("QLineEdit", {
    "background": "rgba({},{},{},20)".format(*_BACKGROUND),
    "border": "1px solid rgb({},{},{})".format(*ViewerEnum.GRID_COLOR.value),
    "border-radius": "3px",
    "color": "rgba({},{},{},150)".format(*_TEXT),
    "selection-background-color": "rgba({},{},{},100)".format(*_TEXT),
})
_CHECK_BOX_CSS = _css("QCheckBox", {"color": "rgba({},{},{},150)".format(*_TEXT)})


class _LineEdit(_Boxed, NodeLineEdit):
    """NodeGraphQt's text field (as :class:`NodeLineEdit` builds it), in a :class:`_LabelBox`."""

    def __init__(self, parent: Any = None, name: str = "", label: str = "", text: str = ""):
        NodeBaseWidget.__init__(self, parent, name, label)
        edit = QtWidgets.QLineEdit()
        edit.setText(text)
        edit.setAlignment(QtCore.Qt.AlignmentFlag.AlignCenter)
        edit.editingFinished.connect(self.on_value_changed)
        self.set_custom_widget(edit, _LINE_EDIT_CSS)
        self.widget().setMaximumWidth(140)


class _ComboBox(_Boxed, NodeComboBox):
    """NodeGraphQt's combo box, in a :class:`_LabelBox`."""


class _CheckBox(_Boxed, NodeCheckBox):
    """NodeGraphQt's check box (as :class:`NodeCheckBox` builds it), in a :class:`_LabelBox`."""

    def __init__(self, parent: Any = None, name: str = "", label: str = "", state: bool = False):
        NodeBaseWidget.__init__(self, parent, name, label)
        check = QtWidgets.QCheckBox("")
        check.setChecked(state)
        check.setMinimumWidth(80)
        font = check.font()
        font.setPointSize(11)
        check.setFont(font)
        check.stateChanged.connect(self.on_value_changed)
        self.set_custom_widget(check, _CHECK_BOX_CSS)
        self.widget().setMaximumWidth(140)


#: A node is drawn as a plain box below NodeGraphQt's 70 screen pixels wide, or, for a narrow node, only below this
#: zoom: a framed starter graph shows VAE Decode under 70 pixels but still readable.
PROXY_MAX_PX, PROXY_ZOOM = 70, 0.3


class _NodeItem(NodeItem):
    """The node item of generated nodes: it lays itself out only once it is in a scene.

    NodeGraphQt lays a node out again after each widget it adds and at each property it copies from the model, all
    before the node is in the scene, where ``post_init`` lays it out anyway; those layouts are thrown away. While
    the scene holds layouts back (``scene.held_layouts``, a batch of nodes being added) the node only asks for one.
    """

    _placed = False

    def draw_node(self) -> None:
        """Lay the node out (size, label, ports, widgets), once it has been added to a scene."""
        if not self._placed:
            return
        held = getattr(self.scene(), "held_layouts", None)
        if held is not None:
            held[self] = True
            return
        align = self._title_align()
        for widget in self._widgets.values():
            if isinstance(widget, _Boxed):
                widget.widget().setTitleAlign(align)  # styled as NodeGraphQt will, before its size is taken
                widget.reserve()
        super().draw_node()
        self._proxy_mode_threshold = min(PROXY_MAX_PX, PROXY_ZOOM * self._width)

    def _title_align(self) -> str:
        # How NodeGraphQt's _align_widgets_* place widget titles.
        if self.layout_direction is LayoutDirectionEnum.VERTICAL.value:
            return "center"
        if not any(port.isVisible() for port in self.inputs):
            return "left"
        if not any(port.isVisible() for port in self.outputs):
            return "right"
        return "center"

    def post_init(self, viewer: Any = None, pos: Any = None) -> None:
        """Called by NodeGraphQt when the node has been added to the scene: lay it out from now on."""
        self._placed = True
        super().post_init(viewer, pos)


class NodeTextEdit(_Boxed, NodeBaseWidget):
    """A multi-line text box in a node (prompts); its value is committed when it loses focus."""

    def __init__(self, parent: Any = None, name: str = "", label: str = "", text: str = ""):
        super().__init__(parent, name, label)
        edit = _CommitTextEdit(self.on_value_changed)
        edit.setPlainText(text)
        edit.setFixedSize(220, 70)
        self.set_custom_widget(edit)

    @property
    def type_(self) -> str:
        """The widget kind NodeGraphQt records."""
        return "TextEditNodeWidget"

    def get_value(self) -> str:
        """The text."""
        return self.get_custom_widget().toPlainText()

    def set_value(self, text: str = "") -> None:
        """Replace the text."""
        if text != self.get_value():
            self.get_custom_widget().setPlainText(text)
            self.on_value_changed()


class _CommitTextEdit(QtWidgets.QPlainTextEdit):
    def __init__(self, commit: Any):
        super().__init__()
        self._commit = commit

    def focusOutEvent(self, event: Any) -> None:  # noqa: N802 (Qt override)
        super().focusOutEvent(event)
        self._commit()


def to_widget(spec: InputSpec, value: Any) -> Any:
    """A literal value as its widget shows it (text for numbers, a label for a choice)."""
    if value is None:
        value = spec.default
    if spec.type in (PortType.INT, PortType.FLOAT):
        return "" if value is None else str(value)
    if spec.type == PortType.CHOICE:
        return dict(spec.labels).get(value, value) if value is not None else ""
    if spec.type == PortType.BOOLEAN:
        return bool(value)
    return "" if value is None else str(value)


def from_widget(spec: InputSpec, shown: Any) -> tuple[bool, Any]:
    """A widget's value as a literal: (True, value), or (False, None) when the text is not a valid value."""
    try:
        if spec.type == PortType.INT:
            return True, int(str(shown).strip())
        if spec.type == PortType.FLOAT:
            return True, float(str(shown).strip())
    except ValueError:
        return False, None
    if spec.type == PortType.CHOICE:
        by_label = {label: value for value, label in spec.labels}
        return True, by_label.get(shown, shown)
    if spec.type == PortType.BOOLEAN:
        return True, bool(shown)
    return True, str(shown)


def _attach(node: BaseNode, widget: NodeBaseWidget, tooltip: str | None) -> None:
    # What BaseNode.add_text_input / add_combo_menu / add_checkbox do after creating the property, with our widget
    # classes (embedded when first shown) and without the redraw: the node is not in a scene yet.
    widget.setToolTip(tooltip or "")
    widget.value_changed.connect(lambda k, v: node.set_property(k, v))
    node.view.add_widget(widget)


def _add_widget(node: BaseNode, spec: InputSpec) -> None:
    prop, shown, tooltip = PROP_PREFIX + spec.name, to_widget(spec, None), spec.tooltip or None
    if spec.type == PortType.BOOLEAN:
        node.create_property(prop, value=shown, widget_type=NodePropWidgetEnum.QCHECK_BOX.value,
                             widget_tooltip=tooltip)
        _attach(node, _CheckBox(node.view, prop, spec.name, shown), tooltip)
    elif spec.type == PortType.CHOICE:
        labels = dict(spec.labels)
        items = [labels.get(c, c) for c in spec.choices]
        node.create_property(prop, value=items[0] if items else None, items=items,
                             widget_type=NodePropWidgetEnum.QCOMBO_BOX.value, widget_tooltip=tooltip)
        _attach(node, _ComboBox(node.view, prop, spec.name, items), tooltip)
    elif spec.multiline:
        node.add_custom_widget(NodeTextEdit(node.view, prop, spec.name, shown))
    else:
        node.create_property(prop, value=shown, widget_type=NodePropWidgetEnum.QLINE_EDIT.value,
                             widget_tooltip=tooltip)
        _attach(node, _LineEdit(node.view, prop, spec.name, shown), tooltip)


def make_node_class(node_def: NodeDef) -> type[BaseNode]:
    """Generate the NodeGraphQt node class of one node type: its ports and widgets come from the schema."""

    def __init__(self: BaseNode) -> None:
        BaseNode.__init__(self, _NodeItem)
        for spec in node_def.inputs:
            if has_widget(spec):
                _add_widget(self, spec)
            else:
                self.add_input(spec.name, color=port_color(spec.type))
        for out in node_def.outputs:
            self.add_output(out.name, color=port_color(out.type))

    return type(class_name(node_def.type), (BaseNode,), {
        "__identifier__": IDENTIFIER,
        "NODE_NAME": node_def.display_name or node_def.type,
        "__init__": __init__,
        "node_def": node_def,
    })


def register_node_classes(graph: Any, registry: NodeRegistry) -> None:
    """Register one generated class per node type of `registry` with a NodeGraphQt graph."""
    graph.register_nodes([make_node_class(node_def) for node_def in registry])
