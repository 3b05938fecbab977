"""The settings dialog, the window applying the settings (folders, autosave, runs), and File → Open Recent."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from PySide6 import QtCore, QtWidgets

from nodegraph.gui.main_window import MainWindow
from nodegraph.gui.settings_dialog import SettingsDialog
from nodegraph.settings import SETTINGS_FILE, AppSettings

ROOT = Path(__file__).resolve().parents[2]
STARTER = ROOT / "resources" / "workflows" / "txt2img.json"
OK = QtWidgets.QDialogButtonBox.StandardButton.Ok


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"not really a model")
    return path


def webui(root: Path, checkpoints: int = 0, loras: int = 0) -> Path:
    """A folder laid out as an AUTOMATIC1111 install, with dummy model files."""
    for index in range(checkpoints):
        touch(root / "models" / "Stable-diffusion" / f"ckpt{index}.safetensors")
    for index in range(loras):
        touch(root / "models" / "Lora" / f"lora{index}.safetensors")
    (root / "models" / "Stable-diffusion").mkdir(parents=True, exist_ok=True)
    return root


@pytest.fixture
def dialog(qtbot):
    made = SettingsDialog(AppSettings(recent_files=["/somewhere/kept.json"], first_start_done=True))
    qtbot.addWidget(made)
    return made


def add_root(dialog, monkeypatch, qtbot, folder: Path | str) -> None:
    """Click "Add folder…" with the folder chooser answering `folder`."""
    monkeypatch.setattr(dialog, "ask_folder", lambda title: str(folder))
    qtbot.mouseClick(dialog.add_root_button, QtCore.Qt.MouseButton.LeftButton)


# --- the dialog -------------------------------------------------------------------------------------------------------
def test_dialog_round_trip_saves_what_the_widgets_say(dialog, qtbot, monkeypatch, tmp_path, nodegraph_home):
    a1111 = webui(tmp_path / "webui", checkpoints=2, loras=3)
    comfy = tmp_path / "ComfyUI"
    touch(comfy / "models" / "checkpoints" / "sdxl" / "base.safetensors")
    touch(comfy / "models" / "embeddings" / "bad.pt")
    add_root(dialog, monkeypatch, qtbot, a1111)
    add_root(dialog, monkeypatch, qtbot, comfy)
    assert dialog.message.isHidden()
    found = [dialog.roots.topLevelItem(i).text(1) for i in range(dialog.roots.topLevelItemCount())]
    assert found == ["2 checkpoints, 3 LoRAs", "1 checkpoint, 1 embedding"]
    output = tmp_path / "images" / "new"
    dialog.output_edit.setText(str(output))
    dialog.device_combo.setEditText("cuda:1")
    dialog.precision_combo.setCurrentText("bf16")
    dialog.previews_check.setChecked(False)
    dialog.autosave_spin.setValue(15)
    dialog.buttons.button(OK).click()
    assert dialog.result() == QtWidgets.QDialog.DialogCode.Accepted
    expected = AppSettings(model_roots=[str(a1111), str(comfy)], output_dir=str(output), device="cuda:1",
                           precision="bf16", previews=False, autosave_seconds=15,
                           recent_files=["/somewhere/kept.json"], first_start_done=True)
    assert AppSettings.load() == expected == dialog.saved
    assert output.is_dir()  # created when it was checked


def test_remove_and_defaults_round_trip(qtbot, monkeypatch, tmp_path, nodegraph_home):
    start = AppSettings(model_roots=[str(webui(tmp_path / "a")), str(webui(tmp_path / "b"))],
                        output_dir=str(tmp_path / "out"), device="cpu", autosave_seconds=30)
    dialog = SettingsDialog(start)
    qtbot.addWidget(dialog)
    assert dialog.device_combo.currentText() == "cpu" and dialog.autosave_spin.value() == 30
    assert dialog.roots.topLevelItem(0).text(1) == "no model files yet"
    dialog.roots.topLevelItem(0).setSelected(True)
    qtbot.mouseClick(dialog.remove_root_button, QtCore.Qt.MouseButton.LeftButton)
    dialog.output_edit.setText("")  # back to the default folder
    dialog.autosave_spin.setValue(1)  # below the range: the spin box holds the lowest allowed value
    dialog.accept()
    saved = AppSettings.load()
    assert saved.model_roots == [str(tmp_path / "b")] and saved.output_dir is None
    assert saved.autosave_seconds == 10 and saved.device == "cpu"


@pytest.mark.parametrize("make, message", [
    (lambda tmp: tmp / "nowhere", "does not exist"),
    (lambda tmp: touch(tmp / "file.safetensors"), "is a file, not a folder"),
    (lambda tmp: "relative/models", "use a full path"),
])
def test_a_bad_model_folder_is_refused_with_a_message(dialog, qtbot, monkeypatch, tmp_path, make, message):
    add_root(dialog, monkeypatch, qtbot, make(tmp_path))
    assert dialog.root_paths() == []
    assert not dialog.message.isHidden() and message in dialog.message.text()


def test_the_same_folder_twice_is_refused_and_a_folder_without_models_is_described(dialog, qtbot, monkeypatch,
                                                                                     tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    add_root(dialog, monkeypatch, qtbot, empty)
    assert dialog.roots.topLevelItem(0).text(1).startswith("no model folders found")
    add_root(dialog, monkeypatch, qtbot, empty)
    assert dialog.root_paths() == [str(empty)] and "already in the list" in dialog.message.text()


def test_bad_output_folder_or_device_keeps_the_dialog_open_and_saves_nothing(dialog, tmp_path, nodegraph_home):
    blocker = touch(tmp_path / "a-file")
    dialog.output_edit.setText(str(blocker / "sub"))
    dialog.device_combo.setEditText("tpu")
    dialog.buttons.button(OK).click()
    assert dialog.result() != QtWidgets.QDialog.DialogCode.Accepted and dialog.saved is None
    text = dialog.message.text()
    assert f"Output folder {blocker / 'sub'} cannot be created" in text
    assert "Device 'tpu': use auto, cpu, cuda, cuda:N or mps" in text
    assert "Traceback" not in text
    assert not (nodegraph_home / SETTINGS_FILE).exists()


# --- the window applies them ------------------------------------------------------------------------------------------
def ckpt_problems(window) -> list[str]:
    return [str(p) for p in window.feedback.check(window.adapter.to_workflow()) if p.node_id == "ckpt"]


def test_an_added_model_folder_is_used_by_validation(window, monkeypatch, tmp_path, nodegraph_home):
    root = webui(tmp_path / "webui")
    assert window.open_file(STARTER)
    window.adapter.set_value("ckpt", "ckpt_name", "mine.safetensors")
    touch(root / "models" / "Stable-diffusion" / "mine.safetensors")
    [problem] = ckpt_problems(window)
    assert "port 'ckpt_name'" in problem and "mine.safetensors: not found" in problem
    chosen = AppSettings(model_roots=[str(root)])
    monkeypatch.setattr(window, "ask_settings", lambda: chosen)
    window.settings_action.trigger()  # Edit → Settings…, answered with the folder added
    assert window.app_settings is chosen
    assert ckpt_problems(window) == []
    assert window.model_folders.list("checkpoints") == ["mine.safetensors"]


def test_autosave_interval_comes_from_the_settings_and_changes_at_once(qtbot, registry, tmp_path, nodegraph_home):
    AppSettings(autosave_seconds=20).save()
    win = MainWindow(registry)
    qtbot.addWidget(win)
    assert win.recovery.timer.interval() == 20_000 and win.recovery.timer.isActive()
    win.apply_settings(dataclasses.replace(win.app_settings, autosave_seconds=90))
    assert win.recovery.timer.interval() == 90_000 and win.recovery.timer.isActive()


def test_the_next_run_uses_changed_settings_and_keeps_models_when_it_can(qtbot, registry, tmp_path, nodegraph_home):
    win = MainWindow(registry)
    qtbot.addWidget(win)
    first = win._run_settings()
    manager = first.services["models"]
    assert first.output_dir == nodegraph_home / "output" and first.previews and first.device == "auto"
    assert (manager.requested_device, manager.precision) == ("auto", "auto")

    win.apply_settings(dataclasses.replace(win.app_settings, output_dir=str(tmp_path / "o"), previews=False))
    second = win._run_settings()
    assert second.output_dir == tmp_path / "o" and not second.previews
    assert second.services["models"] is manager  # nothing the models depend on changed

    root = webui(tmp_path / "webui")
    win.apply_settings(dataclasses.replace(win.app_settings, model_roots=[str(root)]))
    third = win._run_settings().services["models"]
    assert third is not manager and third.folders.roots == [root]
    assert third.cache is manager.cache  # only the folders changed: loaded models stay

    win.executor.cache.put("some-node", {"VALUE": 1})
    win.apply_settings(dataclasses.replace(win.app_settings, device="cpu", precision="fp32"))
    fourth = win._run_settings().services["models"]
    assert (fourth.requested_device, fourth.precision) == ("cpu", "fp32")
    assert fourth.cache is not manager.cache and len(win.executor.cache) == 0  # outputs of another device dropped


def test_a_run_settings_override_still_wins(window, tmp_path):
    override = window._run_settings()
    window.apply_settings(dataclasses.replace(window.app_settings, device="cpu", output_dir=str(tmp_path / "x")))
    assert window._run_settings() is override and override.output_dir == tmp_path / "out"


def test_a_damaged_settings_file_is_shown_in_the_status_bar(qtbot, registry, nodegraph_home):
    nodegraph_home.mkdir(parents=True, exist_ok=True)
    (nodegraph_home / SETTINGS_FILE).write_text("{oops", encoding="utf-8")
    win = MainWindow(registry)
    qtbot.addWidget(win)
    assert win.state_label.text().startswith("Settings: could not read")
    assert win.app_settings == AppSettings()


# --- recent files -----------------------------------------------------------------------------------------------------
def test_open_and_save_fill_open_recent_newest_first(window, qtbot, registry, tmp_path):
    assert window.open_file(STARTER)
    mine = tmp_path / "mine.json"
    assert window.save_as(mine)
    listed = [(str(mine.resolve()), True), (str(STARTER.resolve()), True)]
    assert window.recent_files.entries() == listed
    assert AppSettings.load().recent_files == [path for path, _ in listed]
    assert window.open_file(STARTER)
    assert [path for path, _ in window.recent_files.entries()] == [str(STARTER.resolve()), str(mine.resolve())]
    other = MainWindow(registry)  # a later session lists the same files
    qtbot.addWidget(other)
    assert other.recent_files.entries() == window.recent_files.entries()


def test_missing_recent_files_are_disabled_and_entries_open_and_clear(window, tmp_path):
    mine = tmp_path / "mine.json"
    assert window.open_file(STARTER) and window.save_as(mine)
    gone = tmp_path / "gone.json"
    assert window.save_as(gone)
    gone.unlink()
    window.recent_files.menu.aboutToShow.emit()  # the menu is rebuilt each time it opens
    assert window.recent_files.entries() == [(str(gone.resolve()), False), (str(mine.resolve()), True),
                                             (str(STARTER.resolve()), True)]
    texts = [action.text() for action in window.recent_files.menu.actions()]
    assert texts[0] == f"&1 gone.json — {gone.resolve().parent} (missing)"
    window.new_workflow()
    entry = next(a for a in window.recent_files.menu.actions() if a.data() == str(mine.resolve()))
    entry.trigger()
    assert window.path == Path(str(mine.resolve())) and len(window.adapter.workflow) > 0
    assert window.recent_files.entries()[0] == (str(mine.resolve()), True)
    window.recent_files.clear_action.trigger()
    assert window.recent_files.entries() == [] and AppSettings.load().recent_files == []
    assert not window.recent_files.clear_action.isEnabled()


def test_the_starter_opened_at_start_is_not_a_recent_file(window):
    assert window.open_file(STARTER, remember=False)
    assert window.recent_files.entries() == [] and window.app_settings.recent_files == []


def test_find_installs_adds_the_ones_not_listed_yet(dialog, qtbot, monkeypatch, tmp_path):
    base = tmp_path / "AI"
    listed = webui(base / "stable-diffusion-webui", checkpoints=1)
    (listed / "webui.py").write_text("")
    comfy = base / "ComfyUI"
    touch(comfy / "models" / "checkpoints" / "a.safetensors")
    (comfy / "comfy").mkdir()
    webui(base / "not-an-install")  # model folders but no webui.py/launch.py: not an install
    add_root(dialog, monkeypatch, qtbot, listed)
    assert dialog.add_found_installs([base]) == [str(comfy)]
    assert dialog.root_paths() == [str(listed), str(comfy)]
    assert "Found 2 install(s); added 1 new." in dialog.message.text()
    assert dialog.add_found_installs([base]) == []  # nothing new the second time
    assert dialog.add_found_installs([tmp_path / "empty"]) == []
    assert "No AUTOMATIC1111 or ComfyUI install found" in dialog.message.text()
