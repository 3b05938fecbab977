"""The status bar's device and memory labels: honest before torch loads, the real device and VRAM afterwards, and
never importing torch on the UI thread."""

import json
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest

from nodegraph.engine.context import RunSettings
from nodegraph.gui.status_bar import StatusInfo, device_text, format_bytes

ROOT = Path(__file__).resolve().parents[2]
GB = 1024**3


class FakeModels:
    """A models service with the ModelManager's public face: the device and dtype it runs in."""

    def __init__(self, device, dtype, requested="auto"):
        self.device = device
        self.dtype = dtype
        self.requested_device = requested


def fake_torch(initialised=True, reserved=3.4 * GB, total=139.8 * GB, name="NVIDIA H200"):
    """A stand-in for an imported torch with CUDA in use (only what the status bar reads)."""
    cuda = types.SimpleNamespace(
        is_initialized=lambda: initialised,
        current_device=lambda: 0,
        memory_reserved=lambda index=None: int(reserved),
        get_device_properties=lambda index: types.SimpleNamespace(total_memory=int(total)),
        get_device_name=lambda device=None: name,
    )
    return types.SimpleNamespace(cuda=cuda, __name__="torch")


def cuda_device(index=0):
    return types.SimpleNamespace(type="cuda", index=index)


def test_before_the_first_run_the_device_is_auto_and_ram_is_shown(window, monkeypatch):
    monkeypatch.delitem(sys.modules, "torch", raising=False)
    info = StatusInfo(window)
    assert info.device_label.text() == "Device: auto — chosen at the first run"
    text = info.memory_label.text()
    assert text.startswith("RAM ") and text.endswith(("MB", "GB")) and "VRAM" not in text
    bar = window.statusBar()
    assert bar.isAncestorOf(info.device_label) and bar.isAncestorOf(info.memory_label)
    assert window.state_label.text() == "Ready"  # the run state label is untouched


def test_a_device_not_yet_chosen_is_not_picked_by_the_status_bar(window, monkeypatch):
    """Torch may be loaded while the ModelManager has not picked its device: reading .device would pick it here."""
    from nodegraph.models.manager import ModelManager

    manager = ModelManager(device="cpu")
    monkeypatch.setitem(sys.modules, "torch", fake_torch(initialised=False))
    window._settings = RunSettings(services={"models": manager})
    info = StatusInfo(window)
    assert info.device_label.text() == "Device: cpu — chosen at the first run"
    assert not manager.device_chosen


def test_after_a_run_on_cuda_the_device_and_vram_are_shown(window, monkeypatch):
    window._settings = RunSettings(services={"models": FakeModels(cuda_device(), "torch.float16")})
    monkeypatch.delitem(sys.modules, "torch", raising=False)
    info = StatusInfo(window)
    assert info.device_label.text() == "Device: auto — chosen at the first run"  # torch not loaded yet
    monkeypatch.setitem(sys.modules, "torch", fake_torch())
    info.refresh()
    assert info.device_label.text() == "CUDA: NVIDIA H200 (fp16)"
    ram, vram = info.memory_label.text().split(" · ")
    assert ram.startswith("RAM ") and vram == "VRAM 3.4 / 140 GB"


def test_cpu_runs_show_no_vram(window, monkeypatch):
    window._settings = RunSettings(services={"models": FakeModels(types.SimpleNamespace(type="cpu", index=None),
                                                                   "torch.float32")})
    monkeypatch.setitem(sys.modules, "torch", fake_torch(initialised=False))
    info = StatusInfo(window)
    assert info.device_label.text() == "CPU (fp32)"
    assert "VRAM" not in info.memory_label.text()


