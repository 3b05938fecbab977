"""The `nodegraph` command: gui (default), run, validate, import, export, nodes, models, inspect, demo.

Exit codes: 0 success; 2 invalid workflow or usage (an unknown command included); 3 a node failed while running;
4 the desktop app cannot start (no display); 5 a node ran out of memory; 130 cancelled (Ctrl+C); 141 standard output
was closed early (as by ``| head``); see docs/errors.md. User mistakes print one clear line (or a short list) and no
traceback; ``--debug`` shows tracebacks.
"""

from __future__ import annotations

import argparse
import difflib
import os
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path

from nodegraph.build_info import build_info
from nodegraph.cli import codes

COMMANDS = ("gui", "run", "validate", "import", "export", "nodes", "models", "inspect", "demo")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every sub-command."""
    common = argparse.ArgumentParser(add_help=False)
    # SUPPRESS keeps a sub-command's defaults from overwriting the option given before the sub-command.
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show Python tracebacks on errors")
    common.add_argument("--node-pack", action="append", default=argparse.SUPPRESS, metavar="PATH",
                        help="load a node pack (folder or .py file) or a folder of packs; repeatable")

    parser = argparse.ArgumentParser(prog="nodegraph", parents=[common],
                                     description="A native node-graph app for Stable Diffusion.")
    parser.add_argument("--version", action="version", version=build_info().describe())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    gui = sub.add_parser("gui", parents=[common], help="start the desktop app (the default)")
    gui.add_argument("file", nargs="?", help="a workflow JSON (or PNG) to open")

    run = sub.add_parser("run", parents=[common], help="run a workflow headless")
    run.add_argument("workflow", help="the workflow JSON file")
    run.add_argument("--set", action="append", default=[], metavar="NODE.INPUT=VALUE",
                     help="override an input value; repeatable")
    run.add_argument("--sweep", action="append", default=[], metavar="NODE.INPUT=V1,V2,...",
                     help="run once per value (several sweeps multiply), reusing the cache; repeatable")
    run.add_argument("--output-dir", metavar="DIR", help="where output nodes write files (default: the app settings' "
                                                         "output folder, else the data folder's output/)")
    _add_models_dir(run)
    run.add_argument("--device", metavar="DEVICE", help="auto, cpu, cuda, cuda:N or mps (default: the app settings' "
                                                        "device, else auto)")
    run.add_argument("--json", action="store_true", help="print one JSON object describing the runs on stdout")
    run.add_argument("--quiet", action="store_true", help="no progress output on stderr")

    validate = sub.add_parser("validate", parents=[common], help="check a workflow and list every problem")
    validate.add_argument("workflow", help="the workflow JSON file")
    _add_models_dir(validate)

    imp = sub.add_parser("import", parents=[common],
                         help="turn a ComfyUI workflow (UI or API JSON, or a ComfyUI image) or AUTOMATIC1111 infotext "
                              "(an image or a text file) into a nodegraph workflow")
    imp.add_argument("file", help="the file to import")
    imp.add_argument("-o", "--output", metavar="OUT.json",
                     help="where to write the workflow (default: <name>.nodegraph.json beside the file; - for "
                          "standard output)")
    imp.add_argument("--force", action="store_true", help="replace the output file if it exists")
    _add_models_dir(imp)

    export = sub.add_parser("export", parents=[common], help="write a workflow as a ComfyUI API prompt")
    export.add_argument("workflow", help="the workflow JSON file")
    export.add_argument("--to", choices=["comfyui-api"], default="comfyui-api",
                        help="the format to write (comfyui-api: what ComfyUI's /prompt and 'Load (API format)' take)")
    export.add_argument("-o", "--output", metavar="OUT.json", help="where to write it (default: standard output)")

    nodes = sub.add_parser("nodes", parents=[common], help="list the node types")
    nodes.add_argument("--json", action="store_true", help="print JSON instead of text")

    models = sub.add_parser("models", parents=[common], help="list the model files found, by kind, with family")
    _add_models_dir(models)
    models.add_argument("--json", action="store_true", help="print JSON instead of text")

    inspect = sub.add_parser("inspect", parents=[common], help="identify one model file (kind, family, …)")
    inspect.add_argument("file", help="a .safetensors/.ckpt/.pt/.bin file or a diffusers folder")
    inspect.add_argument("--prediction", choices=["epsilon", "v"], help="override the SD 2.x v-prediction rule")
    inspect.add_argument("--json", action="store_true", help="print JSON instead of text")

    demo = sub.add_parser("demo", parents=[common], help="run the txt2img starter on a tiny random-weight "
                                                          "checkpoint (written once): proves the pipeline works")
    demo.add_argument("--set", action="append", default=[], metavar="NODE.INPUT=VALUE",
                      help="override an input value; repeatable")
    demo.add_argument("--output-dir", metavar="DIR", help="where the image goes (default: the app settings' output "
                                                          "folder, else the data folder's output/)")
    demo.add_argument("--device", metavar="DEVICE", help="auto, cpu, cuda, cuda:N or mps (default: the app "
                                                         "settings' device, else auto)")
    demo.add_argument("--json", action="store_true", help="print one JSON object describing the run on stdout")
    demo.add_argument("--quiet", action="store_true", help="no progress output on stderr")
    return parser


def _add_models_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--models-dir", action="append", default=[], metavar="DIR",
                        help="an extra model folder (AUTOMATIC1111, ComfyUI or plain), searched before the model "
                             "folders added in the app's settings; repeatable")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `nodegraph` command; returns the exit code.

    A closed standard output (``nodegraph models | head``) ends any command quietly with :data:`codes.BROKEN_PIPE`.
    """
    try:
        code = _main(argv)
        sys.stdout.flush()  # a pipe closed early fails here, not in Python's shutdown (which would print a warning)
        return code
    except BrokenPipeError:
        _silence_stdout()
        return codes.BROKEN_PIPE


