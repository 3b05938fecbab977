"""The main window: the canvas in the centre, File/Edit/Run menus, a status bar with the run state."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from PySide6 import QtCore, QtGui, QtWidgets

from nodegraph import __version__
from nodegraph.core.errors import WorkflowError
from nodegraph.core.migrations import upgrade_node_versions
from nodegraph.core.registry import NodeRegistry
from nodegraph.core.workflow_io import load, save
from nodegraph.engine.context import RunSettings
from nodegraph.engine.events import NodeFailed, NodeFinished, NodeStarted, Progress
from nodegraph.engine.executor import Executor
from nodegraph.gui.about import app_icon, show_about
from nodegraph.gui.adapter import GraphAdapter
from nodegraph.gui.drops import DropHandler
from nodegraph.gui.edit_actions import EditActions, RunQueue
from nodegraph.gui.lifecycle import watch_window
from nodegraph.gui.palette import install_node_tools
from nodegraph.gui.properties import apply_seed_controls
from nodegraph.gui.recent_files import RecentFilesMenu
from nodegraph.gui.recovery import Recovery, RecoveryInfo, can_show_restore_offer
from nodegraph.gui.run_view import RunFeedback
from nodegraph.gui.settings_dialog import SettingsDialog
from nodegraph.gui.status_bar import StatusInfo
from nodegraph.gui.worker import RunWorker
from nodegraph.settings import AppSettings

APP_NAME = "nodegraph"
#: File ▸ Import…'s file types: what ``nodegraph.interop.import_file`` reads.
IMPORT_FILTER = "ComfyUI / AUTOMATIC1111 (*.json *.png *.jpg *.jpeg *.webp *.txt);;All files (*)"


class MainWindow(QtWidgets.QMainWindow):
    """The app window. `app_settings` are the user's settings (read from the settings file when omitted);
    `settings` overrides the run settings they would give (tests). By default the model manager is created lazily on
    the worker thread at the first run, so torch is never imported before the window shows."""

    def __init__(self, registry: NodeRegistry, settings: RunSettings | None = None,
                 app_settings: AppSettings | None = None):
        super().__init__()
        self.registry = registry
        self.app_settings = app_settings if app_settings is not None else AppSettings.load()
        self.adapter = GraphAdapter(registry, self)
        self._settings = settings
        self.executor = Executor(registry, preflight=self._preflight)
        self._use_model_folders()
        self.path: Path | None = None
        self.imported_name: str | None = None  # what an unsaved, imported document came from (its title)
        self.worker: RunWorker | None = None
        self.run_state = "idle"
        self._models: Any = None  # the ModelManager of the runs, and the settings it was made for
        self._models_key: tuple | None = None
        self.setCentralWidget(self.adapter.graph.widget)
        self.resize(1400, 800)
        self._build_actions()
        self.state_label = QtWidgets.QLabel("Ready")
        self.statusBar().addWidget(self.state_label, 1)
        if self.app_settings.problem:  # a damaged settings file: the defaults are in use
            self.state_label.setText(f"Settings: {self.app_settings.problem}")
        self.drops = DropHandler(self)  # workflow JSON, PNGs with a workflow, model files
        self.feedback = RunFeedback(self)  # node states, problems dock, progress bar, image panel
        self.status_info = StatusInfo(self)  # device and memory in the status bar
        self.edit_actions = EditActions(self)  # copy/paste, duplicate, delete, bypass, mute, framing, layout
        self.run_queue = RunQueue(self)  # Queue ×N next to Run
        self.palette, self.quick_search, self.properties = install_node_tools(self)  # node docks, Tab search
        self._arrange_docks()
        # A bound slot, not a lambda: Qt drops the connection when the window is destroyed.
        self.adapter.undo_stack.cleanChanged.connect(self._on_clean_changed)
        self._update_title()
        # autosave of unsaved work; offers a crashed session's work back
        self.recovery = Recovery(self, interval_s=self.app_settings.autosave_seconds)
        self.recovery.start()
        self.restored = self.recovery.offer_restore()

    def _arrange_docks(self) -> None:
        """Side docks run the full height and stay narrow, so the canvas gets most of the window; the problems
        strip sits under the canvas only."""
        corner, area = QtCore.Qt.Corner, QtCore.Qt.DockWidgetArea
        self.setCorner(corner.BottomLeftCorner, area.LeftDockWidgetArea)
        self.setCorner(corner.BottomRightCorner, area.RightDockWidgetArea)
        docks = [self.findChild(QtWidgets.QDockWidget, name) for name in ("palette_dock", "image_dock")]
        self.resizeDocks([dock for dock in docks if dock is not None], [200, 320], QtCore.Qt.Orientation.Horizontal)

    # --- actions --------------------------------------------------------------------------------------------------
    def _action(self, menu: QtWidgets.QMenu, text: str, slot: Any, shortcut: Any = None) -> QtGui.QAction:
        action = QtGui.QAction(text, self)
        if shortcut is not None:
            action.setShortcut(QtGui.QKeySequence(shortcut))
        action.triggered.connect(slot)
        menu.addAction(action)
        return action

    def _build_actions(self) -> None:
        bar = self.menuBar()
        file_menu = bar.addMenu("&File")
        self._action(file_menu, "&New", self._new_from_menu, QtGui.QKeySequence.StandardKey.New)
        self._action(file_menu, "&Open…", self._open_dialog, QtGui.QKeySequence.StandardKey.Open)
        self.recent_files = RecentFilesMenu(self, file_menu.addMenu("Open &Recent"))
        self.import_action = self._action(file_menu, "&Import…", self._import_dialog, "Ctrl+I")
        self.import_action.setToolTip("Open a ComfyUI workflow or an AUTOMATIC1111 / Forge image or infotext as a "
                                      "new, unsaved workflow")
        self._action(file_menu, "&Save", self.save, QtGui.QKeySequence.StandardKey.Save)
        self._action(file_menu, "Save &As…", self._save_as_dialog, QtGui.QKeySequence.StandardKey.SaveAs)
        file_menu.addSeparator()
        self._action(file_menu, "&Quit", self.close, QtGui.QKeySequence.StandardKey.Quit)
        edit_menu = bar.addMenu("&Edit")
        self.undo_action = self._action(edit_menu, "&Undo", self.adapter.undo, QtGui.QKeySequence.StandardKey.Undo)
        self.redo_action = self._action(edit_menu, "&Redo", self.adapter.redo, QtGui.QKeySequence.StandardKey.Redo)
        edit_menu.addSeparator()
        self.settings_action = self._action(edit_menu, "Se&ttings…", self.show_settings, "Ctrl+,")
        self.settings_action.setMenuRole(QtGui.QAction.MenuRole.PreferencesRole)
        run_menu = bar.addMenu("&Run")
        self.run_action = self._action(run_menu, "&Run", self.run_workflow, "Ctrl+Return")
        self.cancel_action = self._action(run_menu, "&Cancel", self.cancel_run, "Esc")
        self.cancel_action.setEnabled(False)
        help_menu = bar.addMenu("&Help")
        self.about_action = self._action(help_menu, "&About nodegraph", lambda: show_about(self))
        self.about_action.setMenuRole(QtGui.QAction.MenuRole.AboutRole)

    # --- files ----------------------------------------------------------------------------------------------------
    @property
    def modified(self) -> bool:
        """True when there are edits since the last open or save."""
        return not self.adapter.undo_stack.isClean()

    def _on_clean_changed(self, clean: bool) -> None:
        self._update_title(not clean)

    def _update_title(self, modified: bool | None = None) -> None:
        if self.path is not None:
            name = self.path.name
        else:
            name = f"{self.imported_name} (imported)" if self.imported_name else "untitled"
        modified = self.modified if modified is None else modified
        self.setWindowTitle(f"{APP_NAME} — {name}{' *' if modified else ''}")

    def new_workflow(self) -> None:
        """Start an empty workflow."""
        from nodegraph.core.graph import Workflow

        self.adapter.load(Workflow())
        self.path = None
        self.imported_name = None
        self._update_title()

    def open_file(self, path: str | Path, remember: bool = True) -> bool:
        """Open a workflow file (listed in Open Recent unless `remember` is False); False (with a message in the
        status bar) when it cannot be read."""
        try:
            workflow = load(path)
            upgrade_node_versions(workflow, self.registry)
        except (WorkflowError, OSError) as error:
            self.state_label.setText(f"Could not open {path}: {error}")
            return False
        self.adapter.load(workflow)
        self.path = Path(path)
        self.imported_name = None
        self._update_title()
        if remember:
            self.remember_file(path)
        return True

    def save(self) -> bool:
        """Save to the current file (asks for one when there is none); atomic."""
        if self.path is None:
            return self._save_as_dialog()
        return self.save_as(self.path)

    def save_as(self, path: str | Path) -> bool:
        """Save the core workflow to `path` atomically and make it the current file."""
        try:
            save(self.adapter.to_workflow(), path)
        except OSError as error:
            self.state_label.setText(f"Could not save {path}: {error}")
            return False
        self.path = Path(path)
        self.imported_name = None
        self.adapter.undo_stack.setClean()
        self._update_title()
        self.remember_file(path)
        return True

    def _open_dialog(self) -> None:
        if not self.confirm_replace():
            return
        path, _ = QtWidgets.QFileDialog.getOpenFileName(self, "Open workflow", "", "Workflows (*.json)")
        if path:
            self.open_file(path)

    def open_unsaved(self, workflow: Any, imported_name: str | None = None) -> None:
        """Show `workflow` as a new document that has never been saved (restored from an image, or imported from
        `imported_name`, which the title then shows): Save asks for a file name, so no source file is overwritten."""
        self.adapter.load(workflow)
        self.path = None
        self.imported_name = imported_name
        self.adapter.undo_stack.resetClean()
        self._update_title()

    # --- importing other tools' work ------------------------------------------------------------------------------
    def _import_dialog(self) -> None:
        if not self.confirm_replace():
            return
        path, _ = QtWidgets.QFileDialog.getOpenFileName(self, "Import workflow", "", IMPORT_FILTER)
        if path:
            self.import_file(path)

    def import_file(self, path: str | Path) -> bool:
        """File ▸ Import…: replace the canvas with the workflow imported from `path` (a ComfyUI workflow or image, an
        AUTOMATIC1111 image or infotext), unsaved. False, with one message and the current workflow untouched, when
        it cannot be imported. The caller has already offered to save unsaved work (:meth:`confirm_replace`)."""
        from nodegraph.interop import InteropError, import_file

        try:
            with self.importing(Path(path).name):
                result = import_file(path, self.model_folders)
            self.open_imported(result, Path(path).name)
        except (InteropError, WorkflowError) as error:
            self.show_import_error(str(error))
            return False
        return True

    @contextmanager
    def importing(self, name: str) -> Iterator[None]:
        """A wait cursor and a status line while an import reads its file (an AUTOMATIC1111 import may hash model
        files it has not seen before: seconds per checkpoint, once)."""
        before = self.state_label.text()
        self.state_label.setText(f"Importing {name}…")
        QtWidgets.QApplication.setOverrideCursor(QtCore.Qt.CursorShape.WaitCursor)
        QtWidgets.QApplication.processEvents()  # show the line and cursor before the work starts
        try:
            yield
        finally:
            QtWidgets.QApplication.restoreOverrideCursor()
            self.state_label.setText(before)  # what comes next (the import's summary or error) says the rest

    def open_imported(self, result: Any, name: str) -> None:
        """Show an import's workflow (an ``ImportResult``) as an unsaved document titled "`name` (imported)", and
        what it could not carry over in the Problems dock and the status bar."""
        upgrade_node_versions(result.workflow, self.registry)
        self.open_unsaved(result.workflow, name)
        self.show_import_warnings(result, name)

    def show_import_warnings(self, result: Any, name: str) -> None:
        """List an import's warnings in the Problems dock (a warning naming a node selects it when clicked), once;
        the status bar says where they are."""
        problems = self.feedback.problems
        problems.clear()
        for warning in result.warnings:
            named = (m.group(1) for m in re.finditer(r"\bnodes? ([^\s,():]+)", warning))
            problems.add_problem(warning, next((n for n in named if n in self.adapter.workflow), None))
        text = f"Imported {name} ({result.source})"
        if result.warnings:
            text += f": {len(result.warnings)} thing(s) not carried over, see Problems"
            self.feedback.problems_dock.show()
            self.feedback.problems_dock.raise_()
        self.state_label.setText(text)

    def show_import_error(self, message: str) -> None:
        """Say why an import failed: in the status bar, and in a message box when someone is there to read it
        (tests monkeypatch this)."""
        self.state_label.setText(f"Could not import: {message}")
        if QtWidgets.QApplication.platformName() == "offscreen":
            return  # nobody to tell
        QtWidgets.QMessageBox.warning(self, APP_NAME, f"Could not import:\n{message}")

    def _save_as_dialog(self) -> bool:
        path, _ = QtWidgets.QFileDialog.getSaveFileName(self, "Save workflow", "", "Workflows (*.json)")
        return bool(path) and self.save_as(path)

    def remember_file(self, path: str | Path) -> None:
        """Put `path` first in File → Open Recent (and in the settings file)."""
        self.app_settings.add_recent(path)
        self.save_app_settings()
        self.recent_files.refresh()

    # --- settings -------------------------------------------------------------------------------------------------
    def save_app_settings(self) -> bool:
        """Write the app settings; a failure is a message in the status bar, never an error."""
        try:
            self.app_settings.save()
        except OSError as error:
            self.state_label.setText(f"Could not save the settings: {error}")
            return False
        return True

    def show_settings(self) -> None:
        """Edit → Settings…: edit the app settings; the dialog saves them on OK, and they apply at once."""
        settings = self.ask_settings()
        if settings is not None:
            self.apply_settings(settings)

    def ask_settings(self) -> AppSettings | None:
        """Show the settings dialog; the saved settings, or None when cancelled (tests monkeypatch this)."""
        if QtWidgets.QApplication.platformName() == "offscreen":
            return None  # nobody to ask
        dialog = SettingsDialog(self.app_settings, self)
        try:
            dialog.exec()
            return dialog.saved
        finally:
            dialog.deleteLater()

    def apply_settings(self, settings: AppSettings) -> None:
        """Use `settings` from now on: the model folders for validation and the file lists, the autosave interval,
        and for the next run the output folder, device, precision, previews and folders (see `_run_settings`)."""
        self.app_settings = settings  # replaced, never edited in place: the worker thread reads one snapshot
        self._use_model_folders()
        self.recovery.set_interval(settings.autosave_seconds)
        self.properties.show_node(self.properties.node_id)  # file inputs list the new folders' models

    @property
    def run_models(self) -> Any:
        """The model manager runs use: the overriding run settings' (tests), else the one made at the first run
        (None before it)."""
        if self._settings is not None and "models" in self._settings.services:
            return self._settings.services["models"]
        return self._models

    def _use_model_folders(self) -> None:
        """Point validation (model files missing before a run, torch-free) and the file lists at the model folders:
        an overriding run manager's, which are the ones its runs load from, else the app settings' folders."""
        from nodegraph.models.discovery import ModelFolders, file_check

        override = self._settings.services.get("models") if self._settings is not None else None
        self.model_folders = override.folders if override is not None else ModelFolders(
            self.app_settings.model_root_paths())
        self.executor.file_check = file_check(self.model_folders)

    def _preflight(self, workflow: Any) -> list:  # called on the worker thread: it may read model headers
        """Problems across nodes found by reading model files: a LoRA, embedding or hypernetwork made for another
        model line than the checkpoint wired to it."""
        from nodegraph.models.preflight import family_problems

        return family_problems(workflow, self.registry, self.model_folders)

    # --- running --------------------------------------------------------------------------------------------------
    def _run_settings(self) -> RunSettings:  # called on the worker thread
        """The run settings from the app settings (or the override given to the window). The model manager, with
        the models it holds, is kept from run to run until the model folders, the device or the precision change."""
        if self._settings is not None:
            return self._settings
        app = self.app_settings  # one snapshot for the whole run
        key = (tuple(app.model_roots), app.device, app.precision)
        if self._models is None or key != self._models_key:
            self._models = self._model_manager(app, keep_models=self._models_key is not None
                                               and self._models_key[1:] == key[1:])
            self._models_key = key
        return RunSettings(output_dir=app.output_folder(), models_dirs=tuple(app.model_root_paths()),
                           device=app.device, previews=app.previews, services={"models": self._models})

    def _model_manager(self, app: AppSettings, keep_models: bool) -> Any:
        """A model manager for `app`'s folders, device and precision. With `keep_models` (only the folders
        changed) the loaded models are kept: they are cached by file identity. Otherwise the old manager's models
        and the cached node outputs, made on another device or in another precision, are dropped."""
        from nodegraph.models.discovery import ModelFolders
        from nodegraph.models.manager import ModelManager

        cache = None
        if self._models is not None:
            if keep_models:
                cache = self._models.cache
            else:
                self._models.clear()
                self.executor.cache.clear()
        return ModelManager(ModelFolders(app.model_root_paths()), cache=cache, device=app.device,
                            precision=app.precision)

    def run_workflow(self) -> None:
        """Run the current workflow on a worker thread (ignored while a run is going)."""
        if self.worker is not None:
            return
        workflow = self.adapter.to_workflow()
        self.feedback.run_started()
        problems = self.feedback.check(workflow)  # listed in the problems dock; the run does not start
        if problems:
            self._set_state("invalid", f"Cannot run: {len(problems)} problem(s), see Problems")
            return
        self.run_queue.fill(workflow)  # Queue ×N: N snapshots, run one after another
        self._start_next()

    def _start_next(self) -> None:
        workflow = self.run_queue.next()
        if workflow is None:
            return
        self.worker = RunWorker(self.executor, workflow, self._run_settings, self)
        self.worker.event.connect(self._on_event)
        self.worker.event.connect(self.feedback.on_event)
        self.worker.done.connect(self.feedback.run_done)
        self.worker.done.connect(self._on_done)
        self._set_state("running", "Running…" if self.run_queue.total <= 1 else self.run_queue.running_text())
        self.run_action.setEnabled(False)
        self.cancel_action.setEnabled(True)
        self.worker.start()

    def cancel_run(self) -> None:
        """Ask the running workflow to stop; the jobs still queued are dropped."""
        self.run_queue.clear()
        if self.worker is not None:
            self.worker.cancel()
            self._set_state("cancelling", "Cancelling…")

    def _set_state(self, state: str, text: str) -> None:
        self.run_state = state
        self.state_label.setText(text)

    def _on_event(self, event: Any) -> None:
        if isinstance(event, NodeStarted):
            self.state_label.setText(f"Running {event.node_id}…")
        elif isinstance(event, Progress):
            self.state_label.setText(f"Running {event.node_id}: step {event.step}/{event.total}")
        elif isinstance(event, NodeFinished):
            self.state_label.setText(f"{event.node_id} finished in {event.seconds:.2f} s")
        elif isinstance(event, NodeFailed):
            self.state_label.setText(f"{event.node_id} failed: {event.message}")

    def _on_done(self, result: Any) -> None:
        worker, self.worker = self.worker, None
        if worker is not None:
            worker.wait()
            worker.deleteLater()
        self.last_result = result
        self.run_action.setEnabled(True)
        self.cancel_action.setEnabled(False)
        if result.status == "finished":
            warnings = self.feedback.warnings
            note = f" · {warnings} warning{'s' if warnings > 1 else ''}, see Problems" if warnings else ""
            self._set_state("finished", f"Finished in {result.total_seconds:.2f} s{note}")
            apply_seed_controls(self.adapter)  # each seed's fixed / increment / randomize-after-run
        elif result.status == "cancelled":
            self._set_state("cancelled", "Cancelled")
        elif result.status == "invalid":
            self._set_state("invalid", "Cannot run: " + "; ".join(str(p) for p in result.problems[:3]))
        else:
            self._set_state("failed", f"Failed: {result.failed_node or ''} {result.message}".strip())
        self.run_queue.record(result)
        self.status_info.refresh()  # the device is known now, and memory use changed
        if self.run_queue.pending and result.status != "cancelled":  # Queue ×N: the next snapshot
            self.feedback.run_started()
            self._start_next()

    def ask_restore(self, info: RecoveryInfo) -> bool | None:
        """Ask whether to restore work left by a session that did not close cleanly: True to restore, False to
        discard, None when nobody could see the offer (offscreen) or it was closed unanswered, so the work is kept
        for the next start (tests monkeypatch this)."""
        if not can_show_restore_offer():
            return None
        name = info.path.name if info.path else "an untitled workflow"
        box = QtWidgets.QMessageBox(QtWidgets.QMessageBox.Icon.Question, APP_NAME,
                                    f"{APP_NAME} did not close cleanly last time. Restore the unsaved work on {name}?",
                                    parent=self)
        restore = box.addButton("Restore", QtWidgets.QMessageBox.ButtonRole.AcceptRole)
        discard = box.addButton("Discard", QtWidgets.QMessageBox.ButtonRole.DestructiveRole)
        box.exec()
        clicked = box.clickedButton()
        if clicked is restore:
            return True
        return False if clicked is discard else None  # closed unanswered: keep the work for the next start

    def ask_save_changes(self) -> str:
        """Ask what to do with unsaved changes before they would be lost: "save", "discard" or "cancel" (tests
        monkeypatch this)."""
        if QtWidgets.QApplication.platformName() == "offscreen":
            return "discard"  # nobody to ask
        buttons = QtWidgets.QMessageBox.StandardButton
        name = self.path.name if self.path else "the untitled workflow"
        answer = QtWidgets.QMessageBox.question(self, APP_NAME, f"Save the changes to {name}?",
                                                buttons.Save | buttons.Discard | buttons.Cancel, buttons.Save)
        return {buttons.Save: "save", buttons.Discard: "discard"}.get(answer, "cancel")

    def confirm_replace(self) -> bool:
        """Before unsaved work would be replaced or closed: offer to save it. False when the user cancels (or the
        save did not happen), and then nothing may be replaced."""
        if not self.modified:
            return True
        answer = self.ask_save_changes()
        return answer == "discard" or (answer == "save" and self.save())

    def _new_from_menu(self) -> None:
        if self.confirm_replace():
            self.new_workflow()

    def closeEvent(self, event: QtGui.QCloseEvent) -> None:  # noqa: N802 (Qt override)
        """Ask about unsaved changes (Cancel keeps the window), stop a running workflow, end the session cleanly."""
        if not self.confirm_replace():
            event.ignore()
            return
        self.recovery.close_cleanly()
        if self.worker is not None:
            self.worker.cancel()
            self.worker.wait()
        super().closeEvent(event)


def run_app(file: str | None = None) -> int:
    """Create the application and the window, open `file` (or the txt2img starter), and run the event loop."""
    from nodegraph.gui import replay_interrupt, start_interrupted
    from nodegraph.gui.first_start import maybe_show_first_start
    from nodegraph.gui.theme import apply_theme, prepare_high_dpi
    from nodegraph.packs import create_registry
    from nodegraph.paths import resources_dir

    if start_interrupted():  # Ctrl+C during the imports: no window yet, nothing to save
        raise KeyboardInterrupt
    prepare_high_dpi()  # before the QApplication exists
    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication([APP_NAME])
    app.setApplicationName(APP_NAME)
    app.setApplicationVersion(__version__)
    app.setDesktopFileName(APP_NAME)  # Wayland and the task bar match windows to the installed nodegraph.desktop
    app.setWindowIcon(app_icon())
    apply_theme(app)  # dark, matching the canvas
    window = MainWindow(create_registry())
    starter = resources_dir() / "workflows" / "txt2img.json"
    if window.restored:  # the user chose to get a crashed session's work back; it wins over FILE
        pass
    elif file and not window.open_file(file) and Path(file).is_file():
        window.import_file(file)  # not a nodegraph workflow: a ComfyUI workflow or an AUTOMATIC1111 image?
    elif starter.is_file():
        window.open_file(starter, remember=False)
        window.path = None
        window._update_title()
    screen = app.primaryScreen()
    if screen is not None:  # most of the screen, leaving room for the desktop's panels
        available = screen.availableGeometry()
        window.resize(max(1000, int(available.width() * 0.9)), max(700, int(available.height() * 0.9)))
    watch_window(window)  # SIGTERM / Ctrl+C close the window like its close button; smoke-test switches
    replay_interrupt()  # a Ctrl+C held while starting now closes the window that way
    window.show()
    maybe_show_first_start(window)  # no checkpoint yet: where models go, the user's installs, the demo checkpoint
    return app.exec()
