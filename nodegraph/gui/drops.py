"""Dropping files on the window: a workflow JSON opens, a PNG saved by the app restores its embedded workflow, other
tools' work (a ComfyUI workflow or image, an AUTOMATIC1111 / Forge image or infotext) is imported as an unsaved
workflow, and a model file adds the loader node of its kind (named relative to its model folder when it sits in
one)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6 import QtCore

from nodegraph.core.errors import NodegraphError, WorkflowError
from nodegraph.core.migrations import upgrade_node_versions
from nodegraph.images import read_png_workflow

#: model kind (as identified) → (loader node type, its file input, the model folder kind)
MODEL_LOADERS = {
    "checkpoint": ("LoadCheckpoint", "ckpt_name", "checkpoints"),
    "diffusers": ("LoadCheckpoint", "ckpt_name", "checkpoints"),
    "lora": ("LoadLoRA", "lora_name", "loras"),
    "vae": ("LoadVAE", "vae_name", "vae"),
    "embedding": ("LoadEmbedding", "embedding_name", "embeddings"),
    "hypernetwork": ("LoadHypernetwork", "hypernetwork_name", "hypernetworks"),
    "upscale_model": ("LoadUpscaleModel", "model_name", "upscale_models"),
    "controlnet": ("LoadControlNet", "control_net_name", "controlnet"),
}

#: Dropped files with these suffixes replace the canvas (a workflow, or work imported from another tool).
WORKFLOW_SUFFIXES = frozenset({".json", ".png", ".jpg", ".jpeg", ".webp", ".txt"})


def model_name(path: Path, folder_kind: str, folders: Any = None) -> str:
    """How a workflow names `path`: relative to the model folder holding it (of `folders`, a ModelFolders; the
    default folders when None), else its absolute path."""
    from nodegraph.models.discovery import ModelFolders

    resolved = path.resolve()
    for folder in (folders or ModelFolders()).folders(folder_kind):
        if resolved.is_relative_to(folder.resolve()):
            return resolved.relative_to(folder.resolve()).as_posix()
    return str(resolved)


def handle_drop(window: Any, paths: list[Path], pos: tuple[float, float] = (0.0, 0.0)) -> list[str]:
    """Act on dropped files; returns one message per file that could not be used (also shown in the status bar)."""
    problems = []
    for offset, path in enumerate(paths):
        suffix = path.suffix.lower()
        try:
            if suffix == ".json":
                if not window.open_file(path):  # not a nodegraph workflow: maybe ComfyUI's
                    _import(window, path)
            elif suffix == ".png":
                try:
                    workflow = read_png_workflow(path)
                except WorkflowError:  # no nodegraph workflow in it: maybe ComfyUI's or AUTOMATIC1111's
                    _import(window, path)
                else:
                    upgrade_node_versions(workflow, window.registry)
                    window.open_unsaved(workflow)  # unsaved work, restored from the image
            elif suffix in WORKFLOW_SUFFIXES:
                _import(window, path)
            else:
                _add_loader(window, path, (pos[0] + 30 * offset, pos[1] + 30 * offset))
        except (NodegraphError, OSError) as error:
            problems.append(str(error))
    if problems:
        window.state_label.setText("; ".join(problems))
    return problems


def _import(window: Any, path: Path) -> None:
    """Import another tool's workflow, image or infotext as an unsaved workflow; InteropError when it holds none."""
    from nodegraph.interop import import_file

    with window.importing(path.name):
        result = import_file(path, getattr(window, "model_folders", None))
    window.open_imported(result, path.name)


def _add_loader(window: Any, path: Path, pos: tuple[float, float]) -> None:
    from nodegraph.models.identify import identify

    info = identify(path)
    if info.kind not in MODEL_LOADERS:
        raise NodegraphError(f"{path.name}: a {info.kind} file has no loader node")
    node_type, input_name, folder_kind = MODEL_LOADERS[info.kind]
    node_def = window.registry[node_type]
    inputs = {spec.name: spec.default for spec in node_def.literal_inputs if spec.default is not None}
    inputs[input_name] = model_name(path, folder_kind, getattr(window, "model_folders", None))
    window.adapter.add_node(node_type, pos, inputs=inputs)


class DropHandler(QtCore.QObject):
    """An event filter accepting file drops on the window and on the canvas (whose view handles only its own
    drags otherwise)."""

    def __init__(self, window: Any):
        super().__init__(window)
        self.window = window
        self.viewer = window.adapter.graph.viewer()
        window.setAcceptDrops(True)
        self.viewer.setAcceptDrops(True)
        self.viewer.viewport().setAcceptDrops(True)
        for target in (window, self.viewer, self.viewer.viewport()):
            target.installEventFilter(self)

    def eventFilter(self, watched: QtCore.QObject, event: QtCore.QEvent) -> bool:  # noqa: N802 (Qt override)
        kind = event.type()
        if kind in (QtCore.QEvent.Type.DragEnter, QtCore.QEvent.Type.DragMove, QtCore.QEvent.Type.Drop):
            urls = [url for url in event.mimeData().urls() if url.isLocalFile()] if event.mimeData() else []
            if not urls:
                return False
            event.acceptProposedAction()
            if kind == QtCore.QEvent.Type.Drop:
                scene_pos = self.viewer.mapToScene(self.viewer.viewport().mapFromGlobal(
                    watched.mapToGlobal(event.position().toPoint())))
                paths = [Path(url.toLocalFile()) for url in urls]
                replaces = any(path.suffix.lower() in WORKFLOW_SUFFIXES for path in paths)
                if not replaces or self.window.confirm_replace():  # a workflow or image replaces the canvas
                    handle_drop(self.window, paths, (scene_pos.x(), scene_pos.y()))
            return True
        return False
