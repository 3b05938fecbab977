"""The status bar's permanent widgets: the device models run on, and this process's memory (RAM, and VRAM once CUDA
is in use).

Torch is imported lazily by the model layer on the worker thread at the first run; until then the device is only
"auto". The refresh never imports torch and never touches files: it reads torch only when something else has already
loaded it (``sys.modules``), so the UI thread never waits for it.
"""

from __future__ import annotations

import contextlib
import sys
from typing import Any

from PySide6 import QtCore, QtWidgets

#: How often the labels are refreshed, in milliseconds.
REFRESH_MS = 2000

#: Short names of the dtypes models run in.
DTYPE_NAMES = {"float16": "fp16", "bfloat16": "bf16", "float32": "fp32", "float64": "fp64"}

GB = 1024**3

#: The device label's colour when a GPU is left unused.
WARNING_COLOUR = "#e5a50a"


def format_bytes(count: float) -> str:
    """A memory size as people read it: '312 MB', '1.2 GB', '139 GB'."""
    if count < GB:
        return f"{count / 1024**2:.0f} MB"
    return f"{count / GB:.1f} GB" if count < 100 * GB else f"{count / GB:.0f} GB"


def loaded_torch() -> Any:
    """The torch module if something already imported it, else None (never imports it)."""
    return sys.modules.get("torch")


def chosen_device(models: Any) -> tuple[Any, Any] | None:
    """The (device, dtype) the model service runs on, or None while it is not chosen yet.

    The ModelManager picks its device on first use (reading ``.device`` would pick it here, on the UI thread), so
    ``device_chosen`` False means "not chosen yet"; other services (tests' fakes) expose ``.device`` and ``.dtype``.
    """
    if models is None or loaded_torch() is None or not getattr(models, "device_chosen", True):
        return None
    try:
        return models.device, models.dtype
    except Exception:  # a device that failed to initialise: the run reports it, not the status bar
        return None


def device_text(device: Any, dtype: Any, torch: Any = None) -> str:
    """'CUDA: NVIDIA H200 (fp16)', 'MPS (fp16)' or 'CPU (fp32)'."""
    kind = getattr(device, "type", str(device).split(":")[0])
    precision = DTYPE_NAMES.get(str(dtype).rsplit(".", 1)[-1], str(dtype))
    if kind == "cuda":
        name = "GPU"
        if torch is not None:
            with contextlib.suppress(Exception):  # the name is decoration; never fail the status bar for it
                name = torch.cuda.get_device_name(device)
        return f"CUDA: {name} ({precision})"
    return f"{kind.upper()} ({precision})"


def vram_text(torch: Any, device: Any = None) -> str:
    """'VRAM 3.4 / 139 GB' (memory reserved by this process / the card's total), or '' when CUDA is not in use."""
    cuda = getattr(torch, "cuda", None)
    if cuda is None or not cuda.is_initialized():
        return ""
    try:
        index = device.index if getattr(device, "type", None) == "cuda" and device.index is not None \
            else cuda.current_device()
        used = cuda.memory_reserved(index)
        total = cuda.get_device_properties(index).total_memory
    except Exception:  # a lost device: the run reports it
        return ""
    return f"VRAM {used / GB:.1f} / {total / GB:.0f} GB"


def process_ram() -> int:
    """This process's resident memory in bytes."""
    import psutil

    return psutil.Process().memory_info().rss


class StatusInfo(QtCore.QObject):
    """Adds the device and memory labels to `window`'s status bar and keeps them current (every ~2 s, and when
    :meth:`refresh` is called after a run). The window's run state label is left alone."""

    def __init__(self, window: QtWidgets.QMainWindow):
        super().__init__(window)
        self.window = window
        self.device_label = QtWidgets.QLabel()
        self.device_label.setObjectName("device_label")
        self.memory_label = QtWidgets.QLabel()
        self.memory_label.setObjectName("memory_label")
        self.memory_label.setToolTip("Memory used by this process (RAM) and reserved on the GPU (VRAM)")
        bar = window.statusBar()
        bar.addPermanentWidget(self.device_label)
        bar.addPermanentWidget(self.memory_label)
        self._device: tuple[Any, str] | None = None  # (models service, its device text): fixed once chosen
        self.timer = QtCore.QTimer(self)
        self.timer.setInterval(REFRESH_MS)
        self.timer.timeout.connect(self.refresh)
        self.timer.start()
        self.refresh()

    def refresh(self) -> None:
        """Update both labels (cheap: no file access, no torch import)."""
        models = getattr(self.window, "run_models", None)
        torch = loaded_torch()
        chosen = chosen_device(models)
        if chosen is not None:
            if self._device is None or self._device[0] is not models:
                self._device = (models, device_text(*chosen, torch))
            note = getattr(models, "device_note", "")  # a GPU left unused (CPU-only torch, unusable CUDA)
            self.device_label.setText(self._device[1] + (" — GPU not used" if note else ""))
            self.device_label.setStyleSheet(f"color: {WARNING_COLOUR};" if note else "")
            self.device_label.setToolTip(note[:1].upper() + note[1:] if note
                                         else "The device and precision models run in")
        else:
            app_settings = getattr(self.window, "app_settings", None)
            requested = getattr(models, "requested_device", None) or getattr(app_settings, "device", "auto")
            self.device_label.setText(f"Device: {requested} — chosen at the first run")
            self.device_label.setToolTip("Torch loads and the device is picked when the first workflow runs")
        parts = [f"RAM {format_bytes(process_ram())}"]
        if torch is not None:
            vram = vram_text(torch, chosen[0] if chosen else None)
            if vram:
                parts.append(vram)
        self.memory_label.setText(" · ".join(parts))
