"""The settings dialog (Edit → Settings…): model folders, output folder, device, precision, previews, autosave.

It edits a copy of the :class:`~nodegraph.settings.AppSettings`; OK checks the values, saves them and closes, and
the window applies :attr:`SettingsDialog.saved`. Problems the user can cause (a folder that does not exist,
an output folder that cannot be created, an unknown device) are shown in the dialog, which stays open.
"""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path

from PySide6 import QtCore, QtWidgets

from nodegraph.models.discovery import KIND_FOLDERS, ModelFolders
from nodegraph.paths import app_home
from nodegraph.settings import AUTOSAVE_RANGE_S, DEVICES_HINT, PRECISIONS, AppSettings

DEVICE_CHOICES = ("auto", "cpu", "cuda", "cuda:0", "cuda:1", "mps")
_DEVICE = re.compile(r"auto|cpu|mps|cuda(:\d+)?")
#: kind → (singular, plural) as shown in a root's summary
_KIND_NAMES = {"checkpoints": ("checkpoint", "checkpoints"), "loras": ("LoRA", "LoRAs"), "vae": ("VAE", "VAEs"),
               "embeddings": ("embedding", "embeddings"), "hypernetworks": ("hypernetwork", "hypernetworks"),
               "upscale_models": ("upscale model", "upscale models"), "controlnet": ("ControlNet", "ControlNets")}
_PATH_ROLE = QtCore.Qt.ItemDataRole.UserRole


def root_summary(root: Path) -> str:
    """What a model root holds, e.g. "12 checkpoints, 30 LoRAs" (torch-free: it only lists files)."""
    if not root.is_dir():
        return "missing: the folder is not there (an unplugged drive?)"
    folders = ModelFolders([root], include_home=False)
    counts = []
    for kind in KIND_FOLDERS:
        try:
            count = len(folders.list(kind))
        except OSError:
            continue
        if count:
            singular, plural = _KIND_NAMES.get(kind, (kind, kind))
            counts.append(f"{count} {singular if count == 1 else plural}")
    if counts:
        return ", ".join(counts)
    if any(folders.folders(kind) for kind in KIND_FOLDERS):
        return "no model files yet"
    return "no model folders found (expected models/Stable-diffusion, models/checkpoints, models/Lora, …)"


def root_problem(text: str, known: list[str]) -> str | None:
    """Why `text` cannot be added as a model folder (None when it can)."""
    if not text.strip():
        return "Choose a model folder."
    path = Path(text.strip()).expanduser()
    if not path.is_absolute():
        return f"Model folder {text!r}: use a full path."
    if not path.exists():
        return f"Model folder {path} does not exist."
    if not path.is_dir():
        return f"Model folder {path} is a file, not a folder."
    if any(Path(other).expanduser().resolve() == path.resolve() for other in known):
        return f"Model folder {path} is already in the list."
    return None


def output_problem(text: str) -> str | None:
    """Why `text` cannot be the output folder (None when it can; empty means the default). Creates the folder."""
    if not text.strip():
        return None
    path = Path(text.strip()).expanduser()
    if not path.is_absolute():
        return f"Output folder {text!r}: use a full path."
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        return f"Output folder {path} cannot be created: {error.strerror or error}."
    if not os.access(path, os.W_OK):
        return f"Output folder {path} is not writable."
    return None


def device_problem(text: str) -> str | None:
    """Why `text` is not a device name (None when it is one; whether the machine has it is checked at run time)."""
    if _DEVICE.fullmatch(text.strip()):
        return None
    return f"Device {text!r}: use {DEVICES_HINT}."


