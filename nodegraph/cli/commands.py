"""The small sub-commands: gui, validate and nodes."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from nodegraph.cli import codes
from nodegraph.core.errors import WorkflowError
from nodegraph.core.migrations import upgrade_node_versions
from nodegraph.core.registry import NodeRegistry
from nodegraph.core.schema import InputSpec, NodeDef
from nodegraph.core.validate import validate
from nodegraph.core.workflow_io import load
from nodegraph.packs import create_registry
from nodegraph.settings import AppSettings


def load_registry(args: argparse.Namespace) -> NodeRegistry:
    """The registry for this command, with any broken node pack reported as a warning on stderr."""
    registry = create_registry(args.node_pack)
    for problem in registry.problems:
        print(f"nodegraph: warning: {problem}", file=sys.stderr)
        if args.debug and problem.details:
            print(problem.details, file=sys.stderr)
    return registry


def user_settings() -> AppSettings:
    """The app's settings (shared with the desktop app); a damaged settings file is a warning on stderr."""
    settings = AppSettings.load()
    if settings.problem:
        print(f"nodegraph: warning: {settings.problem}", file=sys.stderr)
    return settings


def model_dirs(args: argparse.Namespace, settings: AppSettings) -> list[str]:
    """The model folders to search: each ``--models-dir`` first, then those added in the app's settings (so a folder
    added in the app is found by the command line too)."""
    given = [str(Path(d).expanduser()) for d in args.models_dir]
    return given + [str(root) for root in settings.model_root_paths() if str(root) not in given]


def check_workflow(workflow, registry, models_dirs: list[str]) -> list:
    """Every problem of a workflow: validation (with model files looked up in the data folder and `--models-dir`)
    and the pre-flight family checks of add-ons against their checkpoint."""
    from nodegraph.models.discovery import ModelFolders, file_check
    from nodegraph.models.preflight import family_problems

    folders = ModelFolders([Path(d) for d in models_dirs])
    problems = validate(workflow, registry, file_check=file_check(folders))
    return problems + family_problems(workflow, registry, folders)


def gui_command(args: argparse.Namespace) -> int:
    """Start the desktop app, opening `args.file` when given (the txt2img starter otherwise)."""
    try:
        from nodegraph.gui.main_window import run_app
    except ImportError as error:
        print(f"nodegraph: the desktop app needs PySide6 and NodeGraphQt ({error}); use `nodegraph run WORKFLOW` to "
              "run a workflow headless (see `nodegraph --help`)", file=sys.stderr)
        return codes.ERROR
    return run_app(getattr(args, "file", None))


def validate_command(args: argparse.Namespace) -> int:
    """Print every problem of a workflow, one per line, naming node id and port; exit 2 when there is any."""
    registry = load_registry(args)
    try:
        workflow = load(args.workflow)
        upgrade_node_versions(workflow, registry)
    except WorkflowError as error:
        print(error)
        return codes.INVALID
    problems = check_workflow(workflow, registry, model_dirs(args, user_settings()))
    for problem in problems:
        print(f"{args.workflow}: {problem}")
    if problems:
        print(f"{len(problems)} problem(s) found", file=sys.stderr)
        return codes.INVALID
    print(f"{args.workflow}: ok ({len(workflow)} nodes, {len(workflow.links)} links)")
    return codes.OK


def describe_input(spec: InputSpec) -> dict[str, Any]:
    """An input's declaration as JSON-ready data (keys with no value left out)."""
    data: dict[str, Any] = {"name": spec.name, "type": spec.type, "optional": spec.optional}
    for key in ("default", "min", "max", "step", "multiple_of", "tooltip", "file_kind"):
        value = getattr(spec, key)
        if value not in (None, ""):
            data[key] = value
    if spec.choices:
        data["choices"] = list(spec.choices)
    if spec.labels:
        data["labels"] = dict(spec.labels)
    if spec.multiline:
        data["multiline"] = True
    return data


def describe_node(node_def: NodeDef, pack: str | None) -> dict[str, Any]:
    """A node type's schema as JSON-ready data."""
    return {
        "type": node_def.type,
        "version": node_def.version,
        "display_name": node_def.display_name,
        "category": node_def.category,
        "description": node_def.description,
        "pack": pack,
        "output_node": node_def.output_node,
        "inputs": [describe_input(spec) for spec in node_def.inputs],
        "outputs": [{"name": spec.name, "type": spec.type} for spec in node_def.outputs],
    }


def nodes_command(args: argparse.Namespace) -> int:
    """List node types with their inputs, outputs, defaults and choices."""
    registry = load_registry(args)
    described = sorted((describe_node(d, registry.pack_of(d.type)) for d in registry),
                       key=lambda d: (d["category"], d["display_name"]))
    if args.json:
        json.dump(described, sys.stdout, indent=2)
        print()
        return codes.OK
    category = None
    for node in described:
        if node["category"] != category:
            category = node["category"]
            print(f"\n[{category}]")
        print(f"{node['type']} ({node['display_name']}, v{node['version']}): {node['description']}")
        for spec in node["inputs"]:
            print("    in  " + _input_line(spec))
        for spec in node["outputs"]:
            print(f"    out {spec['name']}: {spec['type']}")
    return codes.OK


def _input_line(spec: dict[str, Any]) -> str:
    parts = [f"{spec['name']}: {spec['type']}"]
    if "default" in spec:
        parts.append(f"= {json.dumps(spec['default'])}")
    if "min" in spec or "max" in spec:
        parts.append(f"[{spec.get('min', '')}..{spec.get('max', '')}]")
    if "choices" in spec:
        parts.append("one of " + ", ".join(spec["choices"]))
    if spec["optional"]:
        parts.append("(optional)")
    return " ".join(parts)
