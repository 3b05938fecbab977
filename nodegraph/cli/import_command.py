"""`nodegraph import`: a ComfyUI workflow (UI or API form, JSON or image) or AUTOMATIC1111 infotext (image or text
file) saved as a nodegraph workflow, with what was not carried over and what still blocks a run listed.
`nodegraph export`: a workflow written as a ComfyUI API prompt."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from nodegraph.cli import codes
from nodegraph.cli.commands import check_workflow, load_registry, model_dirs, user_settings
from nodegraph.core.migrations import upgrade_node_versions
from nodegraph.core.workflow_io import dumps, save


def default_output(source: Path) -> Path:
    """Where an import is written when no -o is given: beside the source, as ``<name>.nodegraph.json``."""
    stem = source.name[:-len(".json")] if source.name.endswith(".json") else source.stem
    return source.with_name(f"{stem}.nodegraph.json")


def import_command(args: argparse.Namespace) -> int:
    """Import `args.file`, write the workflow (or print it with ``-o -``), and list warnings and problems."""
    from nodegraph.interop import import_file
    from nodegraph.models.discovery import ModelFolders

    settings = user_settings()
    folders = model_dirs(args, settings)
    result = import_file(args.file, ModelFolders([Path(d) for d in folders]))
    registry = load_registry(args)
    upgrade_node_versions(result.workflow, registry)
    for warning in result.warnings:
        print(f"nodegraph: warning: {warning}", file=sys.stderr)
    workflow = result.workflow
    if args.output == "-":
        sys.stdout.write(dumps(workflow))
        target = "standard output"
    else:
        out = Path(args.output) if args.output else default_output(Path(args.file))
        if out.exists() and not args.force:
            print(f"nodegraph: error: {out} exists; pass --force to replace it, or -o to write elsewhere",
                  file=sys.stderr)
            return codes.INVALID
        save(workflow, out)
        target = str(out)
    print(f"imported {args.file} ({result.source}): {len(workflow)} nodes, {len(workflow.links)} links -> {target}",
          file=sys.stderr)
    problems = check_workflow(workflow, registry, folders)
    if problems:
        print(f"before it runs, {len(problems)} problem(s) to fix:", file=sys.stderr)
        for problem in problems:
            print(f"  {problem}", file=sys.stderr)
    return codes.OK


def export_command(args: argparse.Namespace) -> int:
    """Write a workflow as a ComfyUI API prompt (to ``-o`` or standard output); exit 2 naming every node that has
    no ComfyUI equivalent."""
    import json

    from nodegraph.core.workflow_io import load, write_text_atomic
    from nodegraph.interop.comfyui_export import export_api

    registry = load_registry(args)
    workflow = load(args.workflow)
    upgrade_node_versions(workflow, registry)
    text = json.dumps(export_api(workflow, registry), indent=2, ensure_ascii=False) + "\n"
    if args.output in (None, "-"):
        sys.stdout.write(text)
    else:
        write_text_atomic(Path(args.output), text)
        print(f"exported {args.workflow} as a ComfyUI API prompt -> {args.output}", file=sys.stderr)
    return codes.OK
