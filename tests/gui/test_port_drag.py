"""A link dragged from a port and dropped on empty canvas opens the quick search filtered to the node types that can
take it; choosing one adds it there, linked, as one undoable edit."""

from PySide6 import QtCore, QtWidgets

from nodegraph.core.graph import Link
from nodegraph.gui.palette import PortEnd, link_port


def _port_end(window, node_id, port, output):
    view = window.adapter.view_node(node_id)
    item = (view.outputs() if output else view.inputs())[port].view
    return window.quick_search.link_trigger.port_end(item)


def test_link_port_picks_a_compatible_port(registry):
    model_out = PortEnd("ckpt", "MODEL", True, "MODEL")
    assert link_port(registry["LoadLoRA"], model_out) == "model"
    assert link_port(registry["UNetSampler"], model_out) == "model"
    assert link_port(registry["VAEDecode"], model_out) is None
    assert link_port(registry["WriteText"], model_out) == "value"  # an ANY input takes anything
    latent_in = PortEnd("decode", "samples", False, "LATENT")
    assert link_port(registry["UNetSampler"], latent_in) == "LATENT"
    assert link_port(registry["LoadCheckpoint"], latent_in) is None
    # inputs shown as widgets on the node have no port to link to
    assert link_port(registry["UNetSampler"], PortEnd("n", "VALUE", True, "INT")) is None


def test_dragging_from_a_model_output_lists_only_nodes_taking_a_model(window, qtbot):
    window.adapter.add_node("LoadCheckpoint", (0, 0), node_id="ckpt")
    end = _port_end(window, "ckpt", "MODEL", True)
    assert end == PortEnd("ckpt", "MODEL", True, "MODEL")
    quick = window.quick_search
    quick.link_trigger.open_at(end, QtCore.QPointF(400, 60))
    listed = quick.listed_types()
    assert {"UNetSampler", "LoadLoRA", "LoadHypernetwork"} <= set(listed)
    assert not {"VAEDecode", "CLIPTextEncode", "LoadCheckpoint", "Number"} & set(listed)
    assert "MODEL" in quick.edit.placeholderText()
    qtbot.keyClicks(quick.edit, "lora")
    assert quick.listed_types() == ["LoadLoRA", "LoadLoRAModelOnly"]
    quick.hide()
    quick.popup(QtCore.QPoint(0, 0), QtCore.QPointF(0, 0))  # Tab search afterwards lists everything again
    assert "VAEDecode" in quick.listed_types() and quick.port is None
    quick.hide()


def test_choosing_a_node_adds_and_links_it_in_one_undo_step(window, qtbot):
    adapter = window.adapter
    adapter.add_node("LoadCheckpoint", (0, 0), node_id="ckpt")
    before = adapter.to_workflow()
    quick = window.quick_search
    quick.link_trigger.open_at(_port_end(window, "ckpt", "MODEL", True), QtCore.QPointF(400, 60))
    qtbot.keyClicks(quick.edit, "unet sampler")
    qtbot.keyClick(quick.edit, QtCore.Qt.Key.Key_Return)
    assert not quick.isVisible()
    (new_id,) = [n for n in adapter.workflow.nodes if n != "ckpt"]
    assert adapter.workflow.node(new_id).type == "UNetSampler"
    assert adapter.workflow.links == [Link("ckpt", "MODEL", new_id, "model")]
    model_port = adapter.view_node(new_id).inputs()["model"].view.sceneBoundingRect().center()
    assert abs(model_port.x() - 400) < 1 and abs(model_port.y() - 60) < 1  # the linked port lands at the drop
    x, y = adapter.view_node(new_id).view.xy_pos
    assert adapter.workflow.node(new_id).ui["pos"] == [round(x, 2), round(y, 2)]
    after = adapter.to_workflow()
    adapter.undo()  # one step removes the node and its link
    assert adapter.to_workflow() == before
    adapter.redo()
    assert adapter.to_workflow() == after


def test_dragging_from_an_input_adds_a_node_feeding_it(window, qtbot):
    adapter = window.adapter
    adapter.add_node("UNetSampler", (400, 0), node_id="sample")
    quick = window.quick_search
    quick.link_trigger.open_at(_port_end(window, "sample", "positive", False), QtCore.QPointF(100, 80))
    listed = quick.listed_types()
    assert "CLIPTextEncode" in listed and "LoadCheckpoint" not in listed and "EmptyLatentImage" not in listed
    qtbot.keyClicks(quick.edit, "clip text")
    qtbot.keyClick(quick.edit, QtCore.Qt.Key.Key_Return)
    (new_id,) = [n for n in adapter.workflow.nodes if n != "sample"]
    assert adapter.workflow.links == [Link(new_id, "CONDITIONING", "sample", "positive")]
    out = adapter.view_node(new_id).outputs()["CONDITIONING"].view.sceneBoundingRect().center()
    assert abs(out.x() - 100) < 1 and abs(out.y() - 80) < 1
    adapter.undo()
    assert list(adapter.workflow.nodes) == ["sample"] and adapter.workflow.links == []


