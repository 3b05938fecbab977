"""Reading and writing workflow files (format "nodegraph-workflow", see docs/workflow-format.md).

Reading checks the structure and reports the first problem as a :class:`WorkflowError` naming where it is (line
and column for malformed JSON, a JSON path otherwise). Writing is canonical — fixed key order, nodes and links
sorted, one link per line, a trailing newline — so that an unchanged graph always saves to the same bytes and a
changed one diffs cleanly in git. Saving is atomic: a crash mid-save never leaves a half-written file.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import secrets
import stat
import time
from pathlib import Path
from typing import Any

from nodegraph.core.errors import WorkflowError
from nodegraph.core.graph import Link, NodeInstance, Workflow, link_sort_key, natural_key
from nodegraph.core.migrations import CURRENT_VERSION, migrate
from nodegraph.core.schema import NODE_MODES
from nodegraph.core.validate import shorten, shorten_text

FORMAT_NAME = "nodegraph-workflow"
_NODE_KEYS = ("type", "type_version", "title", "mode", "inputs", "ui")
_TOP_KEYS = ("format", "version", "nodes", "links", "meta")


# --- reading ------------------------------------------------------------------------------------------------------
def parse_json(text: str) -> Any:
    """Parse JSON text strictly: no NaN/Infinity, no duplicate keys; errors give line and column."""

    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for key, value in pairs:
            if key in result:
                raise WorkflowError(f"key {shorten(key)} appears twice in one object")
            result[key] = value
        return result

    def no_constants(name: str) -> Any:
        raise WorkflowError(f"{name} is not valid JSON")

    def finite_float(literal: str) -> float:
        value = float(literal)
        if not math.isfinite(value):
            raise WorkflowError(f"the number {shorten_text(literal)} is too large")
        return value

    def bounded_int(literal: str) -> int:
        digits = len(literal.lstrip("-"))
        if digits > _MAX_INT_DIGITS:
            raise WorkflowError(f"an integer of {digits} digits is too large")
        return int(literal)

    try:
        return json.loads(text, object_pairs_hook=no_duplicates, parse_constant=no_constants,
                          parse_float=finite_float, parse_int=bounded_int)
    except json.JSONDecodeError as error:
        raise WorkflowError(f"malformed JSON: {error.msg}", f"line {error.lineno}, column {error.colno}") from None
    except RecursionError:
        raise WorkflowError("malformed JSON: nested too deeply") from None


def loads(text: str) -> Workflow:
    """Parse a workflow from JSON text (any supported format version)."""
    return from_document(parse_json(text))


def load(path: str | Path) -> Workflow:
    """Read a workflow file; every failure is a :class:`WorkflowError` naming the file."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise WorkflowError(f"cannot read the file: {error.strerror or error}", str(path)) from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise WorkflowError(f"not UTF-8 text (byte {error.start})", str(path)) from None
    try:
        return loads(text)
    except WorkflowError as error:
        raise WorkflowError(str(error), str(path)) from None


def from_document(doc: Any) -> Workflow:
    """Build a :class:`Workflow` from a parsed JSON document, migrating older versions first."""
    if not isinstance(doc, dict):
        raise WorkflowError("a workflow file must hold a JSON object")
    if doc.get("format") != FORMAT_NAME:
        raise WorkflowError(_not_a_workflow_reason(doc))
    doc = migrate(doc)
    _check_json(doc, "")
    nodes_doc = _expect(doc.get("nodes", {}), dict, "nodes", "an object of nodes keyed by id")
    nodes = [_read_node(node_id, entry) for node_id, entry in nodes_doc.items()]
    links_doc = _expect(doc.get("links", []), list, "links", "a list")
    links = [_read_link(index, entry) for index, entry in enumerate(links_doc)]
    meta = _expect(doc.get("meta", {}), dict, "meta", "an object")
    extra = {key: value for key, value in doc.items() if key not in _TOP_KEYS}
    return Workflow(nodes, links, meta, extra)


_MAX_DEPTH = 64
#: Integers of more digits are refused, read from text or given as Python values (int() and str() of such numbers
#: are slow, and str() fails beyond 4300 digits).
_MAX_INT_DIGITS = 1000
_INT_LIMIT = 10**_MAX_INT_DIGITS


