"""First-start guidance: when no checkpoint can be found, say where models go, offer the models of the
AUTOMATIC1111 / ComfyUI installs already on this computer, and offer the small demo checkpoint so every part of the
pipeline can be tried at once.

At the first start without a checkpoint a dialog explains it (once: ``first_start_done`` is saved); later starts
without a checkpoint get a one-line hint in the status bar instead. Install detection looks only in the usual places,
one folder level deep, so it stays fast on any disk.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PySide6 import QtCore, QtGui, QtWidgets

from nodegraph.gui.widgets import has_widget
from nodegraph.models.discovery import KIND_FOLDERS, ModelFolders
from nodegraph.paths import app_home
from nodegraph.settings import AppSettings

#: Folders under the home folder where people keep their AI tools (each is looked into one level deep).
HOME_SUBFOLDERS = ("AI", "ai", "Documents", "Desktop", "Downloads", "src", "git", "github", "code", "Code",
                   "Projects", "projects", "apps", "stable-diffusion", "StableDiffusion", "sd", "pinokio/api",
                   "StabilityMatrix/Data/Packages", "AppData/Roaming/StabilityMatrix/Data/Packages")
#: Nested layouts of the one-click packages (ComfyUI_windows_portable/ComfyUI, sd.webui/webui, Forge's webui/).
NESTED = ("ComfyUI", "webui")
#: At most this many entries of one base folder are looked at (a huge Downloads folder must not slow the start).
MAX_ENTRIES = 400

KIND_LABELS = {"checkpoints": "Checkpoints", "loras": "LoRAs", "vae": "VAEs", "embeddings": "Embeddings",
               "hypernetworks": "Hypernetworks", "upscale_models": "Upscale models", "controlnet": "ControlNets"}
#: How long the status bar hint stays (a temporary message hides the run state label while it shows).
HINT_MS = 20_000
DEMO_NOTE = ("The demo checkpoint has random weights, so its images are noise: it shows that every part of the "
             "pipeline runs. Put real checkpoints into the folders above for real images.")


@dataclass(frozen=True)
class Install:
    """An AUTOMATIC1111-style (A1111, Forge, SD.Next) or ComfyUI install whose models nodegraph can use."""

    kind: str  # "a1111" or "comfyui"
    label: str  # what users call it: "AUTOMATIC1111", "Forge", "SD.Next", "ComfyUI"
    root: Path

    def checkpoint_count(self) -> int:
        """How many checkpoints the install holds (its own model folders only)."""
        return len(ModelFolders([self.root], include_home=False).list("checkpoints"))


def _is_dir(path: Path) -> bool:
    try:
        return path.is_dir()
    except OSError:
        return False


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except OSError:
        return False


def detect_install(folder: Path) -> Install | None:
    """The install in `folder`, recognised by its marker files, or None."""
    if _is_dir(folder / "models" / "Stable-diffusion") and (
            _is_file(folder / "webui.py") or _is_file(folder / "launch.py")):
        if _is_dir(folder / "modules_forge"):
            label = "Forge"
        elif _is_file(folder / "installer.py"):
            label = "SD.Next"
        else:
            label = "AUTOMATIC1111"
        return Install("a1111", label, folder)
    if _is_dir(folder / "models" / "checkpoints"):
        if _is_dir(folder / "comfy") or (_is_file(folder / "main.py") and _is_file(folder / "nodes.py")):
            return Install("comfyui", "ComfyUI", folder)
        if _is_dir(folder / "custom_nodes") and _is_dir(folder / "user"):  # the ComfyUI desktop app's base folder
            return Install("comfyui", "ComfyUI (desktop app)", folder)
    return None


def search_bases(home: Path | None = None, platform: str = sys.platform) -> list[Path]:
    """The folders looked into for installs: the home folder, its usual subfolders, and drive roots on Windows."""
    home = home or Path.home()
    bases = [home, *(home / sub for sub in HOME_SUBFOLDERS)]
    if platform == "win32":
        bases += [Path(p) for p in ("C:/", "D:/", "C:/AI", "D:/AI", "C:/SD", "D:/SD")]
    else:
        bases.append(Path("/opt"))
    return bases


def find_installs(bases: Iterable[Path] | None = None) -> list[Install]:
    """The A1111/Forge/SD.Next and ComfyUI installs in `bases` (default: :func:`search_bases`) and in their direct
    subfolders (plus the nested layouts of the one-click packages); no recursive walk."""
    found: dict[Path, Install] = {}
    for base in search_bases() if bases is None else bases:
        if not _is_dir(base):
            continue
        candidates = [base]
        try:
            entries = []
            for entry in base.iterdir():
                if len(entries) >= MAX_ENTRIES:
                    break
                if not entry.name.startswith("."):
                    entries.append(entry)
        except OSError:
            entries = []
        for entry in sorted(entries):
            if _is_dir(entry):
                candidates += [entry, *(entry / name for name in NESTED)]
        for candidate in candidates:
            install = detect_install(candidate)
            if install is not None:
                found.setdefault(candidate.resolve(), install)
    return sorted(found.values(), key=lambda i: (i.label.lower(), str(i.root).lower()))


def available_checkpoints(settings: AppSettings) -> list[str]:
    """The checkpoints in the data folder and the model folders of `settings` (torch-free)."""
    return ModelFolders(settings.model_root_paths()).list("checkpoints")


def save_settings(window: Any, settings: AppSettings) -> str | None:
    """Save `settings` and hand them to `window` (its ``apply_settings``, which replaces its snapshot, so the next
    run and validation use them); the reason when they could not be saved."""
    try:
        settings.save()
    except OSError as error:
        return f"Could not save the settings: {error}"
    apply = getattr(window, "apply_settings", None)
    if callable(apply):
        apply(settings)
    return None


def checkpoint_inputs(window: Any) -> list[tuple[str, str]]:
    """(node id, input name) of every input of the open workflow that names a checkpoint (Load Checkpoint's)."""
    result = []
    for node in window.adapter.workflow:
        node_def = window.adapter.registry.get(node.type)
        for spec in node_def.inputs if node_def else ():
            if spec.file_kind == "checkpoints" and has_widget(spec):
                result.append((node.id, spec.name))
    return result


def use_checkpoint(window: Any, name: str) -> int:
    """Set every checkpoint input of the open workflow to `name` (one undo step); returns how many were set."""
    targets = checkpoint_inputs(window)
    if not targets:
        return 0
    stack = window.adapter.undo_stack
    stack.beginMacro(f"Use checkpoint {name}")
    try:
        for node_id, input_name in targets:
            window.adapter.set_value(node_id, input_name, name)
    finally:
        stack.endMacro()
    return len(targets)


class DemoWriter(QtCore.QThread):
    """Writes the demo checkpoint on its own thread (it imports torch, which must never block the UI).

    Running writers are kept alive here, not by their dialog, so closing the dialog or the window mid-write is safe.
    """

    written = QtCore.Signal(str)
    failed = QtCore.Signal(str)
    _running: set[DemoWriter] = set()

    def __init__(self, folder: Path):
        super().__init__()
        self.folder = folder
        self.finished.connect(self._forget)

    def start(self, *args: Any) -> None:
        """Start writing (keeps this writer alive until it finishes)."""
        DemoWriter._running.add(self)
        app = QtCore.QCoreApplication.instance()
        if app is not None:
            app.aboutToQuit.connect(self.wait)
        super().start(*args)

    def run(self) -> None:  # the worker thread
        """Write the checkpoint; report its path, or one clear message when it cannot be written."""
        from nodegraph.cli.demo_command import write_demo_checkpoint

        try:
            path = write_demo_checkpoint(self.folder)
        except Exception as error:  # noqa: BLE001 (the thread must always report back)
            self.failed.emit(f"Could not write the demo checkpoint into {self.folder}: {error}")
        else:
            self.written.emit(str(path))

    def _forget(self) -> None:
        DemoWriter._running.discard(self)
        self.deleteLater()


def open_folder(path: Path) -> bool:
    """Show `path` in the file manager (not offscreen: nobody would see it); False when nothing was opened."""
    if QtWidgets.QApplication.platformName() == "offscreen":
        return False
    return QtGui.QDesktopServices.openUrl(QtCore.QUrl.fromLocalFile(str(path)))


def ask_folder(parent: QtWidgets.QWidget) -> Path | None:
    """Ask for a model folder or install folder (None offscreen, or when cancelled; tests monkeypatch this)."""
    if QtWidgets.QApplication.platformName() == "offscreen":
        return None
    chosen = QtWidgets.QFileDialog.getExistingDirectory(parent, "Add a model folder or an install folder")
    return Path(chosen) if chosen else None


def _path_label(text: str) -> QtWidgets.QLabel:
    label = QtWidgets.QLabel(text)
    label.setTextInteractionFlags(QtCore.Qt.TextInteractionFlag.TextSelectableByMouse)
    label.setWordWrap(True)
    return label


class FirstStartDialog(QtWidgets.QDialog):
    """Where models go, the installs found (each with a "use the models of this install" box), and the demo.

    Every change to the model folders is saved at once, given to the window (a new settings object each time:
    the window's snapshot is never edited in place) and announced through `settings_changed`.
    """

    settings_changed = QtCore.Signal(object)  # the AppSettings

    def __init__(self, window: Any, settings: AppSettings, installs: list[Install]):
        super().__init__(window)
        self.window_ = window
        self.settings = settings
        self.installs = installs
        self.writer: DemoWriter | None = None
        self.setWindowTitle("Welcome to nodegraph")
        layout = QtWidgets.QVBoxLayout(self)
        self.heading = heading = QtWidgets.QLabel()
        intro = QtWidgets.QLabel(
            "To make images a workflow needs a checkpoint (a Stable Diffusion model, usually a "
            "<i>.safetensors</i> file). Put your models into these folders, or use the models of an install you "
            "already have:")
        intro.setWordWrap(True)
        layout.addWidget(heading)
        layout.addWidget(intro)
        layout.addWidget(self._folders_box())
        layout.addWidget(self._installs_box())
        self.status = QtWidgets.QLabel("")
        self.status.setWordWrap(True)
        layout.addWidget(self.status)
        layout.addLayout(self._buttons())
        self.setMinimumWidth(640)
        self.resize(760, self.sizeHint().height())
        self._refresh()

    # --- parts ----------------------------------------------------------------------------------------------------
    def _folders_box(self) -> QtWidgets.QGroupBox:
        box = QtWidgets.QGroupBox("Where models go")
        form = QtWidgets.QFormLayout(box)
        models = app_home() / "models"
        self.folder_labels: dict[str, QtWidgets.QLabel] = {}
        for kind, names in KIND_FOLDERS.items():
            self.folder_labels[kind] = _path_label(str(models / names[0]))
            form.addRow(KIND_LABELS[kind] + ":", self.folder_labels[kind])
        hint = QtWidgets.QLabel("Subfolders work, and so do AUTOMATIC1111's folder names (Stable-diffusion, Lora).")
        hint.setWordWrap(True)
        form.addRow(hint)
        self.roots_label = _path_label("")
        form.addRow("Other model folders:", self.roots_label)
        return box

    def _installs_box(self) -> QtWidgets.QGroupBox:
        box = QtWidgets.QGroupBox("Installs found on this computer")
        column = QtWidgets.QVBoxLayout(box)
        self.install_boxes: dict[Path, QtWidgets.QCheckBox] = {}
        configured = {p.resolve() for p in self.settings.model_root_paths()}
        for install in self.installs:
            count = install.checkpoint_count()
            check = QtWidgets.QCheckBox(f"Use the models of this {install.label} install "
                                        f"({count} checkpoint{'' if count == 1 else 's'})")
            check.setChecked(install.root.resolve() in configured)
            check.toggled.connect(lambda on, root=install.root: self.set_root_used(root, on))
            where = _path_label(str(install.root))
            where.setContentsMargins(24, 0, 0, 4)  # under the box's text, not its tick
            where.setEnabled(False)  # the muted text colour
            column.addWidget(check)
            column.addWidget(where)
            self.install_boxes[install.root] = check
        if not self.installs:
            none = QtWidgets.QLabel("No AUTOMATIC1111, Forge, SD.Next or ComfyUI install was found in the usual "
                                    "places. If you have one elsewhere, add its folder:")
            none.setWordWrap(True)
            column.addWidget(none)
        add = QtWidgets.QPushButton("Add a folder…")
        add.clicked.connect(self._ask_and_add)
        add.setAutoDefault(False)
        row = QtWidgets.QHBoxLayout()
        row.addWidget(add)
        row.addStretch(1)
        column.addLayout(row)
        return box

    def _buttons(self) -> QtWidgets.QHBoxLayout:
        row = QtWidgets.QHBoxLayout()
        self.open_button = QtWidgets.QPushButton("Open models folder")
        self.open_button.clicked.connect(self.open_models_folder)
        self.demo_button = QtWidgets.QPushButton("Use the demo checkpoint")
        self.demo_button.setToolTip("Writes a small checkpoint with random weights into the checkpoints folder "
                                    "and selects it in the open workflow.")
        self.demo_button.clicked.connect(self.use_demo)
        self.use_button = QtWidgets.QPushButton()
        self.use_button.clicked.connect(self.use_first_checkpoint)
        close = QtWidgets.QPushButton("Close")
        close.clicked.connect(self.accept)
        close.setDefault(True)  # Enter closes; it must not open the folder picker
        for button in (self.open_button, self.demo_button, self.use_button):
            button.setAutoDefault(False)
            row.addWidget(button)
        row.addStretch(1)
        row.addWidget(close)
        return row

    # --- actions --------------------------------------------------------------------------------------------------
    def set_root_used(self, root: Path, used: bool) -> None:
        """Add `root` to the model folders searched (or remove it), save the settings, and refresh."""
        key = Path(root).expanduser().resolve()
        kept = [r for r in self.settings.model_roots if Path(r).expanduser().resolve() != key]
        self.settings = dataclasses.replace(self.settings, model_roots=[*kept, str(root)] if used else kept,
                                            recent_files=list(self.settings.recent_files))
        problem = save_settings(self.window_, self.settings)
        self.settings_changed.emit(self.settings)
        found = self._refresh()
        if problem:
            self.status.setText(problem)
        elif self.writer is None:
            self.status.setText(f"{len(found)} checkpoint{'' if len(found) == 1 else 's'} found: "
                                f"“Use {found[0]}” selects it in the open workflow." if found
                                else "No checkpoints in the folders above yet.")

    def add_root(self, root: Path) -> None:
        """Use the models of a folder the user picked (an install, or any folder laid out like one)."""
        box = self.install_boxes.get(root)
        if box is not None:
            box.setChecked(True)
        else:
            self.set_root_used(root, True)

    def _ask_and_add(self) -> None:
        folder = ask_folder(self)
        if folder is not None:
            self.add_root(folder)

    def open_models_folder(self) -> None:
        """Create the data folder's model folders (so there is something to open) and show them."""
        models = app_home() / "models"
        for names in KIND_FOLDERS.values():
            (models / names[0]).mkdir(parents=True, exist_ok=True)
        open_folder(models)

    def use_demo(self) -> None:
        """Write the demo checkpoint on a worker thread; when done it is selected in the open workflow."""
        if self.writer is not None:
            return
        self.demo_button.setEnabled(False)
        self.status.setText("Writing the demo checkpoint (small, random weights; this takes a few seconds)…")
        self.writer = DemoWriter(app_home() / "models" / "checkpoints")
        self.writer.written.connect(self._demo_written)
        self.writer.failed.connect(self._demo_failed)
        self.writer.start()

    def _demo_written(self, path: str) -> None:
        self.writer = None
        name = Path(path).name
        count = use_checkpoint(self.window_, name)
        where = (f"selected in {count} Load Checkpoint node{'' if count == 1 else 's'}" if count
                 else "add a Load Checkpoint node and choose it")
        self.status.setText(f"Demo checkpoint ready: {name} ({where}). {DEMO_NOTE}")
        self._refresh()

    def _demo_failed(self, message: str) -> None:
        self.writer = None
        self.demo_button.setEnabled(True)
        self.status.setText(message)

    def use_first_checkpoint(self) -> None:
        """Select the first checkpoint found in the open workflow's checkpoint inputs."""
        found = available_checkpoints(self.settings)
        if not found:
            return
        count = use_checkpoint(self.window_, found[0])
        self.status.setText(f"Selected {found[0]} in {count} Load Checkpoint node{'' if count == 1 else 's'}."
                            if count else f"Found {found[0]}: add a Load Checkpoint node and choose it.")

    def _refresh(self) -> list[str]:
        roots = self.settings.model_roots
        self.roots_label.setText("\n".join(roots) if roots else "no other folders yet")
        found = available_checkpoints(self.settings)
        self.heading.setText("<h2>Checkpoints found</h2>" if found else "<h2>No checkpoint found yet</h2>")
        self.use_button.setVisible(bool(found))
        if found:
            self.use_button.setText(f"Use {found[0]}")
        return found


def ask_first_start(dialog: FirstStartDialog) -> None:
    """Show the first-start dialog without blocking (offscreen: not shown; tests monkeypatch this)."""
    if QtWidgets.QApplication.platformName() == "offscreen":
        return
    dialog.open()


def no_checkpoint_hint() -> str:
    """The status bar line shown at later starts while no checkpoint can be found."""
    return (f"No checkpoint found: put .safetensors models into {app_home() / 'models' / 'checkpoints'}, "
            "or add your AUTOMATIC1111 / ComfyUI folder in Edit → Settings….")


def maybe_show_first_start(window: Any, installs: list[Install] | None = None) -> FirstStartDialog | None:
    """At the first start without a checkpoint, show the guidance dialog (and remember it was shown); at later
    starts without one, a hint in the status bar. Returns the dialog when one was made."""
    settings = getattr(window, "app_settings", None) or AppSettings.load()
    if available_checkpoints(settings):
        return None
    if settings.first_start_done:
        window.statusBar().showMessage(no_checkpoint_hint(), HINT_MS)
        return None
    settings = dataclasses.replace(settings, first_start_done=True, model_roots=list(settings.model_roots),
                                   recent_files=list(settings.recent_files))
    problem = save_settings(window, settings)
    dialog = FirstStartDialog(window, settings, find_installs() if installs is None else installs)
    if problem:
        dialog.status.setText(problem)
    ask = getattr(window, "ask_first_start", None) or ask_first_start
    ask(dialog)
    return dialog