def test_the_timer_keeps_refreshing(window, qtbot, monkeypatch):
    monkeypatch.delitem(sys.modules, "torch", raising=False)
    info = StatusInfo(window)
    assert info.timer.isActive() and 1000 <= info.timer.interval() <= 5000
    window._settings = RunSettings(services={"models": FakeModels(cuda_device(), "torch.bfloat16")})
    monkeypatch.setitem(sys.modules, "torch", fake_torch(name="RTX 4090"))
    qtbot.waitUntil(lambda: info.device_label.text() == "CUDA: RTX 4090 (bf16)", timeout=10000)


@pytest.mark.parametrize(("count", "text"), [(312 * 1024**2, "312 MB"), (1.24 * GB, "1.2 GB"), (139.4 * GB, "139 GB")])
def test_memory_sizes_read_naturally(count, text):
    assert format_bytes(count) == text


def test_device_texts():
    assert device_text(types.SimpleNamespace(type="mps", index=None), "torch.float16") == "MPS (fp16)"
    assert device_text("cuda:1", "torch.float16", fake_torch(name="RTX 3060")) == "CUDA: RTX 3060 (fp16)"


def test_a_status_bar_on_a_fresh_window_does_not_import_torch(tmp_path):
    code = (
        "import json, os, sys\n"
        "os.environ['QT_QPA_PLATFORM'] = 'offscreen'\n"
        "from PySide6 import QtWidgets\n"
        "app = QtWidgets.QApplication([])\n"
        "from nodegraph.gui.main_window import MainWindow\n"
        "from nodegraph.gui.status_bar import StatusInfo\n"
        "from nodegraph.packs import create_registry\n"
        "window = MainWindow(create_registry(user_packs=False))\n"
        "info = StatusInfo(window)\n"
        "info.refresh()\n"
        "print(json.dumps({'torch': 'torch' in sys.modules, 'device': info.device_label.text(),\n"
        "                  'memory': info.memory_label.text()}))\n"
    )
    env = {**os.environ, "NODEGRAPH_HOME": str(tmp_path / "home")}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["torch"] is False
    assert result["device"] == "Device: auto — chosen at the first run"
    assert result["memory"].startswith("RAM ")


def test_the_app_shows_the_device_of_the_manager_its_runs_use(qtbot, registry, tmp_path):
    """Without overriding run settings the window keeps its runs' model manager itself (made from the app settings)."""
    import torch  # noqa: F401 (loaded, as after a first run)

    from nodegraph.gui.main_window import MainWindow
    from nodegraph.settings import AppSettings

    win = MainWindow(registry, app_settings=AppSettings(device="cpu", output_dir=str(tmp_path / "out")))
    qtbot.addWidget(win)
    assert win.status_info.device_label.text() == "Device: cpu — chosen at the first run"
    manager = win._run_settings().services["models"]  # what the worker does at the start of a run
    win.status_info.refresh()
    assert win.status_info.device_label.text() == "Device: cpu — chosen at the first run"  # not picked yet
    assert str(manager.device) == "cpu"  # the first model use picks it
    win.status_info.refresh()
    assert win.status_info.device_label.text() == "CPU (fp32)"


def test_a_gpu_left_unused_is_said_in_the_status_bar(window, monkeypatch):
    """A CPU-only build on a machine with an NVIDIA GPU (or a CUDA build that cannot use it) never looks like a
    normal run: the label says the GPU is not used, and its tooltip says why."""
    models = FakeModels(types.SimpleNamespace(type="cpu", index=None), "torch.float32")
    models.device_note = ("this torch is a CPU-only build, so NVIDIA RTX 4090 is not used: install nodegraph's CUDA "
                          "build")
    window._settings = RunSettings(services={"models": models})
    monkeypatch.setitem(sys.modules, "torch", fake_torch(initialised=False))
    info = StatusInfo(window)
    assert info.device_label.text() == "CPU (fp32) — GPU not used"
    assert info.device_label.toolTip().startswith("This torch is a CPU-only build, so NVIDIA RTX 4090 is not used")
    assert "color" in info.device_label.styleSheet()
    models.device_note = ""
    info.refresh()
    assert info.device_label.text() == "CPU (fp32)" and info.device_label.styleSheet() == ""
