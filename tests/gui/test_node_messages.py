"""What nodes report during a run (``NodeMessage``) shows on the node it is about and in the problems dock: warnings
amber, info grey, in the node's tooltip, gone when the next run starts; events from the executor thread included."""

from __future__ import annotations

import pytest

from nodegraph.engine.context import RunSettings
from nodegraph.engine.events import NodeFinished, NodeMessage, NodeStarted
from nodegraph.gui.main_window import MainWindow
from nodegraph.gui.node_messages import LEVEL_COLOURS, shown_lines
from nodegraph.packs import create_registry

#: A test-only node that passes its value on and reports a message about itself or another node.
REPORT_PACK = (
    "from nodegraph.core import Input, Output, PortType, node\n"
    "@node(type='Report', display_name='Report', category='test', description='Pass a value on, saying something.',\n"
    "      inputs=[Input.link('value', PortType.INT), Input.string('about', ''), Input.string('text', 'hello'),\n"
    "              Input.choice('level', ['info', 'warning'])],\n"
    "      outputs=[Output('VALUE', PortType.INT)])\n"
    "def report(ctx, value, about, text, level):\n"
    "    ctx.report(text, level=level, node_id=about or None)\n"
    "    return {'VALUE': value}\n")

LORA_INFO = "style.safetensors: 192/192 layers matched"
LORA_WARNING = "half.safetensors: 96/192 layers matched; it may be for another model line"


@pytest.fixture
def window(qtbot, fake_pack, tmp_path):
    pack = tmp_path / "report_pack.py"
    pack.write_text(REPORT_PACK, encoding="utf-8")
    registry = create_registry([fake_pack, pack], user_packs=False)
    assert not registry.problems, registry.problems
    win = MainWindow(registry, settings=RunSettings(output_dir=tmp_path / "out"))
    qtbot.addWidget(win)
    return win


def chain(win):
    """number -> scale -> collect, as a sampler applying an upstream node's add-on would be wired."""
    adapter = win.adapter
    adapter.add_node("Number", (0, 0), node_id="number", inputs={"value": 3})
    adapter.add_node("Scale", (250, 0), node_id="scale", inputs={"factor": 2})
    adapter.add_node("Collect", (500, 0), node_id="collect", inputs={})
    assert adapter.connect("number", "VALUE", "scale", "value")
    assert adapter.connect("scale", "VALUE", "collect", "value")


def test_messages_about_another_node_show_on_it_and_in_the_problems_dock(qtbot, window):
    chain(window)
    feedback, nodes = window.feedback, window.feedback.nodes
    window.show()
    feedback.run_started()
    feedback.on_event(NodeFinished("r", node_id="number", node_type="Number", seconds=0.01))
    feedback.on_event(NodeStarted("r", node_id="scale", node_type="Scale"))  # the running node reports …
    feedback.on_event(NodeMessage("r", node_id="number", level="info", text=LORA_INFO))  # … about another one
    feedback.on_event(NodeMessage("r", node_id="number", level="warning", text=LORA_WARNING))
    feedback.on_event(NodeMessage("r", node_id="number", level="warning", text=LORA_WARNING))  # a second sampler

    assert nodes.messages == {"number": [("info", LORA_INFO), ("warning", LORA_WARNING)]}
    lines = nodes.message_lines("number")
    assert len(lines) == 2 and lines[0].startswith("\u26a0 half.safetensors") and lines[1] == f"\u2139 {LORA_INFO}"
    assert nodes.message_lines("scale") == []
    view = window.adapter.view_node("number").view
    tip = view.toolTip()
    assert "finished in" in tip and LORA_INFO in tip and LORA_WARNING in tip and LEVEL_COLOURS["warning"] in tip
    [item] = [child for child in view.childItems() if hasattr(child, "texts")]
    assert item.isVisible() and item.pos().y() >= view.boundingRect().bottom()  # under the node
    assert item.toolTip().count("<span") == 2

    assert feedback.problems.messages() == [f"info: node 'number' (Number): {LORA_INFO}",
                                            f"warning: node 'number' (Number): {LORA_WARNING}"]
    info, warning = feedback.problems.item(0), feedback.problems.item(1)
    assert info.foreground().color().name() == LEVEL_COLOURS["info"]
    assert warning.foreground().color().name() == LEVEL_COLOURS["warning"]
    assert feedback.problems_dock.isVisible() and feedback.warnings == 1
    window.adapter.view_node("collect").set_selected(True)
    feedback.problems._on_clicked(warning)
    assert [n.id for n in window.adapter.graph.selected_nodes()] == [window.adapter.view_node("number").id]

    feedback.run_started()  # the next run: the messages go with the states
    assert nodes.messages == {} and nodes.message_lines("number") == [] and feedback.problems.count() == 0
    assert item.scene() is None and not any(hasattr(c, "texts") for c in view.childItems())
    assert LORA_INFO not in view.toolTip() and feedback.warnings == 0


def test_a_message_before_any_state_and_many_messages(qtbot, window):
    chain(window)
    nodes = window.feedback.nodes
    for index in range(5):
        window.feedback.on_event(NodeMessage("r", node_id="collect", level="info", text=f"note {index}"))
    window.feedback.on_event(NodeMessage("r", node_id="collect", level="warning", text="careful"))
    assert nodes.message_lines("collect") == ["\u26a0 careful", "\u2139 note 0", "+4 more (hover for all)"]
    assert "note 4" in window.adapter.view_node("collect").view.toolTip()
    window.feedback.on_event(NodeMessage("r", node_id="deleted", level="warning", text="gone"))  # not on the canvas
    assert window.feedback.problems.messages()[-1] == "warning: node 'deleted': gone"
    assert shown_lines([("info", "a\nb")]) == [("info", "\u2139 a b")]


def test_a_real_run_marshals_messages_from_the_executor_thread(qtbot, window):
    adapter = window.adapter
    adapter.add_node("Number", (0, 0), node_id="number", inputs={"value": 3})
    adapter.add_node("Report", (250, 0), node_id="report",
                     inputs={"about": "number", "text": LORA_WARNING, "level": "warning"})
    adapter.add_node("Collect", (500, 0), node_id="collect", inputs={})
    assert adapter.connect("number", "VALUE", "report", "value")
    assert adapter.connect("report", "VALUE", "collect", "value")
    window.run_workflow()
    qtbot.waitUntil(lambda: window.worker is None and window.run_state == "finished", timeout=15000)
    nodes = window.feedback.nodes
    assert nodes.messages == {"number": [("warning", LORA_WARNING)]}
    assert nodes.message_lines("number")[0].startswith("\u26a0 half.safetensors")
    assert nodes.states["number"] == "finished" and nodes.states["report"] == "finished"
    assert window.feedback.problems.messages() == [f"warning: node 'number' (Number): {LORA_WARNING}"]
    assert window.state_label.text().endswith(" · 1 warning, see Problems")
    adapter.set_value("report", "text", "all fine")
    adapter.set_value("report", "level", "info")
    window.run_workflow()  # cleared at the start; the re-run node reports afresh, once
    qtbot.waitUntil(lambda: window.worker is None and window.run_state == "finished", timeout=15000)
    assert nodes.messages == {"number": [("info", "all fine")]}
    assert window.state_label.text().startswith("Finished in") and "warning" not in window.state_label.text()