def _check_json(value: Any, where: str, depth: int = 0) -> None:
    """Refuse values a workflow file cannot hold: non-JSON types, non-finite numbers, absurd nesting."""
    if depth > _MAX_DEPTH:
        raise WorkflowError("nested too deeply", where or None)
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise WorkflowError(f"key {shorten(key)} is not a string", where or None)
            _check_json(item, f"{where}.{shorten_text(key)}" if where else shorten_text(key), depth + 1)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check_json(item, f"{where}[{index}]", depth + 1)
    elif isinstance(value, float) and not math.isfinite(value):
        raise WorkflowError("numbers must be finite", where or None)
    elif isinstance(value, int) and abs(value) >= _INT_LIMIT:
        raise WorkflowError(f"an integer of more than {_MAX_INT_DIGITS} digits is too large", where or None)
    elif value is not None and not isinstance(value, (bool, int, float, str)):
        raise WorkflowError(f"{type(value).__name__} is not a JSON value", where or None)


def _not_a_workflow_reason(doc: dict[str, Any]) -> str:
    if "format" in doc:
        return f"unknown format {shorten(doc['format'])}: expected {FORMAT_NAME!r}"
    if isinstance(doc.get("nodes"), list) and "links" in doc:
        return ("this looks like a ComfyUI workflow (UI format), not a nodegraph workflow: open it with File > "
                "Import, or convert it with `nodegraph import FILE`")
    if doc and all(isinstance(v, dict) and "class_type" in v for v in doc.values()):
        return ("this looks like a ComfyUI workflow (API format), not a nodegraph workflow: open it with File > "
                "Import, or convert it with `nodegraph import FILE`")
    return f"not a nodegraph workflow: the 'format' key must be {FORMAT_NAME!r}"


def _expect(value: Any, kind: type, where: str, what: str) -> Any:
    if not isinstance(value, kind):
        raise WorkflowError(f"expected {what}", where)
    return value


def _read_node(node_id: Any, entry: Any) -> NodeInstance:
    where = f"nodes.{shorten_text(node_id)}"
    if not node_id:
        raise WorkflowError("a node id must not be empty", "nodes")
    entry = _expect(entry, dict, where, "an object")
    type_id = entry.get("type")
    if not isinstance(type_id, str) or not type_id:
        raise WorkflowError("expected a non-empty string 'type'", where)
    inputs = _expect(entry.get("inputs", {}), dict, f"{where}.inputs", "an object of input values")
    title = entry.get("title")
    if title is not None and not isinstance(title, str):
        raise WorkflowError("expected a string", f"{where}.title")
    mode = entry.get("mode", "normal")
    if mode not in NODE_MODES:
        raise WorkflowError(f"expected one of {', '.join(NODE_MODES)}, got {shorten(mode)}", f"{where}.mode")
    ui = _expect(entry.get("ui", {}), dict, f"{where}.ui", "an object")
    type_version = entry.get("type_version")
    if type_version is not None and (isinstance(type_version, bool) or not isinstance(type_version, int)
                                     or type_version < 1):
        raise WorkflowError("expected an integer >= 1", f"{where}.type_version")
    extra = {key: value for key, value in entry.items() if key not in _NODE_KEYS}
    return NodeInstance(node_id, type_id, dict(inputs), title, mode, dict(ui), type_version, extra)


def _read_link(index: int, entry: Any) -> Link:
    where = f"links[{index}]"
    entry = _expect(entry, dict, where, 'an object {"from": [node, output], "to": [node, input]}')
    ends = []
    for key in ("from", "to"):
        end = entry.get(key)
        if not (isinstance(end, list) and len(end) == 2 and all(isinstance(part, str) and part for part in end)):
            raise WorkflowError("expected a pair of non-empty strings [node id, port name]", f"{where}.{key}")
        ends += end
    unknown = set(entry) - {"from", "to"}
    if unknown:
        raise WorkflowError(f"unknown key {sorted(unknown)[0]!r}", where)
    return Link(*ends)


# --- writing ------------------------------------------------------------------------------------------------------
def to_document(workflow: Workflow) -> dict[str, Any]:
    """The canonical JSON document of a workflow (fixed key order, sorted nodes and links)."""
    nodes: dict[str, Any] = {}
    for node_id in sorted(workflow.nodes, key=lambda node_id: (natural_key(node_id), node_id)):
        node = workflow.nodes[node_id]
        entry: dict[str, Any] = {"type": node.type}
        if node.type_version is not None:
            entry["type_version"] = node.type_version
        if node.title is not None:
            entry["title"] = node.title
        if node.mode != "normal":
            entry["mode"] = node.mode
        entry["inputs"] = _sorted(node.inputs)
        if node.ui:
            entry["ui"] = _sorted(node.ui)
        entry.update(_sorted(node.extra))
        nodes[node_id] = entry
    links = [{"from": [link.from_node, link.from_output], "to": [link.to_node, link.to_input]}
             for link in sorted(workflow.links, key=link_sort_key)]
    doc = {"format": FORMAT_NAME, "version": CURRENT_VERSION, "nodes": nodes, "links": links,
           "meta": _sorted(workflow.meta)}
    doc.update(_sorted(workflow.extra))
    return doc


