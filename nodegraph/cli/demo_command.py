"""`nodegraph demo`: the whole pipeline on a fresh machine with no model — a tiny random-weight SD 1.x checkpoint in
the real single-file format, written once into the user's checkpoints folder, run through the txt2img starter."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from nodegraph.paths import app_home, resources_dir

DEMO_CHECKPOINT = "demo-tiny-random.safetensors"


def write_demo_checkpoint(folder: Path) -> Path:
    """Write the demo checkpoint into `folder` unless it is there (atomically: a crash leaves no half file)."""
    path = folder / DEMO_CHECKPOINT
    if path.is_file():
        return path
    import torch

    from nodegraph.models.synthetic import write_checkpoint

    folder.mkdir(parents=True, exist_ok=True)
    partial = folder / f".{DEMO_CHECKPOINT}.partial.safetensors"
    write_checkpoint(partial, "sd1", seed=0, dtype=torch.float16)
    os.replace(partial, path)
    return path


def demo_command(args: argparse.Namespace) -> int:
    """Write the demo checkpoint if needed, then run the txt2img starter workflow on it."""
    from nodegraph.cli.run_command import run_command

    folder = app_home() / "models" / "checkpoints"
    if not (folder / DEMO_CHECKPOINT).is_file():
        print(f"writing the demo checkpoint {folder / DEMO_CHECKPOINT} (tiny, random weights) …", file=sys.stderr)
    write_demo_checkpoint(folder)
    print("note: the demo checkpoint has random weights, so its images are noise — the point is that every part "
          "of the pipeline runs. Put real checkpoints into " + str(folder) + " or pass --models-dir.",
          file=sys.stderr)
    run_args = argparse.Namespace(
        workflow=str(resources_dir() / "workflows" / "txt2img.json"),
        set=[f"ckpt.ckpt_name={DEMO_CHECKPOINT}", *args.set], sweep=[], output_dir=args.output_dir,
        models_dir=[], device=args.device, json=args.json, quiet=args.quiet, debug=args.debug,
        node_pack=args.node_pack)
    return run_command(run_args)
