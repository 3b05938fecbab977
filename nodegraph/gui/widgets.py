"""Node classes generated from node schemas: one NodeGraphQt class per :class:`NodeDef`, ports coloured by type,
literal inputs shown as widgets on the node."""

from __future__ import annotations

import hashlib
import re
from typing import Any

from NodeGraphQt import BaseNode
from NodeGraphQt.widgets.node_widgets import NodeBaseWidget
from PySide6 import QtWidgets

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


class NodeTextEdit(NodeBaseWidget):
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


def _add_widget(node: BaseNode, spec: InputSpec) -> None:
    prop, shown = PROP_PREFIX + spec.name, to_widget(spec, None)
    if spec.type == PortType.BOOLEAN:
        node.add_checkbox(prop, label=spec.name, text="", state=shown, tooltip=spec.tooltip or None)
    elif spec.type == PortType.CHOICE:
        labels = dict(spec.labels)
        node.add_combo_menu(prop, label=spec.name, items=[labels.get(c, c) for c in spec.choices],
                            tooltip=spec.tooltip or None)
    elif spec.multiline:
        node.add_custom_widget(NodeTextEdit(node.view, prop, spec.name, shown))
    else:
        node.add_text_input(prop, label=spec.name, text=shown, tooltip=spec.tooltip or None)


def make_node_class(node_def: NodeDef) -> type[BaseNode]:
    """Generate the NodeGraphQt node class of one node type: its ports and widgets come from the schema."""

    def __init__(self: BaseNode) -> None:
        BaseNode.__init__(self)
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
