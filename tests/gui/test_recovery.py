"""Crash safety: autosave of unsaved work, restore after a session that did not close cleanly, ask before closing."""

import gc
import json
import os
from pathlib import Path

import pytest
import shiboken6

from nodegraph.core.workflow_io import dumps, load
from nodegraph.engine.context import RunSettings
from nodegraph.gui.main_window import MainWindow
from nodegraph.gui.recovery import pending_recoveries

ROOT = Path(__file__).resolve().parents[2]
STARTER = ROOT / "resources" / "workflows" / "txt2img.json"


def make_window(qtbot, registry, tmp_path, track=True):
    win = MainWindow(registry, settings=RunSettings(output_dir=tmp_path / "out"))
    if track:
        qtbot.addWidget(win)
    return win


def kill(window) -> None:
    """Simulate a crash: the window's C++ side goes away without a close event; its files stay behind."""
    window.adapter.undo_stack.blockSignals(True)  # nothing may call back into the deleted window
    shiboken6.delete(window)
    gc.collect()


def recovery_files(home: Path) -> list[str]:
    folder = home / "recovery"
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


@pytest.fixture(autouse=True)
def never_ask(monkeypatch):
    """A restore question not answered by a test fails it instead of blocking on a dialog."""
    def unexpected(*args):
        raise AssertionError("unexpected restore question")

    monkeypatch.setattr(MainWindow, "ask_restore", unexpected)


def test_autosave_writes_recovery_only_with_unsaved_changes(qtbot, registry, tmp_path, nodegraph_home):
    win = make_window(qtbot, registry, tmp_path)
    assert win.recovery.timer.isActive() and win.recovery.timer.interval() <= 60_000
    assert win.open_file(STARTER)
    assert not win.recovery.autosave()
    assert not any(name.endswith(".workflow.json") for name in recovery_files(nodegraph_home))
    win.adapter.set_value("sample", "steps", 7)
    win.recovery.timer.timeout.emit()  # the timer's slot, as when it fires
    workflow_file, meta_file = win.recovery.workflow_file, win.recovery.meta_file
    assert workflow_file.parent == nodegraph_home / "recovery"
    assert workflow_file.read_text(encoding="utf-8") == dumps(win.adapter.to_workflow())
    meta = json.loads(meta_file.read_text(encoding="utf-8"))
    assert Path(meta["path"]) == STARTER.resolve() and meta["saved_at"] > 0
    # a normal save removes the recovery files
    assert win.save_as(tmp_path / "saved.json")
    assert not workflow_file.exists() and not meta_file.exists()
    assert not win.recovery.autosave() and not workflow_file.exists()
    # the interval is configurable
    win.recovery.set_interval(5)
    assert win.recovery.timer.interval() == 5000


def test_a_killed_session_is_offered_for_restore_on_the_next_start(qtbot, registry, tmp_path, nodegraph_home,
                                                                   monkeypatch):
    first = make_window(qtbot, registry, tmp_path, track=False)
    assert first.open_file(STARTER)
    first.adapter.set_value("sample", "steps", 11)
    first.adapter.move_node("save", (1234.5, 42))
    expected = dumps(first.adapter.to_workflow())
    assert first.recovery.autosave()
    # "kill" the session: the window goes away without a close event, its files stay behind
    kill(first)
    del first
    pending = pending_recoveries()
    assert len(pending) == 1 and pending[0].path == STARTER.resolve()

    offered = []
    monkeypatch.setattr(MainWindow, "ask_restore", lambda self, info: offered.append(info) or True)
    second = make_window(qtbot, registry, tmp_path)
    assert len(offered) == 1 and second.restored
    assert dumps(second.adapter.to_workflow()) == expected
    assert second.modified and second.windowTitle().endswith("txt2img.json *")
    assert second.path == STARTER.resolve()
    # the dead session's files are gone; the new session holds its own copy
    assert pending_recoveries() == []
    assert second.recovery.workflow_file.read_text(encoding="utf-8") == expected
    # Save writes to the original file (a copy here, so the starter stays untouched)
    copy = tmp_path / "txt2img.json"
    second.path = copy
    assert second.save()
    assert dumps(load(copy)) == expected


def test_a_declined_restore_is_discarded(qtbot, registry, tmp_path, nodegraph_home, monkeypatch):
    first = make_window(qtbot, registry, tmp_path, track=False)
    assert first.open_file(STARTER)
    first.adapter.set_value("sample", "steps", 5)
    assert first.recovery.autosave()
    kill(first)
    del first
    monkeypatch.setattr(MainWindow, "ask_restore", lambda self, info: False)
    second = make_window(qtbot, registry, tmp_path)
    assert not second.restored and not second.modified
    assert pending_recoveries() == []
    assert not any(name.endswith(".workflow.json") for name in recovery_files(nodegraph_home))


def test_a_clean_close_leaves_nothing_to_restore(qtbot, registry, tmp_path, nodegraph_home, monkeypatch):
    win = make_window(qtbot, registry, tmp_path)
    assert win.open_file(STARTER)
    win.adapter.set_value("sample", "steps", 9)
    assert win.recovery.autosave()
    monkeypatch.setattr(win, "ask_save_changes", lambda: "discard")
    assert win.close()
    assert recovery_files(nodegraph_home) == []
    second = make_window(qtbot, registry, tmp_path)  # never_ask: any restore question fails the test
    assert not second.restored


