"""Importing other tools' work in the window: File ▸ Import…, drops, pasted text, and placeholder nodes for ComfyUI
nodes without a nodegraph equivalent."""

import json
from pathlib import Path

import pytest
from PIL import Image, PngImagePlugin
from PySide6 import QtCore, QtGui, QtWidgets

from nodegraph.core.graph import Link
from nodegraph.core.workflow_io import dumps, load
from nodegraph.engine.context import RunSettings
from nodegraph.gui.drops import handle_drop
from nodegraph.gui.main_window import IMPORT_FILTER, MainWindow
from nodegraph.gui.placeholder import PLACEHOLDER_COLOUR, PlaceholderNode

ROOT = Path(__file__).resolve().parents[2]
STARTER = ROOT / "resources" / "workflows" / "txt2img.json"
CORPUS = ROOT.parent / "shared" / "corpus"
INFOTEXT = "a cat\nNegative prompt: blurry\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1, Size: 512x512"


@pytest.fixture
def window(qtbot, registry, tmp_path, nodegraph_home):
    win = MainWindow(registry, settings=RunSettings(output_dir=tmp_path / "out"))
    qtbot.addWidget(win)
    return win


def corpus(*parts: str) -> Path:
    path = CORPUS.joinpath(*parts)
    if not path.is_file():
        pytest.skip(f"the shared sample corpus is not here ({path} is absent)")
    return path


def freeu_ui() -> dict:
    """A ComfyUI UI workflow: Load Checkpoint → FreeU_V2 (no nodegraph equivalent) → KSampler."""
    def port(name, kind, link=None, links=None):
        return {"name": name, "type": kind, **({"link": link} if links is None else {"links": links})}

    nodes = [
        {"id": 1, "type": "CheckpointLoaderSimple", "pos": [0, 0], "size": [315, 98], "mode": 0, "inputs": [],
         "outputs": [port("MODEL", "MODEL", links=[1]), port("CLIP", "CLIP", links=[]), port("VAE", "VAE", links=[])],
         "widgets_values": ["v1-5-pruned-emaonly.safetensors"]},
        {"id": 2, "type": "FreeU_V2", "pos": [400, 0], "size": [315, 130], "mode": 0,
         "inputs": [port("model", "MODEL", link=1)], "outputs": [port("MODEL", "MODEL", links=[2])],
         "widgets_values": [1.3, 1.4, 0.9, 0.2]},
        {"id": 3, "type": "KSampler", "pos": [800, 0], "size": [315, 262], "mode": 0,
         "inputs": [port("model", "MODEL", link=2), port("positive", "CONDITIONING"),
                    port("negative", "CONDITIONING"), port("latent_image", "LATENT")],
         "outputs": [port("LATENT", "LATENT", links=[])],
         "widgets_values": [42, "fixed", 20, 7.5, "euler", "normal", 1.0]},
    ]
    links = [[1, 1, 0, 2, 0, "MODEL"], [2, 2, 0, 3, 0, "MODEL"]]
    return {"last_node_id": 3, "last_link_id": 2, "nodes": nodes, "links": links, "groups": [], "version": 0.4}


def write_freeu(tmp_path: Path) -> Path:
    path = tmp_path / "freeu.json"
    path.write_text(json.dumps(freeu_ui()), encoding="utf-8")
    return path


def a1111_png(tmp_path: Path, name: str = "a1111.png") -> Path:
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", INFOTEXT)
    path = tmp_path / name
    Image.new("RGB", (8, 8)).save(path, pnginfo=info)
    return path


def a1111_jpeg(tmp_path: Path) -> Path:
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0x9286] = b"UNICODE\0" + INFOTEXT.encode("utf-16-be")  # the Exif UserComment
    path = tmp_path / "a1111.jpg"
    Image.new("RGB", (16, 16)).save(path, exif=exif.tobytes())
    return path


