"""Other tools' work opened as nodegraph workflows: ComfyUI workflows (UI and API form), AUTOMATIC1111 / Forge
infotext, and the images that carry either; and ComfyUI API prompts written from our workflows.

Pure Python (no Qt, no torch): the CLI and the GUI both call it.
"""

from nodegraph.interop.importer import import_file, import_text
from nodegraph.interop.result import ImportResult, InteropError, ModelCatalog

__all__ = ["ImportResult", "InteropError", "ModelCatalog", "import_file", "import_text"]

# The readers behind import_file, for callers that need one format only: nodegraph.interop.a1111 (infotext),
# nodegraph.interop.comfyui_import (ComfyUI's UI and API forms), nodegraph.interop.comfyui_export.
