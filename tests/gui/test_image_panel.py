"""The image panel's actions on the latest image and its history: open the file or its folder, copy the image or its
path, load the embedded workflow; double-clicking a history entry shows it."""

from pathlib import Path

import numpy
import pytest
from PySide6 import QtCore, QtGui, QtWidgets

from nodegraph.core.workflow_io import dumps
from nodegraph.engine.context import RunSettings
from nodegraph.gui import image_panel
from nodegraph.gui.main_window import MainWindow
from nodegraph.images import read_png_workflow, write_png
from nodegraph.packs import create_registry

#: A one-node pack making a flat picture, fed to the real Save Image node (which embeds the workflow).
PICTURE_PACK = '''
import numpy

from nodegraph.core import Input, Output, PortType, node


class Picture:
    """Stands in for the model layer's Images handle: pixels [batch, height, width, 3] in [0, 1], no metadata."""

    def __init__(self, pixels):
        self.pixels = pixels
        self.info = None


@node(type="FakePicture", display_name="Fake Picture", category="test", description="A flat grey picture.",
      inputs=[Input.int("width", 24, min=1, max=256), Input.int("height", 16, min=1, max=256)],
      outputs=[Output("IMAGE", PortType.IMAGE)])
def fake_picture(ctx, width, height):
    return {"IMAGE": Picture(numpy.full((1, height, width, 3), 0.5, dtype="float32"))}
'''


@pytest.fixture
def window(qtbot, fake_pack, tmp_path):
    pack = tmp_path / "picture_pack.py"
    pack.write_text(PICTURE_PACK, encoding="utf-8")
    registry = create_registry([fake_pack, pack], user_packs=False)
    assert not registry.problems, registry.problems
    win = MainWindow(registry, settings=RunSettings(output_dir=tmp_path / "out"))
    qtbot.addWidget(win)
    return win


@pytest.fixture
def opened(monkeypatch):
    """The URLs the panel asked the desktop to open (nothing is launched)."""
    urls: list[QtCore.QUrl] = []
    monkeypatch.setattr(image_panel, "open_url", lambda url: urls.append(url) or True)
    return urls


def run_picture(qtbot, win, width=24, height=16):
    """Run FakePicture -> Save Image; returns the workflow that ran and the PNG written."""
    adapter = win.adapter
    if "picture" not in adapter.workflow.nodes:
        adapter.add_node("FakePicture", (0, 0), node_id="picture", inputs={"width": width, "height": height})
        adapter.add_node("SaveImage", (300, 0), node_id="save", inputs={"filename_prefix": "pic"})
        assert adapter.connect("picture", "IMAGE", "save", "images")
    else:
        adapter.set_value("picture", "width", width)
    ran = adapter.to_workflow()
    win.run_workflow()
    qtbot.waitUntil(lambda: win.worker is None and win.run_state != "running", timeout=15000)
    assert win.run_state == "finished", win.state_label.text()
    return ran, Path(win.feedback.image_panel.current)


def plain_png(tmp_path):
    path = tmp_path / "plain.png"
    write_png(path, numpy.zeros((6, 10, 3), dtype="uint8"), {})
    return path


def test_a_run_shows_the_saved_png_with_its_actions_enabled(qtbot, window):
    panel = window.feedback.image_panel
    assert not any(a.isEnabled() for a in panel.actions_by_name.values())  # nothing to act on yet
    ran, png = run_picture(qtbot, window)
    assert png.parent == window._settings.output_dir and png.suffix == ".png"
    assert panel.history_paths() == [str(png)]
    assert (panel.pixmap().width(), panel.pixmap().height()) == (24, 16)
    assert all(a.isEnabled() for a in panel.actions_by_name.values())
    assert dumps(read_png_workflow(png)) == dumps(ran)  # Save Image embedded the workflow that ran
    panel.show_preview(numpy.zeros((4, 4, 3), dtype="uint8"))
    assert not any(a.isEnabled() for a in panel.actions_by_name.values())  # a preview is no file


def test_open_file_and_open_folder_open_the_right_urls(qtbot, window, opened):
    _, png = run_picture(qtbot, window)
    panel = window.feedback.image_panel
    panel.actions_by_name["open_file"].trigger()
    panel.actions_by_name["open_folder"].trigger()
    assert [url.toLocalFile() for url in opened] == [str(png), str(png.parent)]
    assert all(url.isLocalFile() for url in opened)