def edited_starter(window, tmp_path: Path) -> str:
    """The starter saved under tmp_path and edited (unsaved); returns the edited document."""
    assert window.open_file(STARTER) and window.save_as(tmp_path / "mine.json")
    window.adapter.set_value("sample", "steps", 33)
    assert window.modified
    return dumps(window.adapter.to_workflow())


def no_questions(window, monkeypatch) -> list:
    """Record save questions and error messages (the test asserts there were none); a question is answered
    "discard", so closing the window at the end of the test does not block or raise."""
    asked: list = []
    monkeypatch.setattr(window, "ask_save_changes", lambda: asked.append("save?") or "discard")
    monkeypatch.setattr(window, "show_import_error", asked.append)
    return asked


def answering(window, monkeypatch, answers: list) -> None:
    """Answer save questions from `answers`, then "discard" (the window closes at the end of the test)."""
    monkeypatch.setattr(window, "ask_save_changes", lambda: answers.pop(0) if answers else "discard")


# --- File ▸ Import… -------------------------------------------------------------------------------------------------
def test_import_menu_opens_an_unsaved_untitled_document(window, tmp_path, monkeypatch):
    source = write_freeu(tmp_path)
    original = source.read_bytes()
    asked = []
    monkeypatch.setattr(QtWidgets.QFileDialog, "getOpenFileName",
                        lambda *args: asked.append(args) or (str(source), ""))
    file_menu = window.menuBar().actions()[0].menu()
    texts = [a.text() for a in file_menu.actions()]
    assert texts.index("&Import…") == texts.index("Open &Recent") + 1
    assert window.import_action.shortcut().toString() == "Ctrl+I"
    window.import_action.trigger()
    assert asked and asked[0][-1] == IMPORT_FILTER
    assert window.path is None and window.modified
    assert window.windowTitle() == "nodegraph — freeu.json (imported) *"
    assert {n.type for n in window.adapter.workflow} == {"LoadCheckpoint", "FreeU_V2", "UNetSampler"}
    assert "Imported freeu.json (ComfyUI workflow (UI format))" in window.state_label.text()
    assert "see Problems" in window.state_label.text()
    problems = window.feedback.problems.messages()
    assert any("FreeU_V2" in m and "placeholder" in m for m in problems)
    assert not window.feedback.problems_dock.isHidden()

    # Save asks for a file name: the source is never overwritten
    saved_as = []
    monkeypatch.setattr(window, "_save_as_dialog", lambda: saved_as.append(1) or False)
    assert not window.save() and saved_as == [1]
    assert source.read_bytes() == original
    target = tmp_path / "converted.json"
    assert window.save_as(target)
    assert window.windowTitle() == "nodegraph — converted.json"
    assert source.read_bytes() == original


def test_import_offers_to_save_unsaved_work_before_the_dialog(window, tmp_path, monkeypatch):
    edited = edited_starter(window, tmp_path)
    source = write_freeu(tmp_path)
    answers, dialogs = [], []
    answering(window, monkeypatch, answers)
    monkeypatch.setattr(QtWidgets.QFileDialog, "getOpenFileName",
                        lambda *args: dialogs.append(1) or (str(source), ""))

    answers[:] = ["cancel"]
    window.import_action.trigger()
    assert dialogs == [] and dumps(window.adapter.to_workflow()) == edited and window.modified

    answers[:] = ["save"]
    window.import_action.trigger()
    assert answers == [] and dialogs == [1]
    assert dumps(load(tmp_path / "mine.json")) == edited  # saved before being replaced
    assert "FreeU_V2" in {n.type for n in window.adapter.workflow} and window.path is None


def test_an_import_error_shows_one_message_and_keeps_the_document(window, tmp_path, monkeypatch):
    edited = edited_starter(window, tmp_path)
    bad = tmp_path / "notes.txt"
    bad.write_text("just some words, nothing to import", encoding="utf-8")
    shown = []
    monkeypatch.setattr(window, "show_import_error", shown.append)
    assert not window.import_file(bad)
    assert len(shown) == 1 and str(bad) in shown[0] and "Traceback" not in shown[0]
    assert dumps(window.adapter.to_workflow()) == edited
    assert window.path == tmp_path / "mine.json" and window.windowTitle() == "nodegraph — mine.json *"


