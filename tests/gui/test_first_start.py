"""First-start guidance: install detection, the guidance dialog (folders, installs, demo checkpoint), and when it
is shown."""

from pathlib import Path

import pytest
from PySide6 import QtCore

from nodegraph.cli.demo_command import DEMO_CHECKPOINT
from nodegraph.gui import first_start
from nodegraph.gui.first_start import (
    FirstStartDialog,
    Install,
    available_checkpoints,
    find_installs,
    maybe_show_first_start,
    no_checkpoint_hint,
    search_bases,
)
from nodegraph.models.discovery import KIND_FOLDERS
from nodegraph.settings import AppSettings

ROOT = Path(__file__).resolve().parents[2]
STARTER = ROOT / "resources" / "workflows" / "txt2img.json"
STARTER_CKPT = "v1-5-pruned-emaonly.safetensors"


def make_tree(root: Path, dirs: tuple[str, ...] = (), files: tuple[str, ...] = ()) -> Path:
    for folder in dirs:
        (root / folder).mkdir(parents=True, exist_ok=True)
    for name in files:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"fake")
    return root


def a1111(root: Path, *extra_dirs: str, files: tuple[str, ...] = ("webui.py",)) -> Path:
    return make_tree(root, ("models/Stable-diffusion", *extra_dirs), files)


def comfyui(root: Path) -> Path:
    return make_tree(root, ("models/checkpoints", "comfy"), ("main.py", "nodes.py"))


def ckpt(window) -> str:
    return window.adapter.workflow.node("ckpt").inputs["ckpt_name"]


@pytest.fixture
def ask(monkeypatch):
    """Record the dialogs maybe_show_first_start would show (never shown: offscreen tests cannot click them)."""
    shown = []
    monkeypatch.setattr(first_start, "ask_first_start", shown.append)
    return shown


def test_find_installs_recognises_each_layout_by_its_marker_files(tmp_path):
    base = tmp_path / "AI"
    found_a1111 = a1111(base / "stable-diffusion-webui")
    forge = a1111(base / "stable-diffusion-webui-forge", "modules_forge", files=("launch.py",))
    sdnext = a1111(base / "automatic", files=("launch.py", "installer.py"))
    portable = comfyui(base / "ComfyUI_windows_portable" / "ComfyUI")  # one-click package: nested one level
    desktop = make_tree(base / "ComfyUI", ("models/checkpoints", "custom_nodes", "user"))  # the desktop app's folder
    # Not installs: model folders alone, a launcher without models, a hidden folder, and one nested too deep.
    make_tree(base / "just-models", ("models/checkpoints", "models/Stable-diffusion"))
    make_tree(base / "webui-copy", files=("webui.py", "launch.py"))
    comfyui(base / ".cache-comfy")
    comfyui(base / "deep" / "er" / "ComfyUI")
    installs = find_installs([base, tmp_path / "missing"])
    assert {(i.label, i.kind, i.root) for i in installs} == {
        ("AUTOMATIC1111", "a1111", found_a1111), ("Forge", "a1111", forge), ("SD.Next", "a1111", sdnext),
        ("ComfyUI", "comfyui", portable), ("ComfyUI (desktop app)", "comfyui", desktop)}


def test_an_install_given_as_a_base_is_found_once(tmp_path):
    root = comfyui(tmp_path / "ComfyUI")
    assert find_installs([root, tmp_path, root]) == [Install("comfyui", "ComfyUI", root)]


def test_search_bases_are_the_home_folder_its_usual_subfolders_and_windows_drives(tmp_path):
    bases = search_bases(tmp_path, platform="win32")
    assert bases[0] == tmp_path
    assert {tmp_path / "AI", tmp_path / "Documents", tmp_path / "Desktop", tmp_path / "src", tmp_path / "git",
            Path("C:/")} <= set(bases)
    assert Path("C:/") not in search_bases(tmp_path, platform="linux")


def test_the_dialog_lists_where_each_kind_of_model_goes(window, nodegraph_home):
    settings = AppSettings(model_roots=["/somewhere/else"])
    dialog = FirstStartDialog(window, settings, installs=[])
    assert set(dialog.folder_labels) == set(KIND_FOLDERS)
    for kind, names in KIND_FOLDERS.items():
        assert dialog.folder_labels[kind].text() == str(nodegraph_home / "models" / names[0])
    assert dialog.roots_label.text() == "/somewhere/else"
    assert not dialog.install_boxes
    assert not dialog.use_button.isVisibleTo(dialog)


def test_using_an_install_saves_it_and_offers_its_first_checkpoint(window, tmp_path, nodegraph_home):
    install = a1111(tmp_path / "AI" / "stable-diffusion-webui")
    make_tree(install, files=("models/Stable-diffusion/sd15/real.safetensors",
                              "models/Stable-diffusion/xl.safetensors"))
    assert window.open_file(STARTER)
    settings = AppSettings()
    dialog = FirstStartDialog(window, settings, installs=find_installs([tmp_path / "AI"]))
    box = dialog.install_boxes[install]
    assert "2 checkpoints" in box.text() and not box.isChecked()
    assert not dialog.use_button.isVisibleTo(dialog)

    box.setChecked(True)
    assert AppSettings.load().model_roots == [str(install)]
    assert settings.model_roots == []  # a new snapshot, handed to the window; the old one is left alone
    assert window.app_settings.model_roots == [str(install)] and window.app_settings is dialog.settings
    assert available_checkpoints(dialog.settings) == ["sd15/real.safetensors", "xl.safetensors"]
    assert window.model_folders.list("checkpoints") == ["sd15/real.safetensors", "xl.safetensors"]
    assert dialog.use_button.isVisibleTo(dialog) and dialog.use_button.text() == "Use sd15/real.safetensors"
    assert str(install) in dialog.roots_label.text()

    dialog.use_button.click()
    assert ckpt(window) == "sd15/real.safetensors"
    window.adapter.undo()
    assert ckpt(window) == STARTER_CKPT

    box.setChecked(False)
    assert AppSettings.load().model_roots == [] == window.app_settings.model_roots
    assert not dialog.use_button.isVisibleTo(dialog)


