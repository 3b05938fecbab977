"""Run feedback: node states on the canvas, the problems list, the progress bar, the image panel, UI responsiveness."""

import time

import numpy as np
import pytest
from PIL import Image

from nodegraph.engine.context import RunSettings
from nodegraph.engine.events import NodeFinished, Progress
from nodegraph.gui.main_window import MainWindow
from nodegraph.packs import create_registry


@pytest.fixture
def window(qtbot, fake_pack, tmp_path):
    win = MainWindow(create_registry([fake_pack], user_packs=False), settings=RunSettings(output_dir=tmp_path / "out"))
    qtbot.addWidget(win)
    return win


def chain(win, *middle, value=3):
    """Number -> middle nodes (type, inputs) -> Collect; returns the node ids in order."""
    adapter = win.adapter
    ids = [adapter.add_node("Number", (0, 0), node_id="number", inputs={"value": value})]
    for index, (type_id, inputs) in enumerate(middle, 1):
        ids.append(adapter.add_node(type_id, (200 * index, 0), node_id=type_id.lower(), inputs=inputs))
    ids.append(adapter.add_node("Collect", (200 * (len(middle) + 1), 0), node_id="collect", inputs={}))
    for src, dst in zip(ids, ids[1:], strict=False):
        assert adapter.connect(src, "VALUE", dst, "value")
    return ids


def run(qtbot, win, final="finished"):
    win.run_workflow()
    qtbot.waitUntil(lambda: win.worker is None and win.run_state == final, timeout=15000)


def test_a_run_marks_nodes_finished_and_a_rerun_marks_them_cached(qtbot, window):
    ids = chain(window, ("Scale", {"factor": 4}))
    edits = window.adapter.undo_stack.count()
    run(qtbot, window)
    states = window.feedback.nodes
    assert {n: states.states[n] for n in ids} == dict.fromkeys(ids, "finished")
    assert states.badge_text("scale").endswith(" s")
    assert "finished in" in window.adapter.view_node("scale").view.toolTip()
    assert window.adapter.view_node("scale").view.border_color == (90, 200, 110, 255)
    run(qtbot, window)
    assert {n: states.states[n] for n in ids} == dict.fromkeys(ids, "cached")
    assert window.feedback.problems.count() == 0
    window.adapter.set_value("scale", "factor", 5)  # states reset at the next run: only what changed runs again
    run(qtbot, window)
    assert states.states == {"number": "cached", "scale": "finished", "collect": "finished"}
    assert window.adapter.undo_stack.count() == edits + 1  # state colours never touch the undo stack


def test_a_failing_node_turns_red_with_its_message_and_its_problem_selects_it(qtbot, window):
    chain(window, ("Fail", {"how": "user"}))
    run(qtbot, window, final="failed")
    feedback = window.feedback
    assert feedback.nodes.states["fail"] == "failed"
    view = window.adapter.view_node("fail")
    assert view.view.color == (150, 35, 35, 255)
    assert "the value 3 is not acceptable" in view.view.toolTip()
    messages = feedback.problems.messages()
    assert len(messages) == 1 and "the value 3 is not acceptable" in messages[0]
    window.adapter.view_node("number").set_selected(True)
    feedback.problems._on_clicked(feedback.problems.item(0))
    assert [n.id for n in window.adapter.graph.selected_nodes()] == [view.id]


def test_a_validation_problem_is_listed_and_the_run_does_not_start(qtbot, window):
    chain(window, ("Scale", {"factor": 4}), value=5000)
    window.run_workflow()
    assert window.worker is None and window.run_state == "invalid"
    messages = window.feedback.problems.messages()
    assert messages and any("number" in m for m in messages)
    item = window.feedback.problems.item(0)
    assert item.data(0x0100) == "number"
    window.feedback.problems._on_clicked(item)
    assert [n.id for n in window.adapter.graph.selected_nodes()] == [window.adapter.view_node("number").id]
    assert window.feedback.nodes.states == {}


def test_the_progress_bar_reaches_the_total_and_the_ui_thread_stays_responsive(qtbot, window, capsys):
    from PySide6 import QtCore

    chain(window, ("Slow", {"steps": 50, "delay": 0.02}))
    ticks: list[float] = []
    timer = QtCore.QTimer()
    timer.setInterval(5)
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    formats: list[str] = []
    window.feedback.progress.valueChanged.connect(lambda _v: formats.append(window.feedback.progress.format()))
    timer.start()
    run(qtbot, window)
    timer.stop()
    bar = window.feedback.progress
    assert bar.isVisibleTo(window) and bar.maximum() == 50 and bar.value() == 50
    assert bar.format().startswith("slow 50/50")
    assert any("ETA" in text for text in formats)
    gaps = [b - a for a, b in zip(ticks, ticks[1:], strict=False)]
    stall_ms = max(gaps) * 1000
    with capsys.disabled():
        print(f"\n[ui stall] longest event-loop gap during a 50-step Slow run: {stall_ms:.1f} ms "
              f"over {len(ticks)} ticks")
    assert len(ticks) > 20
    assert stall_ms < 1000


def test_the_image_panel_shows_previews_outputs_and_history(qtbot, window, tmp_path):
    feedback = window.feedback
    panel = feedback.image_panel
    preview = np.zeros((32, 48, 3), dtype=np.uint8)
    preview[..., 0] = 255
    feedback.on_event(Progress("r", node_id="sample", step=3, total=10, preview=preview))
    assert panel.current == "preview"
    assert (panel.pixmap().width(), panel.pixmap().height()) == (48, 32)
    assert panel.pixmap().toImage().pixelColor(5, 5).red() == 255
    first, second = tmp_path / "a.png", tmp_path / "b.png"
    Image.new("RGB", (20, 10), (0, 0, 255)).save(first)
    Image.new("RGB", (16, 16), (0, 255, 0)).save(second)
    feedback.on_event(NodeFinished("r", node_id="save", seconds=0.1, files=(str(tmp_path / "x.txt"), str(first))))
    feedback.on_event(NodeFinished("r", node_id="save", seconds=0.1, files=(str(second),)))
    assert panel.current == str(second) and panel.pixmap().width() == 16
    assert panel.history_paths() == [str(second), str(first)]
    panel.history.itemClicked.emit(panel.history.item(1))
    assert panel.current == str(first) and panel.pixmap().width() == 20
    panel.resize(400, 300)
    window.show()
    assert not panel.image.pixmap().isNull()


def test_a_run_writing_files_adds_nothing_for_text_files(qtbot, window):
    window.adapter.add_node("Number", (0, 0), node_id="number", inputs={"value": 7})
    window.adapter.add_node("WriteText", (200, 0), node_id="write", inputs={"filename_prefix": "out"})
    assert window.adapter.connect("number", "VALUE", "write", "value")
    run(qtbot, window)
    assert window.feedback.nodes.states["write"] == "finished"
    assert window.feedback.image_panel.history_paths() == []