def test_the_error_message_names_the_file_in_the_status_bar_offscreen(window, tmp_path):
    broken = tmp_path / "broken.json"
    broken.write_text("{not json", encoding="utf-8")
    assert not window.import_file(broken)  # offscreen: no box to block on, the status bar says it
    assert window.state_label.text().startswith("Could not import: ") and str(broken) in window.state_label.text()


# --- drops ----------------------------------------------------------------------------------------------------------
def test_dropping_a_comfyui_json_imports_it(window, tmp_path):
    assert handle_drop(window, [write_freeu(tmp_path)]) == []
    assert window.path is None and window.modified and "(imported)" in window.windowTitle()
    assert "FreeU_V2" in {n.type for n in window.adapter.workflow}


def test_dropping_an_a1111_png_or_jpeg_imports_it(window, tmp_path):
    for path in (a1111_png(tmp_path), a1111_jpeg(tmp_path)):
        window.new_workflow()
        assert handle_drop(window, [path]) == []
        workflow = window.adapter.workflow
        assert window.windowTitle() == f"nodegraph — {path.name} (imported) *"
        [prompt] = [n for n in workflow if n.type == "CLIPTextEncode" and n.inputs.get("text") == "a cat"]
        assert prompt.id in window.adapter._views  # shown on the canvas
        assert "AUTOMATIC1111" in window.state_label.text()


def test_dropping_an_image_without_any_workflow_is_reported(window, tmp_path):
    plain = tmp_path / "plain.png"
    Image.new("RGB", (4, 4)).save(plain)
    assert window.open_file(STARTER)
    before = dumps(window.adapter.to_workflow())
    [problem] = handle_drop(window, [plain])
    assert "plain.png" in problem and "carries no workflow" in problem
    assert dumps(window.adapter.to_workflow()) == before and window.path == STARTER


def test_a_real_drop_of_a_comfyui_png_asks_about_unsaved_work_first(window, qtbot, tmp_path, monkeypatch):
    png = corpus("png", "comfy_lora_lora.png")
    edited = edited_starter(window, tmp_path)
    answers = ["cancel", "discard"]
    answering(window, monkeypatch, answers)
    window.show()
    viewport = window.adapter.graph.viewer().viewport()

    def drop():
        mime = QtCore.QMimeData()
        mime.setUrls([QtCore.QUrl.fromLocalFile(str(png))])
        where = QtCore.QPointF(viewport.rect().center())
        buttons = (QtCore.Qt.DropAction.CopyAction, mime, QtCore.Qt.MouseButton.LeftButton,
                   QtCore.Qt.KeyboardModifier.NoModifier)
        for event in (QtGui.QDragEnterEvent(where.toPoint(), *buttons), QtGui.QDropEvent(where, *buttons)):
            QtWidgets.QApplication.sendEvent(viewport, event)
            assert event.isAccepted()

    drop()  # cancelled: nothing replaced
    assert dumps(window.adapter.to_workflow()) == edited
    drop()
    assert answers == [] and window.windowTitle() == "nodegraph — comfy_lora_lora.png (imported) *"
    assert any(n.type == "LoadLoRA" for n in window.adapter.workflow)


def test_the_shared_corpus_imports_by_drop(window):
    paths = sorted(corpus("comfyui", "SOURCES.md").parent.glob("*.json")) + sorted(
        (CORPUS / "png").glob("*.png"))
    for path in paths:
        assert handle_drop(window, [path]) == [], path
        assert window.path is None and len(window.adapter._views) == len(window.adapter.workflow.nodes), path


# --- paste ------------------------------------------------------------------------------------------------------
def paste_text(window, text: str) -> list[str]:
    QtWidgets.QApplication.clipboard().setText(text)
    return window.edit_actions.paste()


