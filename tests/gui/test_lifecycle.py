"""The app process around its window: a termination signal closes it like its close button (exit 0, the session
ended cleanly), the first paint can be reported for smoke tests, and Help ▸ About names the build."""

from __future__ import annotations

import html
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import nodegraph
from nodegraph.gui.about import about_text, app_icon
from nodegraph.paths import app_home

ROOT = Path(__file__).resolve().parents[2]


def _start_app(home: Path, *args: str) -> subprocess.Popen:
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "NODEGRAPH_HOME": str(home),
           "NODEGRAPH_REPORT_FIRST_PAINT": "1"}
    return subprocess.Popen([sys.executable, "-m", "nodegraph", *args], cwd=ROOT, env=env, stderr=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, text=True)


def _wait_for_first_paint(process: subprocess.Popen) -> float:
    deadline = time.monotonic() + 120
    for line in process.stderr:
        if line.startswith("nodegraph: first paint at "):
            return float(line.rsplit(" ", 1)[1])
        if time.monotonic() > deadline:
            break
    process.kill()
    pytest.fail("the window never reported its first paint")


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_termination_signal_closes_the_window_cleanly(tmp_path, signum):
    started = time.time()
    process = _start_app(tmp_path / "home")
    painted = _wait_for_first_paint(process)
    assert started < painted < time.time()
    process.send_signal(signum)
    assert process.wait(timeout=60) == 0  # closed through the window's close path, not killed
    process.stderr.close()
    assert list((tmp_path / "home" / "recovery").glob("*.lock")) == []  # the session marker of a clean close


def test_help_about_names_the_version_and_the_build(window):
    actions = {action.text(): action for action in window.menuBar().actions()}
    assert "&Help" in actions
    assert [a.text() for a in actions["&Help"].menu().actions()] == ["&About nodegraph"]
    text = about_text()
    assert f"nodegraph {nodegraph.__version__}" in text and "(Python install)" in text
    assert html.escape(f"Your files: {app_home()}") in text
    assert not app_icon().isNull()
