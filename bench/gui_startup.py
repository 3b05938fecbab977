"""Benchmark: desktop app start-up and responsiveness, offscreen, each measurement in a fresh subprocess.

    python bench/gui_startup.py [--repeat 3] [--nodes 500]

Time from process start to the main window's first paint; time to open a generated N-node workflow (Number -> Scale
chains from the fake test pack, written with workflow_io) into the shown window, up to its next paint; the time of
the first zoom to 100 % on that graph afterwards (node widgets are embedded when first shown, so some of the work
moves there); the longest UI-thread stall (gaps of a 5 ms QTimer) while a Slow run executes on the worker thread.
Prints a markdown table (median of --repeat).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FAKE_PACK = ROOT / "tests" / "packs" / "fakepack"


def _window(registry):  # noqa: ANN001, ANN202
    from nodegraph.engine.context import RunSettings
    from nodegraph.gui.main_window import MainWindow

    return MainWindow(registry, settings=RunSettings(output_dir=Path(tempfile.mkdtemp()) / "out"))


def child(kind: str, start: float, nodes: int) -> dict[str, float]:
    """One measurement inside a fresh process; `start` is the parent's clock at launch."""
    os.environ["QT_QPA_PLATFORM"] = "offscreen"
    os.environ.setdefault("NODEGRAPH_HOME", tempfile.mkdtemp())
    sys.path.insert(0, str(ROOT))
    from PySide6 import QtCore, QtWidgets

    app = QtWidgets.QApplication([])
    from nodegraph.packs import create_registry

    if kind == "window":
        from nodegraph.gui.main_window import MainWindow

        window = MainWindow(create_registry())
        painted: list[float] = []

        class Probe(QtCore.QObject):
            def eventFilter(self, obj, event):  # noqa: ANN001, ANN201, N802
                if event.type() == QtCore.QEvent.Type.Paint and not painted:
                    painted.append(time.time())
                return False

        probe = Probe()
        window.installEventFilter(probe)
        window.show()
        while not painted:
            app.processEvents()
        return {"seconds": painted[0] - start}
    registry = create_registry([FAKE_PACK], user_packs=False)
    window = _window(registry)
    window.show()
    app.processEvents()
    if kind in ("open", "zoom"):
        from nodegraph.core.graph import Workflow
        from nodegraph.core.workflow_io import save

        workflow = Workflow()
        for index in range(nodes // 2):  # Number -> Scale pairs on a grid, each pair linked
            x, y = 400 * (index % 10), 150 * (index // 10)
            workflow.add_node("Number", f"n{index}", inputs={"value": index}, ui={"pos": [x, y]})
            workflow.add_node("Scale", f"s{index}", inputs={"factor": 2}, ui={"pos": [x + 200, y]})
            workflow.connect(f"n{index}", "VALUE", f"s{index}", "value")
        path = Path(tempfile.mkdtemp()) / "big.json"
        save(workflow, path)
        began = time.perf_counter()
        assert window.open_file(path)
        app.processEvents()
        opened = time.perf_counter() - began
        if kind == "open":
            return {"seconds": opened, "nodes": len(window.adapter.workflow)}
        # zoom: the first zoom to 100 % onto the middle of the graph after the open (it paints node widgets)
        middle = window.adapter.view_node(f"n{nodes // 4}").view.sceneBoundingRect().center()
        began = time.perf_counter()
        window.adapter.graph.viewer().reset_zoom(middle)
        app.processEvents()
        return {"seconds": time.perf_counter() - began}
    # stall: Number -> Slow(100 steps × 20 ms) -> Collect on the worker; a 5 ms timer records the UI thread's gaps
    adapter = window.adapter
    adapter.add_node("Number", (0, 0), node_id="number", inputs={"value": 3})
    adapter.add_node("Slow", (200, 0), node_id="slow", inputs={"steps": 100, "delay": 0.02})
    adapter.add_node("Collect", (400, 0), node_id="collect", inputs={})
    adapter.connect("number", "VALUE", "slow", "value")
    adapter.connect("slow", "VALUE", "collect", "value")
    ticks: list[float] = []
    timer = QtCore.QTimer()
    timer.setInterval(5)
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    timer.start()
    window.run_workflow()
    while window.worker is not None or window.run_state == "running":
        app.processEvents(QtCore.QEventLoop.ProcessEventsFlag.WaitForMoreEvents, 50)
    timer.stop()
    assert window.run_state == "finished", window.run_state
    gaps = [b - a for a, b in zip(ticks, ticks[1:], strict=False)]
    return {"seconds": max(gaps), "ticks": len(ticks)}


def measure(kind: str, nodes: int) -> dict[str, float]:
    start = time.time()
    out = subprocess.run([sys.executable, __file__, "--child", kind, "--start", repr(start), "--nodes", str(nodes)],
                         capture_output=True, text=True, cwd=ROOT)
    if out.returncode != 0 or not out.stdout.strip():
        print(f"<!-- {kind}: child exited {out.returncode}: {out.stderr.strip()[-300:]} -->", file=sys.stderr)
        return {"seconds": float("nan")}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--nodes", type=int, default=500)
    parser.add_argument("--child")
    parser.add_argument("--start", type=float)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.start, args.nodes)))
        return
    rows = [("window first paint (process start →)", "window", 1.5),
            (f"open a {args.nodes}-node workflow", "open", 1.0),
            ("then the first zoom to 100 % on it", "zoom", 0.1),
            ("longest UI-thread stall during a run", "stall", 0.05)]
    print("| measurement | median | runs | goal | met |\n|---|---|---|---|---|")
    for label, kind, goal in rows:
        values = [measure(kind, args.nodes)["seconds"] for _ in range(args.repeat)]
        median = statistics.median(values)
        unit = (lambda v: f"{v * 1000:.1f} ms") if kind in ("stall", "zoom") else (lambda v: f"{v:.3f} s")
        print(f"| {label} | {unit(median)} | {', '.join(unit(v) for v in values)} | < {unit(goal)} | "
              f"{'yes' if median < goal else 'no'} |")


if __name__ == "__main__":
    main()
