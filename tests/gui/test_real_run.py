"""The desktop app on real weights: a txt2img graph built through the canvas API runs on a tiny checkpoint in the real
single-file format and its image reaches the image panel; a run cancelled mid-sampling leaves no file and the next
run works; a checkpoint that cannot be loaded marks its node failed with the loader's message.

The fake-node cases of the same feedback are in test_run_feedback.py; here the nodes, the model layer and the worker
thread are the real ones. The checkpoint is copied once per module from the session's shared one (about 230 MB of
float32).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nodegraph.core.graph import Workflow
from nodegraph.engine.context import RunSettings
from nodegraph.engine.executor import Executor
from nodegraph.gui.run_view import STATE_LOOK

pytestmark = [
    # diffusers' schedulers hand torch tensors to numpy 2: harmless deprecation noise.
    pytest.mark.filterwarnings("ignore:__array:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::FutureWarning"),
]

CHECKPOINT = "tiny-sd1.safetensors"
SIZE = 64
#: The sampler's settings, each set through the canvas (set_value) on top of the node's defaults.
SAMPLER = {"seed": 7, "steps": 4, "cfg": 5.0, "sampler_name": "euler", "scheduler": "normal", "denoise": 1.0}
POSITIVE, NEGATIVE = "a photo of a cat sitting on a windowsill", "blurry, lowres"
#: (from node, output, to node, input) of the txt2img graph.
LINKS = [("ckpt", "CLIP", "positive", "clip"), ("ckpt", "CLIP", "negative", "clip"),
         ("ckpt", "MODEL", "sample", "model"),
         ("positive", "CONDITIONING", "sample", "positive"), ("negative", "CONDITIONING", "sample", "negative"),
         ("latent", "LATENT", "sample", "latent_image"), ("sample", "LATENT", "decode", "samples"),
         ("ckpt", "VAE", "decode", "vae"), ("decode", "IMAGE", "save", "images")]
#: The literal inputs of each node that the tests set (the sampler's come from SAMPLER).
VALUES = {"ckpt": {"ckpt_name": CHECKPOINT}, "latent": {"width": SIZE, "height": SIZE, "batch_size": 1},
          "positive": {"text": POSITIVE}, "negative": {"text": NEGATIVE}, "save": {"filename_prefix": "gui"}}
TYPES = {"ckpt": "LoadCheckpoint", "positive": "CLIPTextEncode", "negative": "CLIPTextEncode",
         "latent": "EmptyLatentImage", "sample": "UNetSampler", "decode": "VAEDecode", "save": "SaveImage"}


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """One intra-op thread for the module (the worker thread's runs included): the tiny model gains nothing from
    more, and on a busy 2-core machine OpenMP's spinning threads make loading and sampling many times slower."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def models_root(tmp_path_factory, tiny_checkpoints) -> Path:
    """A models root (ComfyUI layout) holding one tiny SD 1.x checkpoint in float32 (the session's shared file)."""
    from nodegraph.models.offline import ensure_offline

    ensure_offline()
    root = tmp_path_factory.mktemp("gui-models")
    tiny_checkpoints.write(root / "checkpoints" / CHECKPOINT, "sd1", 0)
    return root


def model_manager(root: Path):
    """A model manager over `root` on the CPU (the data folder's models/ is empty in tests)."""
    from nodegraph.models.discovery import ModelFolders
    from nodegraph.models.manager import ModelManager

    return ModelManager(ModelFolders([root]), device="cpu")


@pytest.fixture(scope="module")
def manager(models_root):
    """One model manager (and model cache) for the module's GUI runs."""
    return model_manager(models_root)


def make_window(qtbot, registry, output_dir: Path, manager):
    """A main window running on `manager`'s model folders and writing into `output_dir`."""
    from nodegraph.gui.main_window import MainWindow

    win = MainWindow(registry, settings=RunSettings(output_dir=output_dir, device="cpu",
                                                    services={"models": manager}))
    assert win.model_folders is manager.folders  # validation checks the folders the run loads from
    qtbot.addWidget(win)
    return win


@pytest.fixture
def window(qtbot, registry, tmp_path, manager):
    """The main window over the tiny checkpoint's folder, writing into the test's out/ folder."""
    return make_window(qtbot, registry, tmp_path / "out", manager)


def build_txt2img(adapter, **sampler) -> None:
    """Add the txt2img nodes with their default values, set the values the tests use, and connect the ports."""
    for index, (node_id, type_id) in enumerate(TYPES.items()):
        assert adapter.add_node(type_id, (250 * index, 0), node_id=node_id) == node_id
    for node_id, values in {**VALUES, "sample": {**SAMPLER, **sampler}}.items():
        for name, value in values.items():
            adapter.set_value(node_id, name, value)
    for link in LINKS:
        assert adapter.connect(*link), link


def core_txt2img(**sampler) -> Workflow:
    """The same graph built with the core API alone (no canvas), as the headless reference runs it."""
    wf = Workflow()
    for node_id, type_id in TYPES.items():
        wf.add_node(type_id, node_id, inputs={**VALUES, "sample": {**SAMPLER, **sampler}}.get(node_id, {}))
    for link in LINKS:
        wf.connect(*link)
    return wf


def run(qtbot, win, final: str) -> None:
    """Run the window's workflow and wait for the worker to finish; the run must end in state `final`."""
    win.run_workflow()
    qtbot.waitUntil(lambda: win.worker is None, timeout=120_000)
    result = getattr(win, "last_result", None)
    assert win.run_state == final, (win.run_state, result and (result.failed_node, result.message))


def pngs(folder: Path) -> list[Path]:
    """The PNG files under `folder`, sorted."""
    return sorted(folder.rglob("*.png"))


def pixels(path: Path | str) -> np.ndarray:
    """An image file's RGB pixels."""
    return np.asarray(Image.open(path).convert("RGB"))


def test_a_txt2img_graph_built_on_the_canvas_shows_the_same_image_as_a_headless_run(qtbot, window, registry,
                                                                                      models_root, tmp_path):
    build_txt2img(window.adapter)
    panel = window.feedback.image_panel
    assert panel.history_paths() == []
    run(qtbot, window, "finished")
    [png] = pngs(tmp_path / "out")
    assert window.feedback.nodes.states["save"] == "finished"
    assert panel.history_paths() == [str(png)] and panel.current == str(png)
    assert (panel.pixmap().width(), panel.pixmap().height()) == (SIZE, SIZE)
    shown = panel.pixmap().toImage()
    image = pixels(png)
    assert image.shape == (SIZE, SIZE, 3) and image.std() > 0  # an image, not a blank
    x, y = SIZE // 3, SIZE // 2
    assert shown.pixelColor(x, y).getRgb()[:3] == tuple(int(v) for v in image[y, x])

    settings = RunSettings(output_dir=tmp_path / "reference", device="cpu",
                           services={"models": model_manager(models_root)})
    result = Executor(registry).run(core_txt2img(), settings=settings)
    assert result.ok, (result.status, result.message)
    [reference] = pngs(tmp_path / "reference")
    np.testing.assert_array_equal(image, pixels(reference))


def test_cancelling_mid_sampling_stops_early_writes_nothing_and_the_next_run_works(qtbot, window, tmp_path):
    total = 200
    build_txt2img(window.adapter, steps=total)
    bar = window.feedback.progress
    steps: list[int] = []
    bar.valueChanged.connect(steps.append)
    window.run_workflow()
    qtbot.waitUntil(lambda: bar.maximum() == total and bar.value() >= 2, timeout=120_000)
    window.cancel_run()
    assert window.run_state == "cancelling"
    qtbot.waitUntil(lambda: window.worker is None, timeout=120_000)
    assert window.run_state == "cancelled"
    assert 2 <= max(steps) < total
    assert window.feedback.nodes.states["sample"] == "cancelled"
    assert "decode" not in window.feedback.nodes.states
    assert pngs(tmp_path / "out") == [] and window.feedback.image_panel.history_paths() == []

    window.adapter.set_value("sample", "steps", 3)
    run(qtbot, window, "finished")
    assert bar.maximum() == 3 and bar.value() == 3
    [png] = pngs(tmp_path / "out")
    panel = window.feedback.image_panel
    assert panel.history_paths() == [str(png)]
    assert (panel.pixmap().width(), panel.pixmap().height()) == (SIZE, SIZE)


def test_a_checkpoint_that_cannot_be_loaded_marks_its_node_failed_with_the_message(qtbot, registry, tmp_path):
    root = tmp_path / "broken-models"
    (root / "checkpoints").mkdir(parents=True)
    (root / "checkpoints" / "broken.safetensors").write_bytes(b"this is not a safetensors file " * 64)
    win = make_window(qtbot, registry, tmp_path / "out", model_manager(root))
    build_txt2img(win.adapter)
    win.adapter.set_value("ckpt", "ckpt_name", "broken.safetensors")
    run(qtbot, win, "failed")

    result = win.last_result
    assert result.failed_node == "ckpt" and "broken.safetensors" in result.message
    feedback = win.feedback
    assert feedback.nodes.states["ckpt"] == "failed"
    assert all(feedback.nodes.states.get(n) != "finished" for n in ("sample", "decode", "save"))
    view = win.adapter.view_node("ckpt")
    assert tuple(view.view.color) == STATE_LOOK["failed"][0]
    tooltip = view.view.toolTip()
    assert "broken.safetensors" in tooltip and "Traceback" not in tooltip
    assert feedback.nodes.badge_text("ckpt") == "failed"
    [message] = feedback.problems.messages()
    assert "'ckpt' failed" in message and "broken.safetensors" in message
    assert pngs(tmp_path / "out") == []
    win.adapter.view_node("save").set_selected(True)
    feedback.problems._on_clicked(feedback.problems.item(0))
    assert [n.id for n in win.adapter.graph.selected_nodes()] == [view.id]


def test_a_lora_for_another_model_line_is_listed_before_anything_runs(qtbot, registry, tmp_path, models_root):
    from nodegraph.models.synthetic import write_lora

    loras = [write_lora(models_root / "loras" / "sdxl-style.safetensors", "sdxl-base"),
             write_lora(models_root / "loras" / "sd1-style.safetensors", "sd1")]
    try:
        win = make_window(qtbot, registry, tmp_path / "out", model_manager(models_root))
        build_txt2img(win.adapter)
        win.adapter.add_node("LoadLoRA", (0, 300), node_id="lora", inputs={"lora_name": "sdxl-style.safetensors",
                                                                           "strength_model": 1.0,
                                                                           "strength_clip": 1.0})
        assert win.adapter.connect("ckpt", "MODEL", "lora", "model")
        assert win.adapter.connect("ckpt", "CLIP", "lora", "clip")
        assert win.adapter.connect("lora", "MODEL", "sample", "model")  # replaces ckpt → sample
        run(qtbot, win, "invalid")
        [message] = win.feedback.problems.messages()
        assert "lora" in message and "lora_name" in message and "SDXL" in message, message
        assert win.last_result.executed == [] and pngs(tmp_path / "out") == []
        assert "ckpt" not in win.feedback.nodes.states  # nothing ran, not even the loader

        win.adapter.set_value("lora", "lora_name", "sd1-style.safetensors")  # the right model line runs
        run(qtbot, win, "finished")
        assert len(pngs(tmp_path / "out")) == 1
        # no problem left, only what the sampler says about the LoRA it applied (the prompts do not use its CLIP)
        assert win.feedback.problems.messages() == [
            "info: node 'lora' (LoRA): sd1-style.safetensors: UNet 64/64 layers matched"]
    finally:
        for path in loras:
            path.unlink()


def test_the_lora_list_puts_files_for_the_checkpoints_model_line_first(qtbot, registry, tmp_path, models_root):
    import subprocess
    import sys

    from PySide6 import QtCore

    from nodegraph.models.synthetic import write_lora

    loras = [write_lora(models_root / "loras" / "b-sdxl.safetensors", "sdxl-base"),
             write_lora(models_root / "loras" / "c-sd1.safetensors", "sd1")]
    (models_root / "loras" / "a-unknown.safetensors").write_bytes(b"not readable")  # unknown line: kept first
    loras.append(models_root / "loras" / "a-unknown.safetensors")
    try:
        win = make_window(qtbot, registry, tmp_path / "out", model_manager(models_root))
        build_txt2img(win.adapter)
        win.adapter.add_node("LoadLoRA", (0, 300), node_id="lora")
        assert win.adapter.connect("ckpt", "MODEL", "lora", "model")
        win.properties.show_node("lora")
        combo = win.properties.editors["lora_name"]
        items = [combo.itemText(i) for i in range(combo.count())]
        assert items == ["a-unknown.safetensors", "c-sd1.safetensors", "", "b-sdxl.safetensors"]
        assert "SDXL" in combo.itemData(3, QtCore.Qt.ItemDataRole.ToolTipRole)
        win.adapter.disconnect("lora", "model")  # no checkpoint upstream: every file in name order
        win.properties.show_node("lora")
        combo = win.properties.editors["lora_name"]
        assert [combo.itemText(i) for i in range(combo.count())] == sorted(p.name for p in loras)

        check = ("import sys; from pathlib import Path; from nodegraph.models.preflight import model_line_of; "
                 f"line = model_line_of(Path({str(loras[0])!r})); "
                 "assert 'torch' not in sys.modules, 'torch imported'; print(line)")
        done = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True,
                              cwd=Path(__file__).resolve().parents[2])
        assert done.returncode == 0 and done.stdout.strip() == "sdxl", done.stderr
    finally:
        for path in loras:
            path.unlink()
