"""The restore offer at start: a crashed session's work is only deleted once the user answered a visible offer."""

import gc
from pathlib import Path

import shiboken6
from PySide6 import QtWidgets

from nodegraph.core.workflow_io import dumps
from nodegraph.engine.context import RunSettings
from nodegraph.gui import main_window as main_window_module
from nodegraph.gui.main_window import MainWindow
from nodegraph.gui.recovery import can_show_restore_offer, pending_recoveries

ROOT = Path(__file__).resolve().parents[2]
STARTER = ROOT / "resources" / "workflows" / "txt2img.json"


def make_window(qtbot, registry, tmp_path, track=True):
    win = MainWindow(registry, settings=RunSettings(output_dir=tmp_path / "out"))
    if track:
        qtbot.addWidget(win)
    return win


def crashed_session(qtbot, registry, tmp_path) -> str:
    """A session with unsaved work that ended without a clean close; returns its work as text."""
    first = make_window(qtbot, registry, tmp_path, track=False)
    assert first.open_file(STARTER)
    first.adapter.set_value("sample", "steps", 9)
    expected = dumps(first.adapter.to_workflow())
    assert first.recovery.autosave()
    first.adapter.undo_stack.blockSignals(True)
    shiboken6.delete(first)
    gc.collect()
    assert len(pending_recoveries()) == 1
    return expected


def answer_with(monkeypatch, button_text: str | None) -> list[str]:
    """Show the offer as if visible; the user clicks `button_text` (None: closes it without an answer)."""
    shown = []

    def exec_(box):
        shown.append(box.text())
        for button in box.buttons():
            if button_text is not None and button.text() == button_text:
                button.click()
        return 0

    monkeypatch.setattr(main_window_module, "can_show_restore_offer", lambda: True)
    monkeypatch.setattr(QtWidgets.QMessageBox, "exec", exec_)
    return shown


def test_the_offer_cannot_be_shown_offscreen(qapp):
    assert QtWidgets.QApplication.platformName() == "offscreen"
    assert not can_show_restore_offer()


def test_recovery_files_survive_starts_that_cannot_show_the_offer(qtbot, registry, tmp_path, nodegraph_home,
                                                                  monkeypatch):
    expected = crashed_session(qtbot, registry, tmp_path)
    files = sorted(p.name for p in (nodegraph_home / "recovery").glob("*.json"))

    def never_shown(box):
        raise AssertionError("the offer was shown offscreen")

    monkeypatch.setattr(QtWidgets.QMessageBox, "exec", never_shown)
    for _ in range(2):  # offscreen starts, one after the other
        win = make_window(qtbot, registry, tmp_path)
        assert not win.restored and not win.modified
        pending = pending_recoveries()
        assert len(pending) == 1 and pending[0].load_workflow() is not None
        assert dumps(pending[0].load_workflow()) == expected
        win.close()
    assert set(files) <= {p.name for p in (nodegraph_home / "recovery").glob("*.json")}


def test_a_visible_offer_answered_discard_removes_the_files(qtbot, registry, tmp_path, nodegraph_home, monkeypatch):
    crashed_session(qtbot, registry, tmp_path)
    shown = answer_with(monkeypatch, "Discard")
    win = make_window(qtbot, registry, tmp_path)
    assert len(shown) == 1 and "txt2img.json" in shown[0]
    assert not win.restored and pending_recoveries() == []
    assert not list((nodegraph_home / "recovery").glob("*.workflow.json"))


def test_a_visible_offer_answered_restore_takes_the_work_over(qtbot, registry, tmp_path, nodegraph_home, monkeypatch):
    expected = crashed_session(qtbot, registry, tmp_path)
    shown = answer_with(monkeypatch, "Restore")
    win = make_window(qtbot, registry, tmp_path)
    assert len(shown) == 1 and win.restored and win.modified
    assert dumps(win.adapter.to_workflow()) == expected
    assert pending_recoveries() == []
    assert win.recovery.workflow_file.read_text(encoding="utf-8") == expected


def test_an_offer_closed_without_an_answer_keeps_the_files(qtbot, registry, tmp_path, nodegraph_home, monkeypatch):
    crashed_session(qtbot, registry, tmp_path)
    shown = answer_with(monkeypatch, None)
    win = make_window(qtbot, registry, tmp_path)
    assert len(shown) == 1 and not win.restored
    assert len(pending_recoveries()) == 1