def _sorted(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _sorted(value[key]) for key in sorted(value)}
    if isinstance(value, list):
        return [_sorted(item) for item in value]
    return value


def dumps(workflow: Workflow) -> str:
    """The canonical text of a workflow file, ending with a newline."""
    return _format(to_document(workflow), 0) + "\n"


def _format(value: Any, depth: int, one_item_per_line: bool = False) -> str:
    # json.dumps(indent=…) cannot keep one link or one [x, y] position per line; this keeps files short and diffable.
    pad, inner = "  " * depth, "  " * (depth + 1)
    if isinstance(value, dict) and value:
        items = [f"{inner}{_inline(key)}: {_format(item, depth + 1, depth == 0 and key == 'links')}"
                 for key, item in value.items()]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if isinstance(value, list) and (one_item_per_line or any(isinstance(i, (dict, list)) for i in value)) and value:
        items = [f"{inner}{_inline(item) if one_item_per_line else _format(item, depth + 1)}" for item in value]
        return "[\n" + ",\n".join(items) + "\n" + pad + "]"
    return _inline(value)


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def _inline(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(", ", ": "))
    # A lone surrogate (legal as a JSON escape, not as UTF-8) is written back as the escape it was read from.
    return _LONE_SURROGATE.sub(lambda match: f"\\u{ord(match.group()):04x}", text)


def save(workflow: Workflow, path: str | Path) -> None:
    """Write a workflow file atomically (temporary file, fsync, rename), so a crash never leaves a partial file."""
    text = dumps(workflow)
    write_text_atomic(Path(path), text)


# Temporary files of a save: ".<target name>.<8 random characters>.tmp" next to the target's real path.
_TEMP_NAME = re.compile(r"\.(?P<name>.+)\.[a-z0-9_]{8}\.tmp")
STALE_TEMP_AGE_S = 30.0  # a leftover this old belongs to a killed save, never to one still running


def _temp_name(name: str) -> str:
    return f".{name}.{secrets.token_hex(4)}.tmp"


def remove_stale_temp_files(folder: str | Path, older_than_s: float = STALE_TEMP_AGE_S,
                            name: str | None = None) -> list[Path]:
    """Delete the temporary files that saves killed mid-write left in `folder` (only our name pattern, only regular
    files older than `older_than_s`, so a save running now is never touched; only those of target `name` if given).
    Returns the removed paths; a missing or unreadable folder removes nothing."""
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    now = time.time()
    for entry in entries:
        match = _TEMP_NAME.fullmatch(entry.name)
        if match is None or (name is not None and match["name"] != name):
            continue
        try:
            info = entry.stat(follow_symlinks=False)
            if not stat.S_ISREG(info.st_mode) or now - info.st_mtime < older_than_s:
                continue
            os.unlink(entry.path)
        except OSError:
            continue
        removed.append(Path(entry.path))
    return removed


def _fsync_folder(folder: Path) -> None:
    """Make a rename in `folder` durable; skipped where folders cannot be opened (Windows) or synced."""
    if os.name == "nt":
        return
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)


def write_text_atomic(path: Path, text: str) -> None:
    """Replace `path` with `text` in one step: readers see the old file or the new one, never a mix, and a crash
    loses neither. A symlink stays a symlink (its target gets the text); the file keeps its permission bits (a new
    one gets the umask's default); file and folder are fsynced; stale temporary files of this target are removed."""
    real = Path(os.path.realpath(path))
    real.parent.mkdir(parents=True, exist_ok=True)
    try:
        mode: int | None = stat.S_IMODE(os.stat(real).st_mode)
    except FileNotFoundError:
        mode = None
    remove_stale_temp_files(real.parent, name=real.name)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    while True:
        tmp = real.parent / _temp_name(real.name)
        try:
            # 0o600 until fchmod when replacing a file (never more open than it was); else 0o666 less the umask
            fd = os.open(tmp, flags, 0o600 if mode is not None else 0o666)
            break
        except FileExistsError:
            continue
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        if mode is not None:
            with contextlib.suppress(OSError):  # a file system without permission bits: the save matters more
                os.chmod(tmp, mode)
        os.replace(tmp, real)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_folder(real.parent)
