"""The node palette, the canvas quick search, the properties panel and the seed control."""

import random
from types import SimpleNamespace

from PySide6 import QtCore, QtWidgets

from nodegraph.gui.properties import apply_seed_controls, next_seed


def test_palette_search_filters_by_name_type_and_description(window):
    palette = window.palette
    everything = palette.visible_types()
    assert "UNetSampler" in everything and "Number" in everything
    palette.search_box.setText("multiply an integer")  # Scale's description
    assert palette.visible_types() == ["Scale"]
    palette.search_box.setText("unetsampler")
    assert palette.visible_types() == ["UNetSampler", "UNetSamplerAdvanced"]
    palette.search_box.setText("")
    assert palette.visible_types() == everything


def test_adding_from_the_palette_is_undoable(window):
    palette = window.palette
    palette.search_box.setText("Number")
    item = next(i for i in palette.type_items() if i.data(0, QtCore.Qt.ItemDataRole.UserRole) == "Number")
    palette.tree.itemActivated.emit(item, 0)  # what a double-click or Enter does
    nodes = list(window.adapter.workflow)
    assert [n.type for n in nodes] == ["Number"]
    window.adapter.undo()
    assert len(window.adapter.workflow) == 0
    palette.search_box.returnPressed.emit()  # Enter in the search box adds the first match
    assert [n.type for n in window.adapter.workflow] == ["Number"]


def test_quick_search_adds_the_chosen_type_at_the_position(window, qtbot):
    quick = window.quick_search
    quick.popup(QtCore.QPoint(10, 10), QtCore.QPointF(120, 80))
    qtbot.keyClicks(quick.edit, "scale")
    assert quick.listed_types()[0] == "Scale"
    qtbot.keyClick(quick.edit, QtCore.Qt.Key.Key_Return)
    (node,) = list(window.adapter.workflow)
    assert node.type == "Scale" and node.ui["pos"] == [120, 80]
    assert not quick.isVisible()


def test_tab_on_the_canvas_opens_the_quick_search(window, qtbot):
    window.show()
    viewer = window.adapter.graph.viewer()
    qtbot.keyClick(viewer, QtCore.Qt.Key.Key_Tab)
    assert window.quick_search.isVisible()
    window.quick_search.hide()


def test_properties_form_follows_the_sampler_spec(window):
    adapter = window.adapter
    adapter.add_node("UNetSampler", (0, 0), node_id="sample")
    window.properties.show_node("sample")
    editors = window.properties.editors
    assert set(editors) == {"seed", "steps", "cfg", "sampler_name", "scheduler", "denoise"}
    steps = editors["steps"]
    assert isinstance(steps, QtWidgets.QSpinBox)
    assert (steps.minimum(), steps.maximum(), steps.value()) == (1, 10000, 20)
    cfg = editors["cfg"]
    assert isinstance(cfg, QtWidgets.QDoubleSpinBox)
    assert (cfg.minimum(), cfg.maximum(), cfg.singleStep(), cfg.value()) == (0.0, 100.0, 0.1, 7.0)
    assert editors["denoise"].decimals() == 2
    seed = editors["seed"]
    assert isinstance(seed, QtWidgets.QLineEdit)  # 64-bit: beyond a QSpinBox
    assert seed.text() == "0"
    sampler = editors["sampler_name"]
    assert isinstance(sampler, QtWidgets.QComboBox)
    assert sampler.currentText() == "Euler" and sampler.currentData() == "euler"
    assert sampler.itemText(sampler.findData("dpmpp_2m")) == "DPM++ 2M"
    assert window.properties.seed_controls["seed"].currentText() == "fixed"


def test_prompt_gets_a_multiline_editor(window):
    window.adapter.add_node("CLIPTextEncode", (0, 0), node_id="pos")
    window.properties.show_node("pos")
    assert any(isinstance(e, QtWidgets.QPlainTextEdit) for e in window.properties.editors.values())


