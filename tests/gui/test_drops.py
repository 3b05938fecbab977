"""Dropping files on the window: workflow JSON, a PNG saved by Save Image, model files."""

from pathlib import Path

from PySide6 import QtCore, QtGui, QtWidgets

from nodegraph.core.workflow_io import dumps, load
from nodegraph.gui.drops import handle_drop
from nodegraph.images import workflow_chunks, write_png

ROOT = Path(__file__).resolve().parents[2]
STARTER = ROOT / "resources" / "workflows" / "txt2img.json"


def saved_png(tmp_path, workflow):
    """A PNG carrying `workflow` as Save Image writes it."""
    import numpy

    path = tmp_path / "txt2img_00001_.png"
    write_png(path, numpy.zeros((8, 8, 3), dtype="uint8"), workflow_chunks(workflow, "a prompt\nSteps: 20"))
    return path


def test_dropping_a_saved_png_restores_its_workflow(window, tmp_path):
    original = load(STARTER)
    original.set_input("sample", "seed", 1234)
    problems = handle_drop(window, [saved_png(tmp_path, original)])
    assert problems == []
    assert dumps(window.adapter.to_workflow()) == dumps(original)
    assert window.path is None and window.modified and window.windowTitle().endswith("*")


def test_dropping_a_workflow_json_opens_it(window):
    assert handle_drop(window, [STARTER]) == []
    assert window.path == STARTER and dumps(window.adapter.to_workflow()) == dumps(load(STARTER))


def test_a_png_without_a_workflow_is_reported(window, tmp_path):
    import numpy

    plain = tmp_path / "plain.png"
    write_png(plain, numpy.zeros((4, 4, 3), dtype="uint8"), {})
    before = dumps(window.adapter.to_workflow())
    # neither ours nor another tool's (ComfyUI, AUTOMATIC1111): the import says so
    assert "carries no workflow" in handle_drop(window, [plain])[0]
    assert dumps(window.adapter.to_workflow()) == before
    assert "carries no workflow" in window.state_label.text()


def test_dropping_a_model_file_adds_its_loader_node(window, nodegraph_home):
    from nodegraph.models.synthetic import write_lora

    lora = write_lora(nodegraph_home / "models" / "loras" / "styles" / "ink.safetensors", "sd1", "kohya")
    handle_drop(window, [lora], (100.0, 50.0))
    [node] = [n for n in window.adapter.to_workflow() if n.type == "LoadLoRA"]
    assert node.inputs["lora_name"] == "styles/ink.safetensors"
    window.adapter.undo_stack.undo()
    assert not any(n.type == "LoadLoRA" for n in window.adapter.to_workflow())


def test_a_real_drop_event_on_the_canvas(window, qtbot, tmp_path):
    original = load(STARTER)
    original.set_input("positive", "text", "dropped")
    png = saved_png(tmp_path, original)
    window.show()
    viewport = window.adapter.graph.viewer().viewport()
    mime = QtCore.QMimeData()
    mime.setUrls([QtCore.QUrl.fromLocalFile(str(png))])
    where = QtCore.QPointF(viewport.rect().center())
    for event_type in (QtCore.QEvent.Type.DragEnter, QtCore.QEvent.Type.Drop):
        cls = QtGui.QDragEnterEvent if event_type == QtCore.QEvent.Type.DragEnter else QtGui.QDropEvent
        args = (where.toPoint(),) if cls is QtGui.QDragEnterEvent else (where,)
        event = cls(*args, QtCore.Qt.DropAction.CopyAction, mime, QtCore.Qt.MouseButton.LeftButton,
                    QtCore.Qt.KeyboardModifier.NoModifier)
        QtWidgets.QApplication.sendEvent(viewport, event)
        assert event.isAccepted()
    assert window.adapter.to_workflow().nodes["positive"].inputs["text"] == "dropped"
