"""PNG files with their metadata: the workflow (``nodegraph`` chunk, so dropping the image back restores the graph)
and AUTOMATIC1111's ``parameters`` chunk (so other tools and sites read prompt, sampler, seed and model).

Pillow writes the text chunks; nothing here needs torch.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from nodegraph import __version__
from nodegraph.core.errors import WorkflowError
from nodegraph.core.graph import Workflow
from nodegraph.core.workflow_io import dumps, from_document, parse_json

WORKFLOW_CHUNK = "nodegraph"
PARAMETERS_CHUNK = "parameters"


def next_free_path(folder: Path, prefix: str) -> Path:
    """Reserve ``<prefix>_00001_.png`` (the next number not taken) in `folder`; never overwrites, even when two
    runs save at once (the file is created exclusively)."""
    folder.mkdir(parents=True, exist_ok=True)
    stem = Path(prefix).name or "nodegraph"
    sub = folder / Path(prefix).parent
    sub.mkdir(parents=True, exist_ok=True)
    taken = [int(p.name[len(stem) + 1:len(stem) + 6]) for p in sub.glob(f"{stem}_[0-9][0-9][0-9][0-9][0-9]_.png")]
    number = max(taken, default=0) + 1
    while True:
        path = sub / f"{stem}_{number:05d}_.png"
        try:
            path.open("xb").close()
            return path
        except FileExistsError:
            number += 1


def a1111_parameters(fields: Mapping[str, Any]) -> str:
    """The AUTOMATIC1111 ``parameters`` text: the prompt, ``Negative prompt: …``, then ``Key: value`` pairs.

    `fields` holds ``prompt``, ``negative_prompt`` and the pairs in order (``Steps``, ``Sampler``, …); empty values
    are left out, and a value holding a comma or colon is quoted as AUTOMATIC1111 does.
    """
    lines = [str(fields.get("prompt", ""))]
    if fields.get("negative_prompt"):
        lines.append(f"Negative prompt: {fields['negative_prompt']}")
    pairs = []
    for key, value in fields.items():
        if key in ("prompt", "negative_prompt") or value in (None, ""):
            continue
        text = str(value)
        if any(c in text for c in ",:\n"):
            text = json.dumps(text)
        pairs.append(f"{key}: {text}")
    pairs.append(f"Version: nodegraph {__version__}")
    lines.append(", ".join(pairs))
    return "\n".join(lines)


def write_png(path: Path, pixels: Any, text: Mapping[str, str]) -> Path:
    """Write an H×W×3 uint8 array as a PNG with the given text chunks (iTXt where non-Latin-1 text needs it)."""
    from PIL import Image, PngImagePlugin

    info = PngImagePlugin.PngInfo()
    for key, value in text.items():
        try:
            value.encode("latin-1")
            info.add_text(key, value)
        except UnicodeEncodeError:
            info.add_itxt(key, value)
    Image.fromarray(pixels, mode="RGB").save(path, format="PNG", pnginfo=info, compress_level=4)
    return path


def workflow_chunks(workflow: Workflow, parameters: str) -> dict[str, str]:
    """The text chunks Save Image writes: the whole workflow and the AUTOMATIC1111 parameters."""
    return {WORKFLOW_CHUNK: dumps(workflow), PARAMETERS_CHUNK: parameters}


def read_png_text(path: Path) -> dict[str, str]:
    """All text chunks of a PNG."""
    from PIL import Image

    with Image.open(path) as image:
        image.load()
        return {str(k): str(v) for k, v in getattr(image, "text", {}).items()}


def read_png_workflow(path: Path) -> Workflow:
    """The workflow saved inside a PNG by Save Image; WorkflowError when the image carries none."""
    chunks = read_png_text(path)
    if WORKFLOW_CHUNK not in chunks:
        raise WorkflowError("this image carries no nodegraph workflow", str(path))
    return from_document(parse_json(chunks[WORKFLOW_CHUNK]))


def to_uint8(pixels: Sequence[Any]) -> Any:
    """Float pixels in [0, 1] (a torch tensor or numpy array, H×W×3) as a uint8 numpy array, rounded as the
    libraries' ``numpy_to_pil`` does."""
    import numpy

    array = pixels.detach().cpu().float().numpy() if hasattr(pixels, "detach") else numpy.asarray(pixels)
    return (array.clip(0, 1) * 255).round().astype("uint8")
