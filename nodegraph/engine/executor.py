"""The executor: validates a workflow, plans the nodes its outputs need, and runs them with caching.

Modelled on ComfyUI's execution list and ancestor-signature caching and chaiNNer's refcounted outputs and typed
events, written for this project: a plan is the set of nodes the targets need (looking through bypassed nodes), in
a stable topological order; each node is looked up in the :class:`OutputCache` under its signature before running;
an intermediate value is dropped as soon as its last consumer has run; a node's exception becomes a
:class:`NodeFailed` event and a failed :class:`RunResult`, never an exception for the caller.
"""

from __future__ import annotations

import logging
import time
import traceback
import uuid
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from nodegraph.core.errors import Cancelled, NodeError
from nodegraph.core.graph import Workflow
from nodegraph.core.registry import NodeRegistry
from nodegraph.core.schema import NodeDef
from nodegraph.core.topology import Unresolvable, resolve_source, topological_order
from nodegraph.core.validate import FileCheck, Problem, validate
from nodegraph.engine.cache import OutputCache
from nodegraph.engine.cancel import CancelToken
from nodegraph.engine.context import ExecutionContext, RunSettings
from nodegraph.engine.events import (
    Event,
    EventSink,
    NodeCached,
    NodeFailed,
    NodeFinished,
    NodeStarted,
    RunCancelled,
    RunFailed,
    RunFinished,
    RunStarted,
    null_sink,
)
from nodegraph.engine.signature import node_signature

log = logging.getLogger(__name__)


@dataclass
class RunResult:
    """The outcome of one run.

    `status` is "finished", "failed" (a node raised: `failed_node`, `message`, `details`), "cancelled", or
    "invalid" (the workflow did not validate: `problems`). `outputs` holds the values of the target nodes, `files`
    the files each node wrote (cached ones included), `seconds` the time of each node that ran.
    """

    run_id: str
    status: str
    executed: list[str] = field(default_factory=list)
    cached: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    files: dict[str, list[str]] = field(default_factory=dict)
    outputs: dict[str, Mapping[str, Any]] = field(default_factory=dict)
    failed_node: str | None = None
    message: str = ""
    details: str = ""
    problems: list[Problem] = field(default_factory=list)
    total_seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """True when the run finished."""
        return self.status == "finished"


@dataclass(frozen=True)
class _PlannedNode:
    node_id: str
    node_def: NodeDef
    linked: Mapping[str, tuple[str, str] | None]  # input -> resolved (source node, output); None: optional, no value