def _silence_stdout() -> None:
    """Point standard output at the null device, so Python's final flush cannot fail on the closed pipe again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # not a real file (a test's capture): nothing to silence
        pass


def _main(argv: Sequence[str] | None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    position = _command_position(argv)
    if position is not None and argv[position] not in COMMANDS:
        word = argv[position]
        if not Path(word).exists():
            print(f"nodegraph: error: {_unknown_command(word)}", file=sys.stderr)
            return codes.INVALID
        argv.insert(position, "gui")  # `nodegraph FILE.json` opens the file in the app
    parser = build_parser()
    args = parser.parse_args(argv)
    args.debug = getattr(args, "debug", False)
    args.node_pack = getattr(args, "node_pack", [])
    if args.command in (None, "gui"):
        missing = no_display()
        if missing:
            print(f"nodegraph: {missing}", file=sys.stderr)
            return codes.NO_DISPLAY
        from nodegraph.gui import defer_interrupts

        defer_interrupts()  # Ctrl+C while the app starts: no traceback from inside Qt's start-up
    from nodegraph.core.errors import NodegraphError  # imported late: a Ctrl+C before this has no app to spoil

    try:
        if args.command in (None, "gui"):
            from nodegraph.cli.commands import gui_command

            return gui_command(args)
        if args.command == "run":
            from nodegraph.cli.run_command import run_command

            return run_command(args)
        if args.command == "demo":
            from nodegraph.cli.demo_command import demo_command

            return demo_command(args)
        if args.command in ("import", "export"):
            from nodegraph.cli.import_command import export_command, import_command

            return import_command(args) if args.command == "import" else export_command(args)
        if args.command in ("models", "inspect"):
            from nodegraph.cli.model_commands import inspect_command, models_command

            return models_command(args) if args.command == "models" else inspect_command(args)
        from nodegraph.cli.commands import nodes_command, validate_command

        return validate_command(args) if args.command == "validate" else nodes_command(args)
    except NodegraphError as error:
        if args.debug:
            traceback.print_exc()
        print(f"nodegraph: error: {error}", file=sys.stderr)
        return codes.INVALID
    except KeyboardInterrupt:
        print("nodegraph: cancelled", file=sys.stderr)
        return codes.CANCELLED
    except BrokenPipeError:
        raise  # handled once in main()
    except Exception as error:
        if args.debug:
            traceback.print_exc()
        print(f"nodegraph: internal error: {type(error).__name__}: {error} (run with --debug for the traceback)",
              file=sys.stderr)
        return codes.ERROR


def _command_position(argv: list[str]) -> int | None:
    """Index of the first word that is not a global option (the command or a file), or None."""
    index = 0
    while index < len(argv):
        word = argv[index]
        if word == "--":
            return index + 1 if index + 1 < len(argv) else None
        if not word.startswith("-") or word == "-":
            return index
        index += 2 if word == "--node-pack" else 1  # the only global option taking a separate value
    return None


def _unknown_command(word: str) -> str:
    """The message for a word that is neither a command nor an existing file, with the closest commands."""
    close = difflib.get_close_matches(word, COMMANDS, n=3, cutoff=0.5)
    names = [repr(c) for c in close]
    hint = f"; did you mean {', '.join(names[:-1]) + ' or ' if len(names) > 1 else ''}{names[-1]}?" if close else ""
    looks_like_file = "/" in word or os.sep in word or Path(word).suffix
    what = "neither a command nor an existing file" if looks_like_file else "unknown command"
    return (f"{what}: {word!r}{hint} (commands: {', '.join(COMMANDS)}; `nodegraph FILE` opens an existing "
            "workflow in the app)")


def no_display() -> str | None:
    """Why the desktop app cannot open a window here (Linux without X11 or Wayland), or None.

    Qt aborts the whole process with a core dump when it finds no display; this check says so in one line first.
    """
    if not sys.platform.startswith("linux") or os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"):
        return None
    platforms = [p.split(":")[0].strip() for p in os.environ.get("QT_QPA_PLATFORM", "").split(";") if p.strip()]
    if platforms and not all(p in ("xcb", "wayland", "wayland-egl") for p in platforms):
        return None  # offscreen, minimal, vnc, eglfs…: Qt needs no display server
    return ("no display: the desktop app needs a graphical session (DISPLAY or WAYLAND_DISPLAY is not set); use "
            "`nodegraph run WORKFLOW` to run a workflow headless, or set QT_QPA_PLATFORM=offscreen")
