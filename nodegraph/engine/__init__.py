"""The engine: runs workflows with caching, typed events, cancellation and a job queue.

Nothing here imports torch, diffusers or Qt (a test proves it); model work happens inside nodes through
``ctx.models``.
"""

from nodegraph.engine.cache import OutputCache
from nodegraph.engine.cancel import CancelToken
from nodegraph.engine.context import ExecutionContext, RunSettings
from nodegraph.engine.events import (
    Event,
    NodeCached,
    NodeFailed,
    NodeFinished,
    NodeMessage,
    NodeStarted,
    Progress,
    RunCancelled,
    RunFailed,
    RunFinished,
    RunStarted,
)
from nodegraph.engine.executor import Executor, RunResult
from nodegraph.engine.queue import Job, JobQueue

__all__ = [
    "CancelToken",
    "Event",
    "ExecutionContext",
    "Executor",
    "Job",
    "JobQueue",
    "NodeCached",
    "NodeFailed",
    "NodeFinished",
    "NodeMessage",
    "NodeStarted",
    "OutputCache",
    "Progress",
    "RunCancelled",
    "RunFailed",
    "RunFinished",
    "RunResult",
    "RunSettings",
    "RunStarted",
]
