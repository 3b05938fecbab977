"""The main window: files, title, runs on a worker thread, and a screenshot artifact."""

import json
import os
import subprocess
import sys
from pathlib import Path

from nodegraph.core.workflow_io import load
from nodegraph.engine.context import RunSettings
from nodegraph.gui.main_window import MainWindow
from nodegraph.packs import create_registry

ROOT = Path(__file__).resolve().parents[2]
STARTER = ROOT / "resources" / "workflows" / "txt2img.json"


def test_save_then_open_round_trips_the_core_graph(window, tmp_path):
    assert window.open_file(STARTER)
    window.adapter.set_value("sample", "steps", 30)
    window.adapter.move_node("save", (1300.5, 10))
    assert window.windowTitle() == "nodegraph — txt2img.json *"
    target = tmp_path / "mine.json"
    assert window.save_as(target)
    assert window.windowTitle() == "nodegraph — mine.json"
    edited = window.adapter.to_workflow()
    window.new_workflow()
    assert len(window.adapter.workflow) == 0
    assert window.open_file(target)
    assert window.adapter.to_workflow() == edited == load(target)
    assert not list(tmp_path.glob("*.tmp*"))


def test_a_run_completes_on_the_worker_thread_and_updates_the_status(qtbot, fake_pack, tmp_path):
    registry = create_registry([fake_pack], user_packs=False)
    win = MainWindow(registry, settings=RunSettings(output_dir=tmp_path / "out"))
    qtbot.addWidget(win)
    adapter = win.adapter
    adapter.add_node("Number", (0, 0), node_id="number", inputs={"value": 3})
    adapter.add_node("Scale", (200, 0), node_id="scale", inputs={"factor": 4})
    adapter.add_node("Collect", (400, 0), node_id="collect", inputs={})
    assert adapter.connect("number", "VALUE", "scale", "value")
    assert adapter.connect("scale", "VALUE", "collect", "value")
    seen = []
    win.run_workflow()
    assert win.run_state == "running"
    win.worker.event.connect(seen.append)
    qtbot.waitUntil(lambda: win.run_state == "finished", timeout=10000)
    assert win.last_result.outputs["collect"]["VALUE"] == 12
    assert win.state_label.text().startswith("Finished")
    assert win.run_action.isEnabled() and not win.cancel_action.isEnabled()


def test_screenshot_of_the_main_window_with_the_starter(window):
    from PySide6 import QtWidgets

    from nodegraph.gui.theme import apply_theme

    apply_theme(QtWidgets.QApplication.instance())  # as run_app does: the screenshot shows what users see
    assert window.open_file(STARTER)
    window.show()  # framed on show
    out = ROOT / "test-artifacts"
    out.mkdir(exist_ok=True)
    path = out / "main_window_txt2img.png"
    assert window.grab().save(str(path))
    assert path.stat().st_size > 10_000


def test_the_cli_starts_the_window_and_opens_a_file(tmp_path):
    target = tmp_path / "wf.json"
    target.write_text(STARTER.read_text(encoding="utf-8"), encoding="utf-8")
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", NODEGRAPH_GUI_QUIT_AFTER_MS="300",
               NODEGRAPH_HOME=str(tmp_path / "home"))
    code = (
        "import sys\nfrom nodegraph.cli import main\nrc = main(sys.argv[1:])\n"
        "import json; print(json.dumps({'rc': rc, 'torch': 'torch' in sys.modules}))\n")
    for args in (["gui", str(target)], [str(target)], []):
        done = subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout.strip().splitlines()[-1]) == {"rc": 0, "torch": False}