class Executor:
    """Runs workflows against a registry, sharing one output cache across runs.

    Args:
        registry: the node types.
        cache: the cross-run cache (a fresh bounded one by default).
        sink: receives every :class:`Event`; it runs on the executor's thread.
        file_check: checks literals that name model files during validation (from the model layer).
    """

    def __init__(self, registry: NodeRegistry, cache: OutputCache | None = None, sink: EventSink = null_sink,
                 file_check: FileCheck | None = None):
        self.registry = registry
        self.cache = cache if cache is not None else OutputCache()
        self.sink = sink
        self.file_check = file_check

    def run(self, workflow: Workflow, *, targets: Iterable[str] | None = None, settings: RunSettings | None = None,
            cancel: CancelToken | None = None, run_id: str | None = None) -> RunResult:
        """Run the nodes that `targets` (default: every active output node) need; never raises for node errors."""
        run_id = run_id or uuid.uuid4().hex[:12]
        settings = settings or RunSettings()
        cancel = cancel or CancelToken()
        started = time.perf_counter()
        result = RunResult(run_id, "running")
        targets = list(targets) if targets is not None else None
        problems = validate(workflow, self.registry, file_check=self.file_check, require_output=targets is None)
        problems += [Problem("missing_node", f"cannot run node {t!r}: it does not exist", t)
                     for t in targets or () if t not in workflow.nodes]
        if problems:
            result.status, result.problems = "invalid", problems
            result.message = f"the workflow has {len(problems)} problem(s)"
            self._emit(RunFailed(run_id, None, result.message, tuple(problems)))
            return result
        if targets is None:
            targets = [n.id for n in workflow if n.mode == "normal" and self.registry[n.type].output_node]
        plan = self._plan(workflow, targets)
        self._emit(RunStarted(run_id, tuple(p.node_id for p in plan)))
        self._execute(workflow, plan, set(targets), settings, cancel, result)
        result.total_seconds = time.perf_counter() - started
        if result.status == "finished":
            self._emit(RunFinished(run_id, result.total_seconds, tuple(result.executed), tuple(result.cached)))
        return result

    def _plan(self, workflow: Workflow, targets: list[str]) -> list[_PlannedNode]:
        planned: dict[str, _PlannedNode] = {}
        pending = [t for t in targets if workflow.nodes[t].mode == "normal"]
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
            planned[node_id] = _PlannedNode(node_id, node_def, linked)
        dependencies = {node_id: {src[0] for src in p.linked.values() if src} for node_id, p in planned.items()}
        order = topological_order([n for n in workflow.nodes if n in planned], dependencies)
        return [planned[node_id] for node_id in order]

    def _execute(self, workflow: Workflow, plan: list[_PlannedNode], targets: set[str], settings: RunSettings,
                 cancel: CancelToken, result: RunResult) -> None:
        values: dict[str, Mapping[str, Any]] = {}
        signatures: dict[str, str] = {}
        uses = Counter(src[0] for p in plan for src in p.linked.values() if src)
        for step in plan:
            node = workflow.nodes[step.node_id]
            if cancel.cancelled:
                result.status = "cancelled"
                self._emit(RunCancelled(result.run_id, None))
                return
            literals = {spec.name: node.inputs.get(spec.name, spec.default)
                        for spec in step.node_def.literal_inputs if spec.name not in step.linked}
            try:
                fingerprint = step.node_def.fingerprint(**literals) if step.node_def.fingerprint else None
            except Exception as error:
                self._fail(result, step, error)
                return
            signature = node_signature(
                step.node_def, literals, fingerprint,
                {name: (signatures[src[0]], src[1]) if src else ("", "") for name, src in step.linked.items()},
                nonce=f"{result.run_id}:{step.node_id}" if step.node_def.not_idempotent else None)
            signatures[step.node_id] = signature
            cached = None if step.node_def.not_idempotent else self.cache.get(signature)
            if cached is not None:
                values[step.node_id] = cached.values
                result.files[step.node_id] = list(cached.files)
                result.cached.append(step.node_id)
                self._emit(NodeCached(result.run_id, step.node_id, node.type))
            else:
                inputs = dict(literals)
                for spec in step.node_def.inputs:
                    if spec.name in step.linked:
                        src = step.linked[spec.name]
                        inputs[spec.name] = values[src[0]][src[1]] if src else None
                    elif spec.name not in inputs:
                        inputs[spec.name] = None  # an optional link input left unconnected
                outputs = self._run_node(workflow, step, inputs, settings, cancel, result)
                if outputs is None:
                    return
                values[step.node_id] = outputs
                if not step.node_def.not_idempotent:
                    self.cache.put(signature, outputs, tuple(result.files.get(step.node_id, ())))
            for src in {src[0] for src in step.linked.values() if src}:
                uses[src] -= 1
                if uses[src] == 0 and src not in targets:
                    del values[src]  # the last consumer ran: free the intermediate (the cache may still hold it)
        result.outputs = {node_id: values[node_id] for node_id in targets if node_id in values}
        result.status = "finished"

    def _run_node(self, workflow: Workflow, step: _PlannedNode, inputs: dict[str, Any], settings: RunSettings,
                  cancel: CancelToken, result: RunResult) -> Mapping[str, Any] | None:
        node_type = step.node_def.type
        ctx = ExecutionContext(run_id=result.run_id, node_id=step.node_id, node_type=node_type, workflow=workflow,
                               settings=settings, cancel=cancel, emit=self._emit)
        self._emit(NodeStarted(result.run_id, step.node_id, node_type))
        started = time.perf_counter()
        try:
            outputs = step.node_def.run(ctx, **inputs)
            outputs = _checked_outputs(step.node_def, outputs)
        except Cancelled:
            result.status = "cancelled"
            self._emit(RunCancelled(result.run_id, step.node_id))
            return None
        except Exception as error:
            self._fail(result, step, error)
            return None
        seconds = time.perf_counter() - started
        result.executed.append(step.node_id)
        result.seconds[step.node_id] = seconds
        result.files[step.node_id] = list(ctx.files)
        self._emit(NodeFinished(result.run_id, step.node_id, node_type, seconds, tuple(ctx.files)))
        return outputs

    def _fail(self, result: RunResult, step: _PlannedNode, error: Exception) -> None:
        if isinstance(error, NodeError):
            message, details = str(error), ""
        else:
            message = f"{type(error).__name__}: {error}"
            details = traceback.format_exc()
        result.status, result.failed_node, result.message, result.details = "failed", step.node_id, message, details
        self._emit(NodeFailed(result.run_id, step.node_id, step.node_def.type, message, details))
        self._emit(RunFailed(result.run_id, step.node_id, message))

    def _emit(self, event: Event) -> None:
        try:
            self.sink(event)
        except Exception:  # a broken listener must not break the run
            log.exception("event sink failed on %s", type(event).__name__)


def _checked_outputs(node_def: NodeDef, outputs: Any) -> Mapping[str, Any]:
    """Check what `run` returned against the declared outputs (a programming error in a node becomes a failure)."""
    if outputs is None:
        outputs = {}
    if not isinstance(outputs, Mapping):
        raise TypeError(f"{node_def.type}.run returned {type(outputs).__name__}, expected a mapping of outputs")
    missing = [spec.name for spec in node_def.outputs if spec.name not in outputs]
    unknown = [name for name in outputs if node_def.output(name) is None]
    if missing or unknown:
        raise TypeError(f"{node_def.type}.run returned outputs {sorted(outputs)}, declared "
                        f"{[spec.name for spec in node_def.outputs]}")
    return dict(outputs)
