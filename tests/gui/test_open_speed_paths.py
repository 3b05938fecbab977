"""The fast paths of opening a big workflow keep the canvas what it was: the same core graph, nodes, links, names,
values and looks; node widgets embedded when first shown; the view framed on the whole graph."""

import pytest
from NodeGraphQt import NodeGraph
from PySide6 import QtCore, QtGui, QtWidgets

from nodegraph.core.graph import Workflow
from nodegraph.gui import widgets
from nodegraph.gui.adapter import GraphAdapter


def big_workflow(pairs: int = 250) -> Workflow:
    """Number -> Scale pairs on a grid, as bench/gui_startup.py opens."""
    workflow = Workflow()
    for index in range(pairs):
        x, y = 400 * (index % 10), 150 * (index // 10)
        workflow.add_node("Number", f"n{index}", inputs={"value": index}, ui={"pos": [x, y]})
        workflow.add_node("Scale", f"s{index}", inputs={"factor": 2} if index % 2 else {}, ui={"pos": [x + 200, y]})
        workflow.connect(f"n{index}", "VALUE", f"s{index}", "value")
    return workflow


@pytest.fixture
def adapter(qtbot, registry):
    return GraphAdapter(registry)


def shown(qtbot, adapter, width=1000, height=700):
    """Show the canvas (its first paint embeds the widgets in sight)."""
    canvas = adapter.graph.widget
    qtbot.addWidget(canvas)
    canvas.resize(width, height)
    canvas.show()
    qtbot.waitExposed(canvas)
    return canvas


def embedded(view_node) -> list[bool]:
    """For each widget of a node: whether its QWidget is in the node (C++'s view, not our override of widget())."""
    return [QtWidgets.QGraphicsProxyWidget.widget(w) is not None for w in view_node.view.widgets.values()]


def pipes(adapter) -> int:
    return sum(len(port.connected_ports()) for node in adapter.graph.all_nodes() for port in node.input_ports())


def test_opening_500_nodes_shows_the_same_graph(adapter):
    workflow = big_workflow()
    adapter.load(workflow.copy())
    assert adapter.to_workflow() == workflow
    assert len(adapter.graph.all_nodes()) == 500 and pipes(adapter) == 250
    for index in (0, 1, 137, 249):
        assert adapter.view_node(f"n{index}").get_property("in_value") == str(index)
        assert adapter.view_node(f"s{index}").get_property("in_factor") == "2"
        assert adapter.view_node(f"s{index}").inputs()["value"].connected_ports()[0].node() \
            is adapter.view_node(f"n{index}")
    # NodeGraphQt's unique names: the first keeps the type's name, the others are numbered from 1
    names = {node.name() for node in adapter.graph.all_nodes()}
    assert names == {"Number", "Scale"} | {f"{kind} {k}" for kind in ("Number", "Scale") for k in range(1, 250)}
    assert adapter.undo_stack.count() == 0


def test_a_second_open_replaces_the_first_and_edits_stay_undoable(adapter):
    adapter.load(big_workflow())
    adapter.load(big_workflow(30))
    assert len(adapter.graph.all_nodes()) == 60 and pipes(adapter) == 30 and adapter.undo_stack.count() == 0
    before = adapter.to_workflow()
    adapter.set_value("n7", "value", 70)  # a widget never shown yet
    adapter.remove_nodes(["s3"])
    assert adapter.to_workflow() != before
    adapter.undo()
    adapter.undo()
    assert adapter.to_workflow() == before
    assert adapter.view_node("n7").get_property("in_value") == "7"


def test_unique_names_are_nodegraphqts(adapter):
    adapter.load(big_workflow(3))
    for name in ("Number", "Number 2", "Scale 1", "  Scale  ", "Fresh", "Fresh 4", "x 1 2"):
        assert adapter.graph.get_unique_name(name) == NodeGraph.get_unique_name(adapter.graph, name), name


def test_widgets_are_embedded_when_first_shown_readable(qtbot, adapter):
    adapter.load(big_workflow(60))
    shown(qtbot, adapter)  # framed: 120 nodes zoomed out, drawn as NodeGraphQt's blank boxes
    assert adapter.graph.viewer().transform().m11() < 0.5
    assert not any(embedded(adapter.view_node("n40")))
    number = adapter.view_node("n40")
    size_before = (number.view.width, number.view.height)
    adapter.graph.viewer().reset_zoom(number.view.sceneBoundingRect().center())  # 100 % on n40
    qtbot.waitUntil(lambda: all(embedded(number)))
    assert (number.view.width, number.view.height) == size_before
    widget = number.view.widgets["in_value"]
    assert widget.get_custom_widget().text() == "40" and widget.get_custom_widget().isVisible()
    far = adapter.view_node("n0")  # out of sight
    assert not any(embedded(far)) and far.get_property("in_value") == "0"


def test_a_deleted_node_brought_back_by_undo_still_gets_its_widgets(qtbot, adapter):
    adapter.load(big_workflow(60))
    shown(qtbot, adapter)
    adapter.remove_nodes(["n40"])
    adapter.undo()
    number = adapter.view_node("n40")
    adapter.graph.viewer().reset_zoom(number.view.sceneBoundingRect().center())
    qtbot.waitUntil(lambda: all(embedded(number)))


def render(scene: QtWidgets.QGraphicsScene, rect: QtCore.QRectF) -> QtGui.QImage:
    image = QtGui.QImage(rect.size().toSize(), QtGui.QImage.Format.Format_ARGB32)
    image.fill(0)
    painter = QtGui.QPainter(image)
    scene.render(painter, QtCore.QRectF(image.rect()), rect)
    painter.end()
    return image


def test_a_widget_embedded_later_looks_and_sizes_like_one_embedded_at_once(qtbot, adapter, monkeypatch):
    monkeypatch.setattr(widgets, "_SIZES", {})  # so the first Choose is embedded as NodeGraphQt does, at once
    workflow = Workflow()
    for node_id, x in (("first", 0), ("later", 600)):
        workflow.add_node("Choose", node_id, inputs={"word": "beta", "weight": 0.25, "shout": True},
                          ui={"pos": [x, 0]})
    adapter.load(workflow)
    first, later = adapter.view_node("first"), adapter.view_node("later")
    assert all(embedded(first)) and not any(embedded(later))
    reserved = {name: w.size() for name, w in later.view.widgets.items()}
    for widget in later.view.widgets.values():
        widget.embed()
    assert all(embedded(later))
    assert {name: w.size() for name, w in later.view.widgets.items()} == reserved
    for name, widget in first.view.widgets.items():
        assert widget.size() == later.view.widgets[name].size(), name
        assert widget.pos().y() == later.view.widgets[name].pos().y(), name
        scene = adapter.graph.scene()
        assert render(scene, widget.sceneBoundingRect()) == render(scene, later.view.widgets[name].sceneBoundingRect())
    assert first.view.height == later.view.height


def test_opening_frames_every_node_without_zooming_in(qtbot, adapter):
    shown(qtbot, adapter)
    adapter.load(big_workflow(60))
    viewer = adapter.graph.viewer()
    sight = viewer.mapToScene(viewer.viewport().rect()).boundingRect()
    assert all(sight.contains(node.view.sceneBoundingRect()) for node in adapter.graph.all_nodes())
    adapter.load(big_workflow(1))  # two nodes: shown at NodeGraphQt's 100 %, not magnified
    sight = viewer.mapToScene(viewer.viewport().rect()).boundingRect()
    assert all(sight.contains(node.view.sceneBoundingRect()) for node in adapter.graph.all_nodes())
    assert viewer.transform().m11() == pytest.approx(1.0, abs=0.02)


def test_a_workflow_opened_before_the_window_shows_is_framed_when_it_does(qtbot, adapter):
    adapter.load(big_workflow(60))
    shown(qtbot, adapter)
    viewer = adapter.graph.viewer()

    def framed() -> bool:
        sight = viewer.mapToScene(viewer.viewport().rect()).boundingRect()
        return all(sight.contains(node.view.sceneBoundingRect()) for node in adapter.graph.all_nodes())

    qtbot.waitUntil(framed)


def test_a_widget_embedded_later_keeps_its_node_muted_and_hidden_states(qtbot, adapter):
    workflow = big_workflow(3)
    workflow.node("n1").mode = "mute"
    adapter.load(workflow)
    muted, other = adapter.view_node("n1"), adapter.view_node("n2")
    other.hide_widget("in_value", push_undo=False)
    assert not any(embedded(muted)) and not any(embedded(other))
    for widget in [*muted.view.widgets.values(), *other.view.widgets.values()]:
        widget.embed()
    assert all(embedded(muted)) and all(embedded(other))
    assert not muted.view.widgets["in_value"].get_custom_widget().isEnabled()
    assert other.view.widgets["in_value"].get_custom_widget().isEnabled()
    assert not other.view.widgets["in_value"].isVisible() and muted.view.widgets["in_value"].isVisible()
