"""Fixtures shared by the engine tests."""

import pytest

from nodegraph.engine import Executor


@pytest.fixture
def events():
    """A list the executor's sink appends every event to."""
    return []


@pytest.fixture
def executor(registry, events):
    """An executor over the built-in and fake nodes, recording events into `events`."""
    return Executor(registry, sink=events.append)