def test_a_live_session_in_another_window_is_not_offered(qtbot, registry, tmp_path):
    first = make_window(qtbot, registry, tmp_path)
    assert first.open_file(STARTER)
    first.adapter.set_value("sample", "steps", 3)
    assert first.recovery.autosave()
    make_window(qtbot, registry, tmp_path)  # never_ask: the open window's work is not a crash
    assert pending_recoveries() == []


def test_a_dead_process_is_detected_by_its_marker(qtbot, registry, tmp_path, nodegraph_home):
    win = make_window(qtbot, registry, tmp_path)
    assert win.open_file(STARTER)
    win.adapter.set_value("sample", "steps", 4)
    assert win.recovery.autosave()
    assert pending_recoveries() == []
    marker = win.recovery.lock_file
    data = json.loads(marker.read_text(encoding="utf-8"))
    assert data["pid"] == os.getpid()
    data["pid"] = 2**22 + 12345  # above Linux's pid limit: no such process
    marker.write_text(json.dumps(data), encoding="utf-8")
    assert [info.session for info in pending_recoveries()] == [win.recovery.session]


def test_closing_with_unsaved_changes_asks(qtbot, registry, tmp_path, nodegraph_home, monkeypatch):
    win = make_window(qtbot, registry, tmp_path)
    win.show()
    assert win.open_file(STARTER)
    win.adapter.set_value("sample", "steps", 21)
    answers = []

    def answer(value):
        def ask():
            answers.append(value)
            return value
        return ask

    monkeypatch.setattr(win, "ask_save_changes", answer("cancel"))
    assert not win.close()
    assert win.isVisible() and win.modified and answers == ["cancel"]

    # Save on an untitled workflow goes through Save As; cancelling that dialog keeps the window open
    win.path = None
    monkeypatch.setattr(win, "_save_as_dialog", lambda: False)
    monkeypatch.setattr(win, "ask_save_changes", answer("save"))
    assert not win.close() and win.isVisible()

    target = tmp_path / "closed.json"
    monkeypatch.setattr(win, "_save_as_dialog", lambda: win.save_as(target))
    expected = dumps(win.adapter.to_workflow())
    assert win.close()
    assert not win.isVisible()
    assert dumps(load(target)) == expected
    assert recovery_files(nodegraph_home) == []


def test_discard_closes_without_saving(qtbot, registry, tmp_path, nodegraph_home, monkeypatch):
    win = make_window(qtbot, registry, tmp_path)
    win.show()
    target = tmp_path / "kept.json"
    assert win.open_file(STARTER) and win.save_as(target)
    before = target.read_text(encoding="utf-8")
    win.adapter.set_value("sample", "steps", 33)
    assert win.recovery.autosave()
    monkeypatch.setattr(win, "ask_save_changes", lambda: "discard")
    assert win.close() and not win.isVisible()
    assert target.read_text(encoding="utf-8") == before
    assert recovery_files(nodegraph_home) == []


def test_a_clean_window_closes_without_asking(qtbot, registry, tmp_path, nodegraph_home, monkeypatch):
    win = make_window(qtbot, registry, tmp_path)
    win.show()
    assert win.open_file(STARTER)
    asked = []
    monkeypatch.setattr(win, "ask_save_changes", lambda: asked.append(1) or "cancel")
    assert win.close() and asked == []
    assert recovery_files(nodegraph_home) == []


def test_replacing_unsaved_work_asks_first(qtbot, registry, tmp_path, nodegraph_home, monkeypatch):
    """New, Open Recent and an image's Load workflow would replace the canvas: unsaved work is offered for saving,
    Cancel keeps it, Save writes it first, Discard drops it."""
    win = make_window(qtbot, registry, tmp_path)
    other = tmp_path / "other.json"
    assert win.open_file(STARTER) and win.save_as(other)
    target = tmp_path / "mine.json"
    assert win.save_as(target)
    win.adapter.set_value("sample", "steps", 44)
    edited = dumps(win.adapter.to_workflow())
    answers = []
    monkeypatch.setattr(win, "ask_save_changes", lambda: answers.pop(0))

    answers[:] = ["cancel", "cancel", "cancel"]
    next(a for a in win.menuBar().actions()[0].menu().actions() if a.text() == "&New").trigger()
    win.recent_files._open_entry(str(other))
    assert win.feedback.load_image_workflow(str(tmp_path / "any.png")) == []
    assert answers == [] and win.modified and dumps(win.adapter.to_workflow()) == edited and win.path == target

    answers[:] = ["save"]
    win.recent_files._open_entry(str(other))
    assert dumps(load(target)) == edited and win.path == other and not win.modified

    other_saved = other.read_text(encoding="utf-8")
    win.adapter.set_value("sample", "steps", 45)
    answers[:] = ["discard"]
    next(a for a in win.menuBar().actions()[0].menu().actions() if a.text() == "&New").trigger()
    assert win.path is None and len(win.adapter.workflow.nodes) == 0
    assert other.read_text(encoding="utf-8") == other_saved