def test_an_install_already_in_the_settings_starts_checked(window, tmp_path):
    install = comfyui(tmp_path / "ComfyUI")
    dialog = FirstStartDialog(window, AppSettings(model_roots=[str(install)]), installs=find_installs([tmp_path]))
    assert dialog.install_boxes[install].isChecked()


def test_add_a_folder_uses_the_folder_the_user_picks(window, tmp_path, monkeypatch):
    picked = make_tree(tmp_path / "my-models", files=("checkpoints/mine.safetensors",))
    monkeypatch.setattr(first_start, "ask_folder", lambda parent: picked)
    changed = []
    dialog = FirstStartDialog(window, AppSettings(), installs=[])
    dialog.settings_changed.connect(changed.append)
    add = next(b for b in dialog.findChildren(type(dialog.use_button)) if b.text() == "Add a folder…")
    add.click()
    assert AppSettings.load().model_roots == [str(picked)]
    assert [s.model_roots for s in changed] == [[str(picked)]]
    assert dialog.use_button.text() == "Use mine.safetensors"


def test_open_models_folder_creates_the_folders_and_opens_them(window, nodegraph_home, monkeypatch):
    opened = []
    monkeypatch.setattr(first_start, "open_folder", opened.append)
    dialog = FirstStartDialog(window, AppSettings(), installs=[])
    dialog.open_button.click()
    assert opened == [nodegraph_home / "models"]
    assert all((nodegraph_home / "models" / names[0]).is_dir() for names in KIND_FOLDERS.values())


def test_the_demo_button_writes_the_demo_checkpoint_and_selects_it(window, qtbot, nodegraph_home):
    assert window.open_file(STARTER)
    dialog = FirstStartDialog(window, AppSettings(), installs=[])
    qtbot.mouseClick(dialog.demo_button, QtCore.Qt.MouseButton.LeftButton)
    # The click returns at once: the writing goes on on the worker thread.
    assert not dialog.demo_button.isEnabled()
    assert dialog.status.text().startswith("Writing the demo checkpoint")
    qtbot.waitUntil(lambda: ckpt(window) == DEMO_CHECKPOINT, timeout=180_000)
    written = nodegraph_home / "models" / "checkpoints" / DEMO_CHECKPOINT
    assert written.is_file() and written.stat().st_size > 0
    assert available_checkpoints(AppSettings()) == [DEMO_CHECKPOINT]
    assert "random weights" in dialog.status.text() and "noise" in dialog.status.text()
    assert dialog.use_button.isVisibleTo(dialog)
    window.adapter.undo()  # one undo step
    assert ckpt(window) == STARTER_CKPT


def test_a_demo_write_that_fails_says_why_and_allows_another_try(window, qtbot, nodegraph_home):
    nodegraph_home.mkdir(parents=True, exist_ok=True)
    (nodegraph_home / "models").write_text("a file where the models folder should be")
    dialog = FirstStartDialog(window, AppSettings(), installs=[])
    dialog.demo_button.click()
    qtbot.waitUntil(lambda: dialog.demo_button.isEnabled(), timeout=180_000)
    assert dialog.status.text().startswith("Could not write the demo checkpoint into")
    assert str(nodegraph_home / "models" / "checkpoints") in dialog.status.text()


def test_first_start_without_a_checkpoint_shows_the_dialog_once_then_a_hint(window, ask, tmp_path):
    dialog = maybe_show_first_start(window, installs=[])
    assert isinstance(dialog, FirstStartDialog) and ask == [dialog]
    assert AppSettings.load().first_start_done
    assert maybe_show_first_start(window, installs=[]) is None
    assert ask == [dialog]
    assert window.statusBar().currentMessage() == no_checkpoint_hint()
    assert str(Path("models") / "checkpoints") in no_checkpoint_hint()


def test_not_shown_when_a_checkpoint_exists(window, ask, nodegraph_home):
    make_tree(nodegraph_home, files=("models/checkpoints/real.safetensors",))
    assert maybe_show_first_start(window, installs=[]) is None
    assert ask == [] and window.statusBar().currentMessage() == ""
    assert not AppSettings.load().first_start_done


def test_the_windows_own_settings_are_the_ones_checked(window, ask, tmp_path):
    install = comfyui(tmp_path / "ComfyUI")
    make_tree(install, files=("models/checkpoints/there.safetensors",))
    window.app_settings = AppSettings(model_roots=[str(install)])
    assert maybe_show_first_start(window, installs=[]) is None
    window.app_settings = AppSettings()
    dialog = maybe_show_first_start(window, installs=[])
    assert ask == [dialog] and window.app_settings.first_start_done