def test_pasting_infotext_imports_it(window, monkeypatch):
    assert window.open_file(STARTER)
    asked = no_questions(window, monkeypatch)  # nothing unsaved: no question
    new = paste_text(window, INFOTEXT)
    assert sorted(new) == sorted(window.adapter.workflow.nodes)
    assert window.windowTitle() == "nodegraph — pasted text (imported) *"
    assert window.path is None
    assert any(n.inputs.get("text") == "a cat" for n in window.adapter.workflow)
    assert asked == []


def test_pasting_comfyui_json_imports_it_after_asking(window, tmp_path, monkeypatch):
    edited = edited_starter(window, tmp_path)
    answers = []
    answering(window, monkeypatch, answers)
    answers[:] = ["cancel"]
    assert paste_text(window, json.dumps(freeu_ui())) == []
    assert dumps(window.adapter.to_workflow()) == edited
    answers[:] = ["discard"]
    assert paste_text(window, json.dumps(freeu_ui()))
    assert "FreeU_V2" in {n.type for n in window.adapter.workflow}


@pytest.mark.parametrize("text", ["hello world", "", "  \n", "{not json", "[1, 2, 3]", "Note: steps 20"])
def test_pasting_random_text_does_nothing_silently(window, tmp_path, monkeypatch, text):
    edited = edited_starter(window, tmp_path)
    asked = no_questions(window, monkeypatch)
    status = window.state_label.text()
    assert paste_text(window, text) == []
    assert dumps(window.adapter.to_workflow()) == edited and window.path == tmp_path / "mine.json"
    assert window.state_label.text() == status
    assert asked == []


def test_copy_and_paste_of_nodes_still_pastes_nodes(window, monkeypatch):
    assert window.open_file(STARTER)
    asked = no_questions(window, monkeypatch)
    before = set(window.adapter.workflow.nodes)
    window.adapter.graph.scene().clearSelection()
    window.adapter.view_node("sample").view.selected = True
    assert window.edit_actions.copy()
    [new] = window.edit_actions.paste()
    assert new not in before and set(window.adapter.workflow.nodes) == before | {new}
    assert window.path == STARTER  # an edit of the same document, not an import
    assert asked == []


def test_ctrl_v_on_the_canvas_imports_infotext(window, qtbot, monkeypatch):
    window.show()
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow)
    asked = no_questions(window, monkeypatch)
    QtWidgets.QApplication.clipboard().setText(INFOTEXT)
    viewer = window.adapter.graph.viewer()
    viewer.setFocus()
    qtbot.keyClick(viewer, QtCore.Qt.Key.Key_V, QtCore.Qt.KeyboardModifier.ControlModifier)
    assert window.windowTitle() == "nodegraph — pasted text (imported) *"
    assert asked == []


# --- placeholders ---------------------------------------------------------------------------------------------------
def imported_freeu(window, tmp_path):
    assert window.import_file(write_freeu(tmp_path))
    return window.adapter.view_node("2")


def test_a_placeholder_is_drawn_with_its_ports_links_colour_and_tooltip(window, tmp_path):
    view = imported_freeu(window, tmp_path)
    assert isinstance(view, PlaceholderNode)
    assert view.name() == "FreeU_V2 (missing)"
    assert tuple(view.view.color) == PLACEHOLDER_COLOUR
    assert tuple(window.adapter.view_node("1").view.color) != PLACEHOLDER_COLOUR
    assert "ComfyUI node type FreeU_V2 has no nodegraph equivalent; it is kept with its values and links" in (
        view.view.toolTip())
    assert "1.3" in view.view.toolTip()
    assert list(view.inputs()) == ["model"] and list(view.outputs()) == ["MODEL"]
    [source] = view.inputs()["model"].connected_ports()
    [target] = view.outputs()["MODEL"].connected_ports()
    assert (source.node().id, source.name()) == (window.adapter.view_node("1").id, "MODEL")
    assert (target.node().id, target.name()) == (window.adapter.view_node("3").id, "model")
    assert not view.view.widgets  # read-only: no widgets to edit its values
    with pytest.raises(ValueError):
        window.adapter.set_value("2", "b1", 2.0)


