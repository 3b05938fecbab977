"""The job queue: order, removal, cancel of the current job, copies at submission, join and close."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import pytest

from nodegraph.core import Input, NodeError, Output, PortType, Workflow, node
from nodegraph.engine import Executor, JobQueue, NodeStarted, Progress, RunStarted

WAIT = 10  # seconds: generous upper bound for anything that should happen quickly


@pytest.fixture
def gate(registry):
    """A Gate node that blocks its job until `gate.opened` is set (honouring cancellation meanwhile);
    `gate.entered` is set each time a Gate starts running."""
    state = SimpleNamespace(opened=threading.Event(), entered=threading.Event())

    @node(type="Gate", display_name="Gate", category="test", description="Wait until the test opens it.",
          inputs=[Input.link("value", PortType.INT)], outputs=[Output("VALUE", PortType.INT)], not_idempotent=True)
    def run_gate(ctx, value):
        state.entered.set()
        deadline = time.monotonic() + WAIT
        while not state.opened.wait(0.005):
            ctx.check_cancelled()
            if time.monotonic() > deadline:
                raise NodeError("the gate was never opened")
        return {"VALUE": value}

    registry.register(run_gate)
    yield state
    state.opened.set()


class Recorder:
    """A thread-safe event sink that can wake a test up on the first Progress of a run."""

    def __init__(self):
        self.events = []
        self.lock = threading.Lock()
        self.progress = threading.Event()

    def __call__(self, event):
        with self.lock:
            self.events.append(event)
        if isinstance(event, Progress):
            self.progress.set()

    def runs_started(self):
        with self.lock:
            return [e.run_id for e in self.events if isinstance(e, RunStarted)]

    def nodes_started(self, run_id):
        with self.lock:
            return [e.node_id for e in self.events if isinstance(e, NodeStarted) and e.run_id == run_id]


@pytest.fixture
def recorder():
    return Recorder()


@pytest.fixture
def queue(registry, gate, recorder):
    q = JobQueue(Executor(registry, sink=recorder))
    try:
        yield q
    finally:
        gate.opened.set()
        q.close()


def number_workflow(value):
    """n -> c (Collect)."""
    wf = Workflow()
    wf.add_node("Number", "n", inputs={"value": value})
    wf.add_node("Collect", "c")
    wf.connect("n", "VALUE", "c", "value")
    return wf


def gated_workflow(value=1):
    """n -> g (Gate) -> c."""
    wf = Workflow()
    wf.add_node("Number", "n", inputs={"value": value})
    wf.add_node("Gate", "g")
    wf.add_node("Collect", "c")
    wf.connect("n", "VALUE", "g", "value")
    wf.connect("g", "VALUE", "c", "value")
    return wf


def slow_workflow(steps=1000, delay=0.01):
    wf = Workflow()
    wf.add_node("Number", "n", inputs={"value": 1})
    wf.add_node("Slow", "slow", inputs={"steps": steps, "delay": delay})
    wf.add_node("Collect", "c")
    wf.connect("n", "VALUE", "slow", "value")
    wf.connect("slow", "VALUE", "c", "value")
    return wf


def value_of(result):
    return result.outputs["c"]["VALUE"]


def test_jobs_run_in_submission_order(queue, gate, recorder):
    first = queue.submit(gated_workflow(0))
    assert gate.entered.wait(WAIT)
    jobs = [queue.submit(number_workflow(value)) for value in (1, 2, 3, 4)]
    assert [job.status for job in jobs] == ["pending"] * 4
    assert queue.pending() == jobs
    assert queue.current is first and first.status == "running"
    gate.opened.set()
    for value, job in enumerate([first, *jobs]):
        result = queue.wait(job, WAIT)
        assert result is not None and result.status == "finished"
        assert job.status == "done" and value_of(result) == value
        assert result.run_id == job.id
    assert recorder.runs_started() == [job.id for job in [first, *jobs]]
    assert len({job.id for job in [first, *jobs]}) == 5


def test_remove_drops_a_pending_job(queue, gate, recorder):
    running = queue.submit(gated_workflow(1))
    assert gate.entered.wait(WAIT)
    dropped = queue.submit(number_workflow(2))
    kept = queue.submit(number_workflow(3))

    assert queue.remove(dropped.id) is True
    assert dropped.status == "removed"
    assert queue.wait(dropped, WAIT) is None and dropped.done.is_set()
    assert queue.pending() == [kept]
    assert queue.remove(dropped.id) is False  # already removed
    assert queue.remove(running.id) is False  # running
    assert queue.remove("job-999") is False  # unknown

    gate.opened.set()
    assert value_of(queue.wait(kept, WAIT)) == 3
    assert queue.join(WAIT)
    assert queue.remove(kept.id) is False  # finished
    assert dropped.id not in recorder.runs_started()
    assert recorder.runs_started() == [running.id, kept.id]
    assert dropped.result is None and dropped.status == "removed"
    assert running.result.status == "finished"


def test_clear_removes_every_pending_job(queue, gate):
    running = queue.submit(gated_workflow())
    assert gate.entered.wait(WAIT)
    pending = [queue.submit(number_workflow(v)) for v in range(3)]
    assert queue.clear() == 3
    assert all(job.status == "removed" for job in pending)
    assert queue.pending() == []
    gate.opened.set()
    assert queue.wait(running, WAIT).status == "finished"


def test_cancel_current_stops_the_slow_job_and_the_next_one_runs(queue, recorder):
    assert queue.cancel_current() is False  # nothing runs yet
    slow = queue.submit(slow_workflow(steps=1000, delay=0.01))
    after = queue.submit(number_workflow(42))
    assert recorder.progress.wait(WAIT), "the Slow node never reported progress"
    assert queue.current is slow
    assert queue.cancel_current() is True

    result = queue.wait(slow, WAIT)
    assert result is not None and result.status == "cancelled"
    assert slow.status == "done"
    assert "c" not in recorder.nodes_started(slow.id)
    next_result = queue.wait(after, WAIT)
    assert next_result is not None and next_result.status == "finished" and value_of(next_result) == 42
    assert queue.join(WAIT)
    assert queue.cancel_current() is False


def test_workflow_edited_after_submit_runs_as_submitted(queue, gate):
    blocker = queue.submit(gated_workflow())
    assert gate.entered.wait(WAIT)
    wf = number_workflow(5)
    job = queue.submit(wf)
    assert job.workflow is not wf and job.workflow == wf

    wf.set_input("n", "value", 99)
    wf.add_node("Number", "other", inputs={"value": 7})
    wf.connect("other", "VALUE", "c", "value")
    gate.opened.set()

    result = queue.wait(job, WAIT)
    assert result.status == "finished" and value_of(result) == 5
    assert "other" not in job.workflow
    assert queue.wait(blocker, WAIT).status == "finished"


def test_submit_with_targets(queue):
    wf = number_workflow(8)
    wf.add_node("Scale", "s", inputs={"factor": 3})
    wf.connect("n", "VALUE", "s", "value")
    job = queue.submit(wf, targets=["s"])
    result = queue.wait(job, WAIT)
    assert result.status == "finished" and result.outputs == {"s": {"VALUE": 24}}


def test_join_waits_until_idle(queue, gate):
    jobs = [queue.submit(gated_workflow(1)), queue.submit(number_workflow(2))]
    assert gate.entered.wait(WAIT)
    assert queue.join(timeout=0.05) is False  # still busy
    gate.opened.set()
    assert queue.join(timeout=WAIT) is True
    assert all(job.status == "done" and job.done.is_set() for job in jobs)
    assert queue.pending() == [] and queue.current is None


def test_join_on_an_idle_queue_returns_at_once(queue):
    assert queue.join(timeout=WAIT) is True


def test_invalid_and_failing_jobs_do_not_stop_the_queue(queue):
    broken = Workflow()
    broken.add_node("Number", "n")  # no output node
    failing = number_workflow(1)
    failing.add_node("Fail", "f")
    failing.connect("n", "VALUE", "f", "value")
    failing.connect("f", "VALUE", "c", "value")
    jobs = [queue.submit(broken), queue.submit(failing), queue.submit(number_workflow(3))]
    results = [queue.wait(job, WAIT) for job in jobs]
    assert [r.status for r in results] == ["invalid", "failed", "finished"]


def test_close_ends_the_worker_thread(registry, gate):
    before = set(threading.enumerate())
    q = JobQueue(Executor(registry))
    try:
        new_threads = set(threading.enumerate()) - before
        assert [t.name for t in new_threads] == ["nodegraph-jobs"]
        running = q.submit(gated_workflow())
        assert gate.entered.wait(WAIT)
        pending = q.submit(number_workflow(1))
    finally:
        q.close()  # cancels the running gate, drops the pending job, joins the thread

    assert not any(t.is_alive() for t in new_threads)
    assert running.result is not None and running.result.status == "cancelled"
    assert pending.status == "removed" and pending.result is None
    with pytest.raises(RuntimeError):
        q.submit(number_workflow(1))
    q.close()  # a second close is harmless


def test_close_without_cancel_lets_the_running_job_finish(registry, gate):
    q = JobQueue(Executor(registry))
    try:
        running = q.submit(gated_workflow(6))
        assert gate.entered.wait(WAIT)
        threading.Timer(0.05, gate.opened.set).start()
    finally:
        q.close(cancel_running=False)
    assert running.result.status == "finished" and value_of(running.result) == 6


def test_worker_survives_a_node_raising_system_exit(registry, queue):
    # BUG: JobQueue._work lets a BaseException from executor.run (here a node calling sys.exit()) end the worker
    # thread silently: the job gets no result and every later job stays "pending" forever.
    @node(type="Exit", display_name="Exit", category="test", description="Calls sys.exit().",
          inputs=[Input.link("value", PortType.INT)], outputs=[Output("VALUE", PortType.INT)])
    def run_exit(ctx, value):
        raise SystemExit(3)

    registry.register(run_exit)
    wf = number_workflow(1)
    wf.add_node("Exit", "e")
    wf.connect("n", "VALUE", "e", "value")
    wf.connect("e", "VALUE", "c", "value")
    bad = queue.submit(wf)
    good = queue.submit(number_workflow(2))
    result = queue.wait(good, 3)
    assert result is not None and value_of(result) == 2
    assert bad.result is not None and bad.result.status == "failed"
