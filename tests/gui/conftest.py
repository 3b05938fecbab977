"""GUI tests run offscreen; Qt must learn that before it is imported."""

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import pytest  # noqa: E402

from nodegraph.engine.context import RunSettings  # noqa: E402


@pytest.fixture
def window(qtbot, registry, tmp_path):
    """The main window over the built-in and fake nodes, writing outputs into the test's folder.

    Test files that need another registry define their own `window` fixture, which takes precedence."""
    from nodegraph.gui.main_window import MainWindow

    win = MainWindow(registry, settings=RunSettings(output_dir=tmp_path / "out"))
    qtbot.addWidget(win)
    return win
