"""Typed, frozen events that the executor emits to a sink while it runs a workflow.

The executor never knows who listens: the CLI prints them as a progress bar, the GUI's worker thread re-emits them
as Qt signals, tests collect them in a list. Every event carries the `run_id` of the run it belongs to.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Event:
    """Base class of all engine events."""

    run_id: str


@dataclass(frozen=True)
class RunStarted(Event):
    """A run began; `planned` lists the nodes it needs, in execution order (cached ones included)."""

    planned: tuple[str, ...] = ()


@dataclass(frozen=True)
class NodeStarted(Event):
    """A node began running."""

    node_id: str = ""
    node_type: str = ""


@dataclass(frozen=True)
class NodeCached(Event):
    """A node's outputs came from the cache: it did not run."""

    node_id: str = ""
    node_type: str = ""


@dataclass(frozen=True)
class Progress(Event):
    """A running node reported progress (e.g. a sampler step), optionally with a small preview image."""

    node_id: str = ""
    step: int = 0
    total: int = 0
    preview: Any = field(default=None, compare=False)


@dataclass(frozen=True)
class NodeFinished(Event):
    """A node ran to completion in `seconds`; `files` lists what it wrote for the user."""

    node_id: str = ""
    node_type: str = ""
    seconds: float = 0.0
    files: tuple[str, ...] = ()


@dataclass(frozen=True)
class NodeMessage(Event):
    """Something a node tells the user about its work that is not a failure: ``level`` is ``"info"`` (e.g. "LoRA
    style.safetensors: 192/192 layers matched") or ``"warning"`` (half a LoRA matched; a prompt word left as text).
    `node_id` is the node the message is about, which may differ from the node that was running (a sampler applies
    the LoRAs of the LoRA nodes upstream of it)."""

    node_id: str = ""
    level: str = "info"
    text: str = ""


@dataclass(frozen=True)
class NodeFailed(Event):
    """A node raised: `message` is for the user; `details` holds the traceback of an unexpected error ('' for user
    errors such as a missing file)."""

    node_id: str = ""
    node_type: str = ""
    message: str = ""
    details: str = ""


@dataclass(frozen=True)
class RunFinished(Event):
    """A run completed: `executed` nodes ran, `cached` ones were reused."""

    seconds: float = 0.0
    executed: tuple[str, ...] = ()
    cached: tuple[str, ...] = ()


@dataclass(frozen=True)
class RunFailed(Event):
    """A run stopped on a failure: a node's (`node_id` set) or an invalid workflow (`problems` set)."""

    node_id: str | None = None
    message: str = ""
    problems: tuple[Any, ...] = ()


@dataclass(frozen=True)
class RunCancelled(Event):
    """A run stopped because cancellation was requested; `node_id` is the node that was running, if any."""

    node_id: str | None = None


#: Something that receives events. It is called on the executor's thread and must not block for long.
EventSink = Callable[[Event], None]


def null_sink(event: Event) -> None:
    """A sink that ignores every event."""
