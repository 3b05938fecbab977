"""Edit actions (bypass, mute, copy/paste, duplicate, delete) and Queue ×N with Cancel."""

import pytest

from nodegraph.core.graph import Link
from nodegraph.engine.context import RunSettings
from nodegraph.gui.main_window import MainWindow
from nodegraph.packs import create_registry


@pytest.fixture
def window(qtbot, fake_pack, tmp_path):
    win = MainWindow(create_registry([fake_pack], user_packs=False), settings=RunSettings(output_dir=tmp_path / "out"))
    qtbot.addWidget(win)
    return win


def build(win, slow=None):
    """Number -> Scale (or Slow) -> Collect."""
    adapter = win.adapter
    adapter.add_node("Number", (0, 0), node_id="number", inputs={"value": 3})
    if slow:
        adapter.add_node("Slow", (200, 0), node_id="mid", inputs=slow)
    else:
        adapter.add_node("Scale", (200, 0), node_id="mid", inputs={"factor": 4})
    adapter.add_node("Collect", (400, 0), node_id="collect", inputs={})
    assert adapter.connect("number", "VALUE", "mid", "value")
    assert adapter.connect("mid", "VALUE", "collect", "value")


def select(win, *node_ids):
    win.adapter.graph.scene().clearSelection()
    for node_id in node_ids:
        win.adapter.view_node(node_id).view.selected = True  # a click selects without an undo step


@pytest.mark.parametrize("mode", ["bypass", "mute"])
def test_bypass_and_mute_toggle_the_core_mode_and_undo_restores_it(window, mode):
    build(window)
    select(window, "mid")
    window.edit_actions.toggle_mode(mode)
    assert window.adapter.workflow.node("mid").mode == mode
    view = window.adapter.view_node("mid").view
    if mode == "bypass":
        assert view.opacity() < 1 and tuple(view.color) == (110, 50, 150, 255)
    else:
        assert view.disabled
    window.edit_actions.toggle_mode(mode)  # again: back to normal
    assert window.adapter.workflow.node("mid").mode == "normal"
    window.adapter.undo()
    assert window.adapter.workflow.node("mid").mode == mode
    window.adapter.undo()
    assert window.adapter.workflow.node("mid").mode == "normal"
    assert view.opacity() == 1 and not view.disabled
    window.adapter.redo()
    assert window.adapter.workflow.node("mid").mode == mode


def test_copy_paste_creates_new_nodes_with_internal_links_and_undo_removes_them(window):
    build(window)
    before = window.adapter.workflow.copy()
    select(window, "mid", "collect")
    assert window.edit_actions.copy()
    new = window.edit_actions.paste()
    workflow = window.adapter.workflow
    assert len(new) == 2 and not set(new) & {"number", "mid", "collect"}
    scale, collect = sorted(new, key=lambda n: workflow.node(n).type != "Scale")
    assert workflow.node(scale).type == "Scale" and workflow.node(scale).inputs == {"factor": 4}
    assert workflow.node(scale).ui["pos"] == [240, 40]
    assert Link(scale, "VALUE", collect, "value") in workflow.links
    assert not workflow.links_into(scale)  # the link from the uncopied Number stays behind
    assert sorted(n.id for n in window.adapter.graph.selected_nodes()) == sorted(
        window.adapter.view_node(n).id for n in new)
    window.adapter.undo()
    assert window.adapter.workflow == before
    window.adapter.redo()
    assert Link(scale, "VALUE", collect, "value") in window.adapter.workflow.links


def test_duplicate_keeps_the_mode_and_links(window):
    build(window)
    select(window, "number", "mid")
    window.edit_actions.toggle_mode("bypass")
    new = window.edit_actions.duplicate()
    workflow = window.adapter.workflow
    number, scale = sorted(new, key=lambda n: workflow.node(n).type != "Number")
    assert [workflow.node(n).type for n in (number, scale)] == ["Number", "Scale"]
    assert all(workflow.node(n).mode == "bypass" for n in new)
    assert Link(number, "VALUE", scale, "value") in workflow.links
    assert len(workflow) == 5


def test_delete_and_undo_restores_nodes_and_links(window):
    build(window)
    before = window.adapter.workflow.copy()
    select(window, "mid")
    window.edit_actions.delete()
    assert "mid" not in window.adapter.workflow and window.adapter.workflow.links == []
    window.adapter.undo()
    assert window.adapter.workflow == before
    window.edit_actions.select_all()
    assert len(window.adapter.selected_ids()) == 3
    window.edit_actions.frame_all()
    window.edit_actions.frame_selected()
    window.edit_actions.auto_layout()


def test_queue_runs_snapshots_in_order_and_later_edits_do_not_change_them(qtbot, window):
    build(window, slow={"steps": 5, "delay": 0.02})
    window.run_queue.spin.setValue(3)
    labels = []
    window.run_queue.label.setText = lambda text, orig=window.run_queue.label.setText: (labels.append(text),
                                                                                          orig(text))
    window.run_workflow()
    window.adapter.set_value("number", "value", 9)  # made after queuing: no queued run sees it
    qtbot.waitUntil(lambda: len(window.run_queue.results) == 3 and window.worker is None, timeout=15000)
    results = window.run_queue.results
    assert [r.status for r in results] == ["finished"] * 3
    assert [r.outputs["collect"]["VALUE"] for r in results] == [3, 3, 3]
    assert labels[:3] == ["running 1/3", "running 2/3", "running 3/3"]
    assert window.run_state == "finished"


def test_cancel_stops_the_current_run_and_clears_the_queue(qtbot, window):
    build(window, slow={"steps": 200, "delay": 0.02})
    window.run_queue.spin.setValue(4)
    window.run_workflow()
    qtbot.waitUntil(lambda: window.feedback.progress.value() > 2, timeout=10000)
    window.cancel_run()
    qtbot.waitUntil(lambda: window.worker is None, timeout=10000)
    qtbot.wait(100)
    assert window.worker is None and window.run_queue.pending == []
    assert [r.status for r in window.run_queue.results] == ["cancelled"]
    assert window.run_state == "cancelled"
