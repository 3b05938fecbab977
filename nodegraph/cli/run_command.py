"""`nodegraph run`: run a workflow headless, once or once per sweep value, with progress (and the nodes' messages) on
stderr."""

from __future__ import annotations

import argparse
import json
import re
import signal
import sys
from pathlib import Path
from typing import Any

from nodegraph.cli import codes
from nodegraph.cli.commands import check_workflow, load_registry, model_dirs, user_settings
from nodegraph.cli.overrides import UsageError, apply_overrides, override_sets
from nodegraph.cli.progress import MessageLog, ProgressPrinter
from nodegraph.core.migrations import upgrade_node_versions
from nodegraph.core.workflow_io import load
from nodegraph.engine.cancel import CancelToken
from nodegraph.engine.context import RunSettings
from nodegraph.engine.events import Event
from nodegraph.engine.executor import Executor, RunResult

_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


def run_command(args: argparse.Namespace) -> int:
    """Load, override, validate every run up front, then run them in one process sharing the cache.

    What the options leave open comes from the app's settings: the model folders (searched after ``--models-dir``),
    the output folder, the device and the precision.
    """
    if args.device is not None and not _DEVICE.match(args.device):
        raise UsageError(f"--device {args.device!r}: expected auto, cpu, cuda, cuda:N or mps")
    app_settings = user_settings()
    device = args.device or app_settings.device
    models_dirs = tuple(Path(d) for d in model_dirs(args, app_settings))
    registry = load_registry(args)
    workflow = load(args.workflow)
    upgrade_node_versions(workflow, registry)
    runs = override_sets(workflow, registry, args.set, args.sweep)
    workflows = [apply_overrides(workflow, overrides) for overrides in runs]
    for index, candidate in enumerate(workflows):
        problems = check_workflow(candidate, registry, [str(d) for d in models_dirs])
        if problems:
            label = f" (run {index + 1}: {_describe(runs[index])})" if len(runs) > 1 else ""
            for problem in problems:
                print(f"{args.workflow}{label}: {problem}", file=sys.stderr)
            return codes.INVALID
    from nodegraph.models.discovery import ModelFolders
    from nodegraph.models.manager import ModelManager

    settings = RunSettings(
        output_dir=Path(args.output_dir).expanduser() if args.output_dir else app_settings.output_folder(),
        models_dirs=models_dirs,
        device=device,
        previews=False,  # nobody shows preview images on a terminal: save the work
        services={"models": ModelManager(ModelFolders(list(models_dirs)), device=device,
                                         precision=app_settings.precision)},
    )
    printer = None if args.quiet else ProgressPrinter(sys.stderr)
    messages = MessageLog()

    def sink(event: Event) -> None:
        messages(event)
        if printer is not None:
            printer(event)

    executor = Executor(registry, sink=sink)
    cancel = CancelToken()
    reports: list[dict[str, Any]] = []
    with _cancel_on_interrupt(cancel):
        for index, (overrides, candidate) in enumerate(zip(runs, workflows, strict=True)):
            if not args.quiet and len(runs) > 1:
                print(f"run {index + 1}/{len(runs)}: {_describe(overrides) or 'no overrides'}", file=sys.stderr)
            if printer is not None:
                printer.workflow = candidate
            result = executor.run(candidate, settings=settings, cancel=cancel)
            reports.append(_report(overrides, result, messages.messages(result.run_id)))
            if result.status != "finished":
                break
    note = settings.services["models"].device_note
    if note and not args.quiet:
        print(f"nodegraph: warning: {note}", file=sys.stderr)
    if args.json:
        json.dump({"runs": reports}, sys.stdout, indent=2)
        print()
    else:
        _print_summary(reports)
    return _exit_code(result, args.debug)


def _describe(overrides: dict[tuple[str, str], Any]) -> str:
    return ", ".join(f"{node}.{name}={value}" for (node, name), value in overrides.items())


def _report(overrides: dict[tuple[str, str], Any], result: RunResult,
            messages: list[dict[str, str]]) -> dict[str, Any]:
    report: dict[str, Any] = {
        "overrides": {f"{node}.{name}": value for (node, name), value in overrides.items()},
        "outputs": {node_id: files for node_id, files in result.files.items() if files},
        "executed": result.executed,
        "cached": result.cached,
        "seconds": {node_id: round(seconds, 4) for node_id, seconds in result.seconds.items()},
        "status": result.status,
        "messages": messages,
    }
    if result.status == "failed":
        report["error"] = {"node": result.failed_node, "message": result.message}
    return report


def _print_summary(reports: list[dict[str, Any]]) -> None:
    for report in reports:
        for node_id, files in report["outputs"].items():
            for file in files:
                print(f"{node_id}: {file}")


def _exit_code(result: RunResult, debug: bool) -> int:
    if result.status == "cancelled":
        print("nodegraph: cancelled", file=sys.stderr)
        return codes.CANCELLED
    if result.status == "failed":
        if debug and result.details:
            print(result.details, file=sys.stderr)
        print(f"nodegraph: node {result.failed_node!r} failed: {result.message}", file=sys.stderr)
        return codes.OUT_OF_MEMORY if result.out_of_memory else codes.NODE_FAILED
    return codes.OK


class _cancel_on_interrupt:
    """While active, the first Ctrl+C asks the run to stop cooperatively; a second one interrupts at once."""

    def __init__(self, cancel: CancelToken):
        self.cancel = cancel
        self.previous: Any = None

    def __enter__(self) -> None:
        def handler(signum: int, frame: Any) -> None:
            if self.cancel.cancelled:
                raise KeyboardInterrupt
            print("\nnodegraph: stopping after the current step (Ctrl+C again to abort now)", file=sys.stderr)
            self.cancel.cancel()

        try:
            self.previous = signal.signal(signal.SIGINT, handler)
        except ValueError:  # not on the main thread (e.g. embedded): keep the default behaviour
            self.previous = None

    def __exit__(self, *exc: object) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)
