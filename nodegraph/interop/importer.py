"""One entry point for everything a user may bring: it recognises the file or text and hands it to the right reader.

Recognised: nodegraph workflows and images; ComfyUI workflows in UI or API form, as JSON or inside a PNG
(``workflow`` and ``prompt`` text chunks: the UI form is preferred, the API form is the fallback) or a WebP/JPEG
(ComfyUI's EXIF fields); AUTOMATIC1111 / Forge infotext in a PNG ``parameters`` chunk, in a JPEG/WebP EXIF
UserComment, or as plain text.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nodegraph.core.errors import WorkflowError
from nodegraph.core.workflow_io import FORMAT_NAME, from_document, parse_json, to_document
from nodegraph.interop.comfyui_import import import_api, import_ui, is_api_prompt, is_ui_workflow
from nodegraph.interop.result import ImportResult, InteropError, ModelCatalog

#: File signatures of the image formats that carry metadata.
_IMAGE_MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"RIFF")

#: Text files larger than this are not workflows or infotext.
MAX_TEXT_BYTES = 64 * 1024 * 1024


def import_file(path: str | Path, catalog: ModelCatalog | None = None) -> ImportResult:
    """Import a workflow file, an image carrying a workflow or infotext, or a text file holding infotext.

    `catalog` lets AUTOMATIC1111 imports find the user's checkpoint, LoRAs and embeddings by name and hash.
    Raises :class:`InteropError` naming the file when it holds nothing we can import.
    """
    path = Path(path)
    try:
        with path.open("rb") as handle:
            head = handle.read(12)
            if _is_image(head):
                result = _import_image(path, catalog)
            else:
                raw = head + handle.read(MAX_TEXT_BYTES)
                if len(raw) > MAX_TEXT_BYTES:
                    raise InteropError("too large for a workflow or infotext")
                result = import_text(_decode(raw), catalog)
    except OSError as error:
        raise InteropError(f"{path}: cannot read the file: {error.strerror or error}") from None
    except InteropError as error:
        raise InteropError(f"{path}: {error}") from None
    return result


def import_text(text: str, catalog: ModelCatalog | None = None) -> ImportResult:
    """Import JSON (a nodegraph or ComfyUI workflow) or AUTOMATIC1111 infotext given as text (e.g. pasted)."""
    if text.lstrip().startswith(("{", "[")):
        return _import_json(_parse(text, "the JSON"))
    from nodegraph.interop.a1111 import import_infotext

    return _checked(import_infotext(text, catalog))


def _is_image(head: bytes) -> bool:
    return head.startswith(_IMAGE_MAGIC[:2]) or (head.startswith(b"RIFF") and head[8:12] == b"WEBP")


def _decode(raw: bytes) -> str:
    for encoding in ("utf-8-sig", "utf-16"):
        try:
            return raw.decode(encoding)
        except UnicodeError:
            continue
    raise InteropError("not text (neither a workflow nor infotext)")


def _parse(text: str, what: str) -> Any:
    try:
        return parse_json(text)
    except WorkflowError as error:
        raise InteropError(f"{what} cannot be read: {error}") from None


def _import_json(doc: Any, source_prefix: str = "") -> ImportResult:
    if isinstance(doc, dict) and doc.get("format") == FORMAT_NAME:
        try:
            return ImportResult(from_document(doc), f"{source_prefix}nodegraph workflow")
        except WorkflowError as error:
            raise InteropError(str(error)) from None
    try:
        if is_ui_workflow(doc):
            return _checked(import_ui(doc, source=f"{source_prefix}ComfyUI workflow (UI format)"))
        if is_api_prompt(doc):
            return _checked(import_api(doc, source=f"{source_prefix}ComfyUI workflow (API format)"))
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as error:
        raise InteropError(f"a malformed ComfyUI workflow ({type(error).__name__}: {error})") from None
    raise InteropError("JSON, but not a workflow: neither nodegraph's format nor ComfyUI's (UI or API form)")


def _checked(result: ImportResult) -> ImportResult:
    """The result, once its workflow has made the round trip through our file format (so whatever was imported
    can be saved and opened again)."""
    try:
        result.workflow = from_document(to_document(result.workflow))
    except WorkflowError as error:
        raise InteropError(f"the imported workflow cannot be saved: {error}") from None
    return result


def _import_image(path: Path, catalog: ModelCatalog | None) -> ImportResult:
    from nodegraph.images import WORKFLOW_CHUNK

    texts, infotext = _image_texts(path)
    if WORKFLOW_CHUNK in texts:
        return _import_json(_parse(texts[WORKFLOW_CHUNK], "its nodegraph workflow"), "image with a ")
    problems = []
    for key in ("workflow", "prompt"):  # the UI form first: it keeps positions, groups and notes
        if key in texts:
            try:
                result = _import_json(_parse(texts[key], f"its ComfyUI {key!r} data"), "image with a ")
            except InteropError as error:
                problems.append(str(error))
                continue
            result.warnings[:0] = [f"ComfyUI's UI workflow in the image could not be read ({p}); the API form was "
                                   f"used" for p in problems]
            return result
    if problems:
        raise InteropError("; ".join(problems))
    if infotext:
        from nodegraph.interop.a1111 import import_infotext

        return _checked(import_infotext(infotext, catalog, source="AUTOMATIC1111 image"))
    raise InteropError("this image carries no workflow: no nodegraph, ComfyUI or AUTOMATIC1111 data in it")


def _image_texts(path: Path) -> tuple[dict[str, str], str | None]:
    """An image's text metadata, read in one opening: PNG text chunks with ComfyUI's ``workflow:``/``prompt:`` EXIF
    fields (WebP), and its AUTOMATIC1111 infotext."""
    from PIL import Image, UnidentifiedImageError

    from nodegraph.interop.image_text import infotext_in

    try:
        with Image.open(path) as image:
            texts = {str(k): v for k, v in getattr(image, "text", {}).items() if isinstance(v, str)}
            for value in image.getexif().values():
                if isinstance(value, bytes):
                    value = value.decode("utf-8", "replace")
                if isinstance(value, str):
                    for key in ("workflow", "prompt"):
                        if value.startswith(f"{key}:"):
                            texts.setdefault(key, value[len(key) + 1:])
            infotext = infotext_in(image)
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise InteropError(f"cannot read the image ({error})") from None
    return texts, infotext
