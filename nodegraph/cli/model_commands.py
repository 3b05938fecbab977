"""`nodegraph models` and `nodegraph inspect`: what model files are there, and what one file is."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from nodegraph.cli import codes


def models_command(args: argparse.Namespace) -> int:
    """List the model files found in every model folder (``--models-dir``, then the app settings' folders), by kind,
    with their family."""
    from nodegraph.cli.commands import model_dirs, user_settings
    from nodegraph.models.discovery import KIND_FOLDERS, ModelFolders
    from nodegraph.models.errors import ModelError
    from nodegraph.models.identify import identify
    from nodegraph.models.safe_load import is_large_pickle

    folders = ModelFolders([Path(d) for d in model_dirs(args, user_settings())])
    report: dict[str, Any] = {}
    for kind in KIND_FOLDERS:
        items = []
        for name in folders.list(kind):
            path = folders.resolve(kind, name)
            item: dict[str, Any] = {"name": name, "path": str(path)}
            if found_in := folders.found_in(kind, name):  # e.g. an embedding in a LoRA folder
                item["found_in"] = found_in
            if is_large_pickle(path):
                item.update(kind=None, family="unknown", note="large pickle: run `nodegraph inspect` to identify it")
            else:
                try:
                    info = identify(path).to_json()
                    item.update({key: info[key] for key in ("kind", "variant", "family", "prediction", "bytes")})
                    if info["kind"] == "upscale_model":
                        item["notes"] = info["notes"]
                    if info["unsupported"]:
                        item["unsupported"] = info["unsupported"]
                except ModelError as error:
                    item["error"] = str(error)
            items.append(item)
        report[kind] = {"folders": [str(f) for f in folders.folders(kind)], "models": items}
    if args.json:
        json.dump(report, sys.stdout, indent=2)
        print()
        return codes.OK
    for kind, section in report.items():
        where = ", ".join(section["folders"]) or "no folder yet"
        print(f"{kind} ({where}):")
        for item in section["models"]:
            # upscale models fit every family: their architecture and scale say more than "unknown"
            parts = ((item.get("variant"), *item.get("notes", ())[:1]) if item.get("kind") == "upscale_model"
                     else (item.get("family"), item.get("variant") or ""))
            detail = item.get("error") or item.get("unsupported") or " ".join(str(part) for part in parts if part)
            print(f"  {item['name']}  [{detail}]" + (f"  ({item['found_in']})" if "found_in" in item else ""))
        if not section["models"]:
            print("  (none)")
    return codes.OK


def inspect_command(args: argparse.Namespace) -> int:
    """Print what a model file is; a refused or unreadable file exits 2 with the reason."""
    from nodegraph.models.errors import ModelError
    from nodegraph.models.identify import identify

    try:
        info = identify(Path(args.file), prediction_override=args.prediction)
    except ModelError as error:
        print(f"nodegraph: {error}", file=sys.stderr)
        return codes.INVALID
    data = info.to_json()
    if args.json:
        json.dump(data, sys.stdout, indent=2)
        print()
        return codes.OK
    for key in ("path", "kind", "variant", "family", "prediction", "prediction_source", "tensors", "dtypes", "bytes",
                "unsupported", "notes"):
        value = data[key]
        if value not in (None, [], ""):
            print(f"{key:>17}: {', '.join(map(str, value)) if isinstance(value, list) else value}")
    return codes.OK