def test_the_history_menu_acts_on_the_entry_under_the_mouse(qtbot, window, opened, monkeypatch):
    _, first = run_picture(qtbot, window, width=24)
    _, second = run_picture(qtbot, window, width=40)
    panel = window.feedback.image_panel
    assert panel.history_paths() == [str(second), str(first)] and panel.current == str(second)
    menus = []
    monkeypatch.setattr(panel, "popup_menu", lambda menu, pos: menus.append(menu))
    window.show()
    older = panel.history.visualItemRect(panel.history.item(1)).center()
    panel.history.customContextMenuRequested.emit(older)
    [menu] = menus
    assert [a.text() for a in menu.actions()] == [label for _, label, _ in image_panel.ACTIONS]
    next(a for a in menu.actions() if a.text() == "Open file").trigger()
    assert [url.toLocalFile() for url in opened] == [str(first)]  # the entry clicked, not the one shown
    panel.history.customContextMenuRequested.emit(QtCore.QPoint(5000, 5))  # no entry there: no menu
    assert len(menus) == 1


def test_copy_image_and_copy_path_fill_the_clipboard(qtbot, window):
    _, png = run_picture(qtbot, window, width=30, height=12)
    panel = window.feedback.image_panel
    clipboard = QtGui.QGuiApplication.clipboard()
    clipboard.clear()
    panel.actions_by_name["copy_image"].trigger()
    image = clipboard.image()
    assert (image.width(), image.height()) == (30, 12)
    assert image.pixelColor(3, 3).red() == 128  # the grey the node made (0.5 -> 128)
    assert "Copied pic_" in window.state_label.text()
    panel.actions_by_name["copy_path"].trigger()
    assert clipboard.text() == str(png)


def test_load_workflow_restores_the_workflow_the_image_was_made_with(qtbot, window):
    ran, png = run_picture(qtbot, window, width=24)
    window.adapter.set_value("picture", "width", 99)  # edit after the run, then drop the whole graph
    window.new_workflow()
    assert dumps(window.adapter.to_workflow()) != dumps(ran)
    panel = window.feedback.image_panel
    panel.actions_by_name["load_workflow"].trigger()
    assert dumps(window.adapter.to_workflow()) == dumps(ran)
    assert window.adapter.to_workflow().nodes["picture"].inputs["width"] == 24
    assert window.path is None and window.modified  # restored work is unsaved, as after dropping the PNG
    assert window.state_label.text() == f"Loaded the workflow saved in {png.name}"


def test_a_png_without_a_workflow_says_so_and_changes_nothing(qtbot, window, tmp_path):
    run_picture(qtbot, window)
    before = dumps(window.adapter.to_workflow())
    panel = window.feedback.image_panel
    plain = plain_png(tmp_path)
    assert panel.add_output(plain)
    panel.act("load_workflow")
    assert dumps(window.adapter.to_workflow()) == before
    assert "plain.png" in window.state_label.text()
    assert "carries no workflow" in window.state_label.text()


def test_a_deleted_file_is_reported_instead_of_opened(qtbot, window, tmp_path, opened):
    panel = window.feedback.image_panel
    plain = plain_png(tmp_path)
    assert panel.add_output(plain)
    plain.unlink()
    assert not panel.act("open_file")
    assert opened == []
    assert "plain.png: the file no longer exists" in window.state_label.text()


def test_clicking_or_double_clicking_a_history_entry_shows_it_large(qtbot, window, tmp_path):
    panel = window.feedback.image_panel
    plain = plain_png(tmp_path)
    assert panel.add_output(plain)
    _, png = run_picture(qtbot, window)
    assert panel.current == str(png)
    window.show()
    qtbot.waitExposed(window)
    viewport = panel.history.viewport()
    older = panel.history.visualItemRect(panel.history.item(1)).center()
    qtbot.mouseClick(viewport, QtCore.Qt.MouseButton.LeftButton, pos=older)  # the first click of a double-click
    assert panel.current == str(plain)
    panel.show_file(png)  # so that only the double-click can bring the older entry back
    where = QtCore.QPointF(older)
    with qtbot.waitSignal(panel.history.itemDoubleClicked, timeout=1000):
        for kind, buttons in ((QtCore.QEvent.Type.MouseButtonDblClick, QtCore.Qt.MouseButton.LeftButton),
                              (QtCore.QEvent.Type.MouseButtonRelease, QtCore.Qt.MouseButton.NoButton)):
            event = QtGui.QMouseEvent(kind, where, viewport.mapToGlobal(where), QtCore.Qt.MouseButton.LeftButton,
                                      buttons, QtCore.Qt.KeyboardModifier.NoModifier)
            QtWidgets.QApplication.sendEvent(viewport, event)
    assert panel.current == str(plain)
    assert (panel.pixmap().width(), panel.pixmap().height()) == (10, 6)
    assert panel.caption.text() == "plain.png"