def test_editing_in_the_form_changes_the_core_graph_undoably(window):
    adapter = window.adapter
    adapter.add_node("UNetSampler", (0, 0), node_id="sample")
    adapter.view_node("sample").view.setSelected(True)  # selecting builds the form
    assert window.properties.node_id == "sample"
    editors = window.properties.editors
    editors["steps"].setValue(35)
    assert adapter.workflow.node("sample").inputs["steps"] == 35
    assert adapter.view_node("sample").get_property("in_steps") == "35"  # the canvas widget follows
    editors["sampler_name"].setCurrentIndex(editors["sampler_name"].findData("dpmpp_2m"))
    editors["sampler_name"].activated.emit(editors["sampler_name"].currentIndex())
    assert adapter.workflow.node("sample").inputs["sampler_name"] == "dpmpp_2m"
    editors["seed"].setText("12345678901234")
    editors["seed"].editingFinished.emit()
    assert adapter.workflow.node("sample").inputs["seed"] == 12345678901234
    adapter.undo()
    adapter.undo()
    adapter.undo()
    assert adapter.workflow.node("sample").inputs["steps"] == 20
    assert editors["steps"].value() == 20  # the form follows undo
    adapter.set_value("sample", "steps", 50)  # an edit elsewhere shows in the form
    assert editors["steps"].value() == 50


def test_selecting_another_node_rebuilds_the_form(window):
    adapter = window.adapter
    adapter.add_node("UNetSampler", (0, 0), node_id="sample")
    adapter.add_node("Number", (300, 0), node_id="number")
    adapter.view_node("sample").view.setSelected(True)
    assert "steps" in window.properties.editors
    adapter.graph.viewer().scene().clearSelection()
    adapter.view_node("number").view.setSelected(True)
    assert window.properties.node_id == "number"
    assert list(window.properties.editors) == ["value"]
    adapter.undo()  # removes the number node: the form empties
    assert window.properties.node_id is None and not window.properties.editors


def test_file_inputs_list_model_files(window, nodegraph_home):
    folder = nodegraph_home / "models" / "checkpoints"
    folder.mkdir(parents=True)
    (folder / "x.safetensors").write_bytes(b"not really a model")
    window.adapter.add_node("LoadCheckpoint", (0, 0), node_id="ckpt")
    window.properties.show_node("ckpt")
    combo = window.properties.editors["ckpt_name"]
    assert isinstance(combo, QtWidgets.QComboBox) and combo.isEditable()
    assert [combo.itemText(i) for i in range(combo.count())] == ["x.safetensors"]
    combo.setCurrentIndex(0)
    combo.activated.emit(0)
    assert window.adapter.workflow.node("ckpt").inputs["ckpt_name"] == "x.safetensors"


def test_next_seed_modes():
    spec = SimpleNamespace(min=0, max=2 ** 64 - 1)
    assert next_seed("fixed", 5, spec) == 5
    assert next_seed("increment", 5, spec) == 6
    assert next_seed("increment", 2 ** 64 - 1, spec) == 0
    value = next_seed("randomize", 5, spec, random.Random(1))
    assert 0 <= value < 2 ** 32


def test_seed_control_applies_after_a_finished_run(window, qtbot):
    adapter = window.adapter
    adapter.add_node("UNetSampler", (0, 0), node_id="sample", inputs={"seed": 7})
    adapter.add_node("UNetSampler", (0, 300), node_id="other", inputs={"seed": 7})
    window.properties.show_node("sample")
    window.properties.seed_controls["seed"].setCurrentText("increment")
    assert adapter.workflow.node("sample").ui["seed_control"] == "increment"
    adapter.workflow.node("other").ui["seed_control"] = "randomize"
    window._on_done(SimpleNamespace(status="finished", total_seconds=0.1, outputs={}, failed_node=None,
                                    message="", problems=[]))
    assert adapter.workflow.node("sample").inputs["seed"] == 8
    assert window.properties.editors["seed"].text() == "8"
    other = adapter.workflow.node("other").inputs["seed"]
    assert 0 <= other < 2 ** 32
    adapter.undo()  # seed changes are ordinary undoable edits
    adapter.undo()
    assert adapter.workflow.node("sample").inputs["seed"] == 7
    assert apply_seed_controls(adapter, random.Random(0))  # unit level: the same rules