def test_a_placeholder_refuses_new_links(window, tmp_path):
    imported_freeu(window, tmp_path)
    adapter = window.adapter
    links = list(adapter.workflow.links)
    assert not adapter.connect("1", "MODEL", "2", "model")
    assert not adapter.connect("2", "MODEL", "3", "model")
    assert adapter.workflow.links == links


def test_a_placeholder_moves_saves_reloads_and_undoes_like_any_node(window, tmp_path):
    imported_freeu(window, tmp_path)
    adapter = window.adapter
    kept = dict(adapter.workflow.node("2").extra["comfyui"])
    assert kept["widgets_values"] == [1.3, 1.4, 0.9, 0.2] and kept["inputs"] == ["model"]
    adapter.move_node("2", (420.5, 60))
    assert adapter.workflow.node("2").ui["pos"] == [420.5, 60]
    adapter.undo()
    assert adapter.workflow.node("2").ui["pos"] == [400, 0]
    adapter.redo()

    target = tmp_path / "saved.json"
    assert window.save_as(target)
    assert window.open_file(target)
    node = window.adapter.workflow.node("2")
    assert node.type == "FreeU_V2" and node.extra["comfyui"] == kept and node.ui["pos"] == [420.5, 60]
    assert isinstance(window.adapter.view_node("2"), PlaceholderNode)
    assert Link("1", "MODEL", "2", "model") in window.adapter.workflow.links

    adapter = window.adapter
    adapter.remove_nodes(["2"])
    assert "2" not in adapter.workflow and not any("2" in (lk.from_node, lk.to_node) for lk in adapter.workflow.links)
    adapter.undo()
    assert adapter.workflow.node("2").extra["comfyui"] == kept
    assert Link("1", "MODEL", "2", "model") in adapter.workflow.links
    assert Link("2", "MODEL", "3", "model") in adapter.workflow.links
    assert dumps(adapter.to_workflow()) == dumps(load(target))


def test_a_placeholder_from_the_api_form_takes_its_ports_from_its_links(window):
    prompt = {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "a.safetensors"}},
        "2": {"class_type": "FreeU_V2", "inputs": {"model": ["1", 0], "b1": 1.3}},
        "3": {"class_type": "ModelSamplingDiscrete", "inputs": {"model": ["2", 0], "sampling": "eps"}},
    }
    QtWidgets.QApplication.clipboard().setText(json.dumps(prompt))
    assert window.edit_actions.paste()
    freeu, sampling = window.adapter.view_node("2"), window.adapter.view_node("3")
    assert list(freeu.inputs()) == ["model"] and len(freeu.outputs()) == 1
    assert sampling.name() == "ModelSamplingDiscrete (missing)"
    [(out_name, port)] = freeu.outputs().items()
    assert [p.node().id for p in port.connected_ports()] == [sampling.id]


def test_screenshot_shows_the_placeholder(window, tmp_path):
    from nodegraph.gui.theme import apply_theme

    apply_theme(QtWidgets.QApplication.instance())
    view = imported_freeu(window, tmp_path).view
    window.resize(1400, 800)
    window.show()
    QtWidgets.QApplication.processEvents()
    viewer = window.adapter.graph.viewer()
    assert view.isVisible() and view.scene() is viewer.scene()
    seen = viewer.mapToScene(viewer.viewport().rect()).boundingRect()
    assert seen.contains(view.sceneBoundingRect())
    shot = window.grab()
    path = tmp_path / "import_placeholder.png"
    assert shot.save(str(path)) and path.stat().st_size > 5_000
    # the placeholder's body is dark red on screen (sampled low on its left, clear of title, ports and text)
    rect = view.sceneBoundingRect()
    spot = viewer.mapFromScene(QtCore.QPointF(rect.left() + 12, rect.bottom() - 4))
    at = viewer.viewport().mapTo(window, spot)
    colour = shot.toImage().pixelColor(at.x() * shot.devicePixelRatio(), at.y() * shot.devicePixelRatio())
    assert colour.red() > 2 * colour.green() and colour.red() > 2 * colour.blue(), colour.name()