class SettingsDialog(QtWidgets.QDialog):
    """The app settings form over a copy of `settings`. After OK, :meth:`result_settings` holds the saved values."""

    def __init__(self, settings: AppSettings, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Settings")
        self.setObjectName("settings_dialog")
        self._original = settings
        self.saved: AppSettings | None = None
        layout = QtWidgets.QVBoxLayout(self)
        layout.addWidget(self._models_box(settings))
        layout.addWidget(self._run_box(settings))
        self.message = QtWidgets.QLabel("")
        self.message.setObjectName("settings_message")
        self.message.setWordWrap(True)
        self.message.setStyleSheet("color: #d9534f;")
        self.message.hide()
        layout.addWidget(self.message)
        self.buttons = QtWidgets.QDialogButtonBox(
            QtWidgets.QDialogButtonBox.StandardButton.Ok | QtWidgets.QDialogButtonBox.StandardButton.Cancel)
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        layout.addWidget(self.buttons)
        self.resize(720, 520)

    # --- building ---------------------------------------------------------------------------------------------------
    def _models_box(self, settings: AppSettings) -> QtWidgets.QGroupBox:
        box = QtWidgets.QGroupBox("Model folders")
        layout = QtWidgets.QVBoxLayout(box)
        note = QtWidgets.QLabel(f"Always searched first: {app_home() / 'models'}. Add AUTOMATIC1111 or ComfyUI "
                                "installs, or any folder laid out like one; they are searched in this order.")
        note.setWordWrap(True)
        layout.addWidget(note)
        self.roots = QtWidgets.QTreeWidget()
        self.roots.setObjectName("model_roots")
        self.roots.setHeaderLabels(["Folder", "Found"])
        self.roots.setRootIsDecorated(False)
        self.roots.header().setSectionResizeMode(0, QtWidgets.QHeaderView.ResizeMode.Stretch)
        self.roots.header().setStretchLastSection(False)
        self.roots.header().setSectionResizeMode(1, QtWidgets.QHeaderView.ResizeMode.ResizeToContents)
        for root in settings.model_roots:
            self._add_root_item(root)
        layout.addWidget(self.roots)
        row = QtWidgets.QHBoxLayout()
        self.add_root_button = QtWidgets.QPushButton("Add folder…")
        self.add_root_button.clicked.connect(self._choose_root)
        self.remove_root_button = QtWidgets.QPushButton("Remove")
        self.remove_root_button.clicked.connect(self.remove_selected_root)
        self.find_button = QtWidgets.QPushButton("Find AUTOMATIC1111 / ComfyUI installs")
        self.find_button.setToolTip("Look in the usual places (home folder, AI, Documents, …) and add the installs "
                                    "found, so their models are used where they are")
        self.find_button.clicked.connect(lambda: self.add_found_installs())
        row.addWidget(self.add_root_button)
        row.addWidget(self.remove_root_button)
        row.addWidget(self.find_button)
        row.addStretch(1)
        layout.addLayout(row)
        return box

    def _run_box(self, settings: AppSettings) -> QtWidgets.QGroupBox:
        box = QtWidgets.QGroupBox("Running")
        form = QtWidgets.QFormLayout(box)
        self.output_edit = QtWidgets.QLineEdit(settings.output_dir or "")
        self.output_edit.setPlaceholderText(f"default: {AppSettings().output_folder()}")
        browse = QtWidgets.QPushButton("Browse…")
        browse.clicked.connect(self._choose_output)
        row = QtWidgets.QHBoxLayout()
        row.addWidget(self.output_edit, 1)
        row.addWidget(browse)
        form.addRow("Output folder", row)
        self.device_combo = QtWidgets.QComboBox()
        self.device_combo.setEditable(True)
        self.device_combo.setInsertPolicy(QtWidgets.QComboBox.InsertPolicy.NoInsert)
        self.device_combo.addItems(DEVICE_CHOICES)
        self.device_combo.setEditText(settings.device)
        self.device_combo.setToolTip(f"{DEVICES_HINT}; auto prefers CUDA, then MPS, then the CPU")
        form.addRow("Device", self.device_combo)
        self.precision_combo = QtWidgets.QComboBox()
        self.precision_combo.addItems(PRECISIONS)
        self.precision_combo.setCurrentText(settings.precision)
        self.precision_combo.setToolTip("auto: fp16 on GPUs, fp32 on the CPU (the CPU always runs fp32)")
        form.addRow("Precision", self.precision_combo)
        self.previews_check = QtWidgets.QCheckBox("Show live previews while sampling")
        self.previews_check.setChecked(settings.previews)
        form.addRow("Previews", self.previews_check)
        self.autosave_spin = QtWidgets.QSpinBox()
        self.autosave_spin.setRange(*AUTOSAVE_RANGE_S)
        self.autosave_spin.setSuffix(" s")
        self.autosave_spin.setValue(settings.autosave_seconds)
        self.autosave_spin.setToolTip("how often unsaved work is written to the recovery folder")
        form.addRow("Autosave every", self.autosave_spin)
        return box

    # --- model folders ------------------------------------------------------------------------------------------------
    def root_paths(self) -> list[str]:
        """The model folders in the list, in order."""
        return [self.roots.topLevelItem(i).data(0, _PATH_ROLE) for i in range(self.roots.topLevelItemCount())]

    def add_root(self, text: str) -> bool:
        """Add a model folder (with what was found in it); a problem is shown in the dialog and nothing is added."""
        problem = root_problem(text, self.root_paths())
        if problem:
            self.show_message(problem)
            return False
        self._add_root_item(str(Path(text.strip()).expanduser()))
        self.show_message(None)
        return True

    def add_found_installs(self, bases: list[Path] | None = None) -> list[str]:
        """Add the AUTOMATIC1111 / Forge / SD.Next / ComfyUI installs found in `bases` (default: the usual places)
        that are not listed yet; returns the folders added and says how many were found."""
        from nodegraph.gui.first_start import find_installs

        known = {str(Path(root).expanduser().resolve()) for root in self.root_paths()}
        added = []
        installs = find_installs(bases)
        for install in installs:
            if str(install.root.resolve()) not in known:
                self._add_root_item(str(install.root))
                added.append(str(install.root))
        if not installs:
            self.show_message("No AUTOMATIC1111 or ComfyUI install found in the usual places: use Add folder….")
        else:
            self.show_message(f"Found {len(installs)} install(s); added {len(added)} new.")
        return added

    def _add_root_item(self, root: str) -> None:
        item = QtWidgets.QTreeWidgetItem([root, root_summary(Path(root).expanduser())])
        item.setData(0, _PATH_ROLE, root)
        item.setToolTip(0, root)
        self.roots.addTopLevelItem(item)

    def remove_selected_root(self) -> None:
        """Remove the selected model folder from the list (the files stay where they are)."""
        for item in self.roots.selectedItems():
            self.roots.takeTopLevelItem(self.roots.indexOfTopLevelItem(item))

    def _choose_root(self) -> None:
        folder = self.ask_folder("Add a model folder")
        if folder:
            self.add_root(folder)

    def _choose_output(self) -> None:
        folder = self.ask_folder("Output folder")
        if folder:
            self.output_edit.setText(folder)

    def ask_folder(self, title: str) -> str | None:
        """Ask for a folder (tests monkeypatch this); None when cancelled or when nobody can be asked."""
        if QtWidgets.QApplication.platformName() == "offscreen":
            return None
        return QtWidgets.QFileDialog.getExistingDirectory(self, title) or None

    # --- result -------------------------------------------------------------------------------------------------------
    def show_message(self, text: str | None) -> None:
        """Show a problem under the form (None hides it)."""
        self.message.setText(text or "")
        self.message.setVisible(bool(text))

    def values(self) -> AppSettings:
        """The settings as edited (a copy; what the dialog does not edit, e.g. the recent files, is kept)."""
        output = self.output_edit.text().strip()
        return dataclasses.replace(
            self._original, model_roots=self.root_paths(), output_dir=output or None,
            device=self.device_combo.currentText().strip(), precision=self.precision_combo.currentText(),
            previews=self.previews_check.isChecked(), autosave_seconds=self.autosave_spin.value(), problem=None,
            recent_files=list(self._original.recent_files))

    def problems(self) -> list[str]:
        """Every reason the edited values cannot be saved (empty: they can)."""
        found = [output_problem(self.output_edit.text()), device_problem(self.device_combo.currentText())]
        return [problem for problem in found if problem]

    def accept(self) -> None:
        """OK: check the values, save them, close; a problem keeps the dialog open with its message."""
        problems = self.problems()
        if problems:
            self.show_message("\n".join(problems))
            return
        settings = self.values()
        try:
            settings.save()
        except OSError as error:
            self.show_message(f"Could not save the settings: {error}")
            return
        self.saved = settings
        super().accept()
