"""A job queue: workflows run one after another on a worker thread, with cancel of the current job and removal of
pending ones. The GUI's Run / Queue ×N / Cancel buttons sit on top of it."""

from __future__ import annotations

import itertools
import threading
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

from nodegraph.core.graph import Workflow
from nodegraph.engine.cancel import CancelToken
from nodegraph.engine.context import RunSettings
from nodegraph.engine.executor import Executor, RunResult


@dataclass
class Job:
    """One queued run. `status`: "pending", "running", "done" (see `result`) or "removed"."""

    id: str
    workflow: Workflow
    targets: tuple[str, ...] | None = None
    settings: RunSettings | None = None
    status: str = "pending"
    result: RunResult | None = None
    cancel: CancelToken = field(default_factory=CancelToken)
    done: threading.Event = field(default_factory=threading.Event)


class JobQueue:
    """Runs submitted workflows in order on one background thread, sharing the executor (and so its cache).

    The workflow is copied at submission, so editing the graph afterwards does not change a queued job.
    """

    def __init__(self, executor: Executor):
        self.executor = executor
        self._pending: deque[Job] = deque()
        self._current: Job | None = None
        self._jobs: dict[str, Job] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._work, name="nodegraph-jobs", daemon=True)
        self._thread.start()

    def submit(self, workflow: Workflow, targets: Iterable[str] | None = None,
               settings: RunSettings | None = None) -> Job:
        """Queue a copy of `workflow`; return its job."""
        with self._lock:
            if self._closed:
                raise RuntimeError("the job queue is closed")
            job = Job(f"job-{next(self._ids)}", workflow.copy(), tuple(targets) if targets is not None else None,
                      settings)
            self._jobs[job.id] = job
            self._pending.append(job)
            self._lock.notify_all()
            return job

    def pending(self) -> list[Job]:
        """The jobs waiting to run, in order."""
        with self._lock:
            return list(self._pending)

    @property
    def current(self) -> Job | None:
        """The job running now, if any."""
        return self._current

    def remove(self, job_id: str) -> bool:
        """Drop a pending job; False when it is not pending (already running or finished)."""
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None or job not in self._pending:
                return False
            self._pending.remove(job)
            job.status = "removed"
            job.done.set()
            self._lock.notify_all()
            return True

    def cancel_current(self) -> bool:
        """Ask the running job to stop (cooperatively); False when nothing runs."""
        with self._lock:
            if self._current is None:
                return False
            self._current.cancel.cancel()
            return True

    def clear(self) -> int:
        """Remove every pending job; return how many were removed."""
        with self._lock:
            jobs = list(self._pending)
        return sum(self.remove(job.id) for job in jobs)

    def wait(self, job: Job, timeout: float | None = None) -> RunResult | None:
        """Block until `job` is done or removed; its result (None if removed or timed out)."""
        job.done.wait(timeout)
        return job.result

    def join(self, timeout: float | None = None) -> bool:
        """Block until no job is pending or running; False on timeout."""
        with self._lock:
            return self._lock.wait_for(lambda: not self._pending and self._current is None, timeout)

    def close(self, cancel_running: bool = True) -> None:
        """Stop accepting jobs, drop pending ones, optionally cancel the running one, and end the worker thread."""
        self.clear()
        with self._lock:
            self._closed = True
            if cancel_running and self._current is not None:
                self._current.cancel.cancel()
            self._lock.notify_all()
        self._thread.join()

    def _work(self) -> None:
        while True:
            with self._lock:
                self._lock.wait_for(lambda: self._pending or self._closed)
                if not self._pending:
                    return
                job = self._current = self._pending.popleft()
                job.status = "running"
            try:
                job.result = self.executor.run(job.workflow, targets=job.targets, settings=job.settings,
                                               cancel=job.cancel, run_id=job.id)
            except BaseException as error:  # the worker must outlive any job, or every later job would hang
                job.result = RunResult(job.id, "failed", message=f"{type(error).__name__}: {error}")
            finally:
                with self._lock:
                    job.status = "done"
                    self._current = None
                    job.done.set()
                    self._lock.notify_all()