def _viewport_pos(viewer, scene_pos):
    return viewer.mapFromScene(scene_pos)


def test_releasing_a_real_drag_on_empty_canvas_opens_the_filtered_search(window, qtbot):
    adapter = window.adapter
    adapter.add_node("LoadCheckpoint", (0, 0), node_id="ckpt")
    window.show()
    qtbot.waitExposed(window)
    viewer = adapter.graph.viewer()
    viewer.centerOn(0, 0)
    start = _viewport_pos(viewer, adapter.view_node("ckpt").outputs()["MODEL"].view.sceneBoundingRect().center())
    drop = start + QtCore.QPoint(150, 120)
    assert viewer.itemAt(drop) is None  # empty canvas
    viewport = viewer.viewport()
    qtbot.mousePress(viewport, QtCore.Qt.MouseButton.LeftButton, pos=start)
    qtbot.mouseMove(viewport, drop)
    qtbot.mouseRelease(viewport, QtCore.Qt.MouseButton.LeftButton, pos=drop)
    QtWidgets.QApplication.processEvents()  # the search opens once NodeGraphQt has finished the release
    quick = window.quick_search
    assert quick.isVisible()
    assert quick.port == PortEnd("ckpt", "MODEL", True, "MODEL")
    dropped = viewer.mapToScene(drop)
    assert abs(quick.scene_pos.x() - dropped.x()) < 1 and abs(quick.scene_pos.y() - dropped.y()) < 1
    assert "VAEDecode" not in quick.listed_types()
    quick.hide()


def test_releasing_a_drag_on_a_port_links_without_a_search(window, qtbot):
    adapter = window.adapter
    adapter.add_node("LoadCheckpoint", (0, 0), node_id="ckpt")
    adapter.add_node("UNetSampler", (350, 0), node_id="sample")
    window.show()
    qtbot.waitExposed(window)
    viewer = adapter.graph.viewer()
    viewer.centerOn(200, 50)
    start = _viewport_pos(viewer, adapter.view_node("ckpt").outputs()["MODEL"].view.sceneBoundingRect().center())
    end = _viewport_pos(viewer, adapter.view_node("sample").inputs()["model"].view.sceneBoundingRect().center())
    viewport = viewer.viewport()
    qtbot.mousePress(viewport, QtCore.Qt.MouseButton.LeftButton, pos=start)
    qtbot.mouseMove(viewport, end)
    qtbot.mouseRelease(viewport, QtCore.Qt.MouseButton.LeftButton, pos=end)
    QtWidgets.QApplication.processEvents()
    assert adapter.workflow.links == [Link("ckpt", "MODEL", "sample", "model")]
    assert not window.quick_search.isVisible()


def test_dragging_a_link_off_an_input_onto_empty_canvas_offers_a_new_source(window, qtbot):
    adapter = window.adapter
    adapter.add_node("LoadCheckpoint", (0, 0), node_id="ckpt")
    adapter.add_node("UNetSampler", (350, 0), node_id="sample")
    adapter.connect("ckpt", "MODEL", "sample", "model")
    window.show()
    qtbot.waitExposed(window)
    viewer = adapter.graph.viewer()
    viewer.centerOn(200, 50)
    start = _viewport_pos(viewer, adapter.view_node("sample").inputs()["model"].view.sceneBoundingRect().center())
    drop = start + QtCore.QPoint(-60, 200)
    assert viewer.itemAt(drop) is None
    viewport = viewer.viewport()
    qtbot.mousePress(viewport, QtCore.Qt.MouseButton.LeftButton, pos=start)
    qtbot.mouseMove(viewport, drop)
    qtbot.mouseRelease(viewport, QtCore.Qt.MouseButton.LeftButton, pos=drop)
    QtWidgets.QApplication.processEvents()
    assert adapter.workflow.links == []  # NodeGraphQt pulled the link off the input
    quick = window.quick_search
    assert quick.isVisible() and quick.port == PortEnd("sample", "model", False, "MODEL")
    assert {"LoadCheckpoint", "LoadLoRA"} <= set(quick.listed_types())
    qtbot.keyClicks(quick.edit, "lora")
    qtbot.keyClick(quick.edit, QtCore.Qt.Key.Key_Return)
    assert adapter.workflow.links == [Link("loadlora", "MODEL", "sample", "model")]
    adapter.undo()  # the new node and its link
    adapter.undo()  # the link pulled off
    assert adapter.workflow.links == [Link("ckpt", "MODEL", "sample", "model")]
    assert sorted(adapter.workflow.nodes) == ["ckpt", "sample"]
