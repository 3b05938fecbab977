"""The executor: validates a workflow, plans the nodes its outputs need, and runs them with caching.

Modelled on ComfyUI's execution list and ancestor-signature caching and chaiNNer's refcounted outputs and typed
events, written for this project: a plan is the set of nodes the targets need (looking through bypassed nodes), in
a stable topological order; :class:`~nodegraph.engine.run.RunState` then runs only what the :class:`OutputCache`
cannot supply. A node's exception becomes a :class:`NodeFailed` event and a failed :class:`RunResult`, never an
exception for the caller.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterable

from nodegraph.core.graph import Workflow
from nodegraph.core.registry import NodeRegistry
from nodegraph.core.topology import Unresolvable, resolve_source, topological_order
from nodegraph.core.validate import FileCheck, Problem, validate
from nodegraph.engine.cache import OutputCache
from nodegraph.engine.cancel import CancelToken
from nodegraph.engine.context import RunSettings
from nodegraph.engine.events import Event, EventSink, RunFailed, RunFinished, RunStarted, null_sink
from nodegraph.engine.run import PlannedNode, RunResult, RunState

__all__ = ["Executor", "RunResult"]

log = logging.getLogger(__name__)


class Executor:
    """Runs workflows against a registry, sharing one output cache across runs.

    Args:
        registry: the node types.
        cache: the cross-run cache (a fresh bounded one by default).
        sink: receives every :class:`Event`; it runs on the executor's thread.
        file_check: checks literals that name model files during validation (from the model layer).
        preflight: checks across nodes that need to read files (e.g. an add-on's model family against the
            checkpoint's), run on the executor's thread after validation passed; its problems make the run invalid.
    """

    def __init__(self, registry: NodeRegistry, cache: OutputCache | None = None, sink: EventSink = null_sink,
                 file_check: FileCheck | None = None,
                 preflight: Callable[[Workflow], list[Problem]] | None = None):
        self.registry = registry
        self.cache = cache if cache is not None else OutputCache()
        self.sink = sink
        self.file_check = file_check
        self.preflight = preflight

    def run(self, workflow: Workflow, *, targets: Iterable[str] | None = None, settings: RunSettings | None = None,
            cancel: CancelToken | None = None, run_id: str | None = None) -> RunResult:
        """Run the nodes that `targets` (default: every active output node) need; never raises for node errors."""
        run_id = run_id or uuid.uuid4().hex[:12]
        started = time.perf_counter()
        result = RunResult(run_id, "running")
        targets = list(targets) if targets is not None else None
        problems = validate(workflow, self.registry, file_check=self.file_check, require_output=targets is None)
        problems += [Problem("missing_node", f"cannot run node {t!r}: it does not exist", t)
                     for t in targets or () if t not in workflow.nodes]
        if not problems and self.preflight is not None:
            problems = list(self.preflight(workflow))
        if problems:
            result.status, result.problems = "invalid", problems
            result.message = f"the workflow has {len(problems)} problem(s)"
            self._emit(RunFailed(run_id, None, result.message, tuple(problems)))
            return result
        if targets is None:
            targets = [n.id for n in workflow if n.mode == "normal" and self.registry[n.type].output_node]
        targets = [t for t in targets if workflow.nodes[t].mode == "normal"]
        plan = self._plan(workflow, targets)
        self._emit(RunStarted(run_id, tuple(p.node_id for p in plan)))
        state = RunState(workflow=workflow, plan=plan, cache=self.cache, settings=settings or RunSettings(),
                         cancel=cancel or CancelToken(), result=result, emit=self._emit)
        state.execute(targets)
        result.total_seconds = time.perf_counter() - started
        if result.status == "finished":
            self._emit(RunFinished(run_id, result.total_seconds, tuple(result.executed), tuple(result.cached)))
        return result

    def _plan(self, workflow: Workflow, targets: list[str]) -> list[PlannedNode]:
        """The nodes `targets` need, with linked inputs resolved through bypassed nodes, in topological order."""
        planned: dict[str, PlannedNode] = {}
        pending = list(targets)
        while pending:
            node_id = pending.pop()
            if node_id in planned:
                continue
            node_def = self.registry[workflow.nodes[node_id].type]
            linked: dict[str, tuple[str, str] | None] = {}
            for spec in node_def.inputs:
                links = workflow.links_into(node_id, spec.name)
                if not links:
                    continue
                try:
                    linked[spec.name] = resolve_source(workflow, self.registry, links[0])
                    pending.append(linked[spec.name][0])
                except Unresolvable:
                    linked[spec.name] = None  # validation allows this for optional inputs only
            planned[node_id] = PlannedNode(node_id, node_def, linked)
        dependencies = {node_id: p.sources for node_id, p in planned.items()}
        order = topological_order([n for n in workflow.nodes if n in planned], dependencies)
        return [planned[node_id] for node_id in order]

    def _emit(self, event: Event) -> None:
        try:
            self.sink(event)
        except Exception:  # a broken listener must not break the run
            log.exception("event sink failed on %s", type(event).__name__)
