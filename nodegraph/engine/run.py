"""One run of a plan: signatures first, then only the nodes whose results the cache cannot supply.

The walk goes backwards from the targets: a node whose signature is in the cache is loaded from it and everything
behind it is skipped (reported as cached), so a small cache that evicted an ancestor never forces that ancestor to
re-run. Nodes that must run execute in topological order; an intermediate value is dropped as soon as its last
consumer has run.
"""

from __future__ import annotations

import contextlib
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from nodegraph.core.errors import Cancelled, NodeError
from nodegraph.core.graph import Workflow
from nodegraph.core.schema import NodeDef
from nodegraph.engine.cache import CachedOutputs, OutputCache
from nodegraph.engine.cancel import CancelToken
from nodegraph.engine.context import ExecutionContext, RunSettings
from nodegraph.engine.events import (
    Event,
    NodeCached,
    NodeFailed,
    NodeFinished,
    NodeMessage,
    NodeStarted,
    RunCancelled,
    RunFailed,
)
from nodegraph.engine.signature import node_signature


@dataclass
class RunResult:
    """The outcome of one run.

    `status` is "finished", "failed" (a node raised: `failed_node`, `message`, `details`), "cancelled", or
    "invalid" (the workflow did not validate: `problems`). `outputs` holds the values of the target nodes, `files`
    the files each node wrote (cached ones included), `seconds` the time of each node that ran, `cached` the nodes
    whose results came from the cache (or were not needed because a later result did).
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
    problems: list[Any] = field(default_factory=list)
    total_seconds: float = 0.0
    #: the failure was memory running out (RAM or GPU): the models were freed, a smaller run may work
    out_of_memory: bool = False

    @property
    def ok(self) -> bool:
        """True when the run finished."""
        return self.status == "finished"


@dataclass(frozen=True)
class PlannedNode:
    """A node of the plan with its linked inputs resolved to (source node, output), or None for an optional input
    whose source cannot deliver (muted)."""

    node_id: str
    node_def: NodeDef
    linked: Mapping[str, tuple[str, str] | None]

    @property
    def sources(self) -> set[str]:
        """The nodes this one reads from."""
        return {src[0] for src in self.linked.values() if src}


class _Stop(Exception):
    """Unwinds a run after a failure or a cancellation has been recorded in the result."""


class RunState:
    """The state of one run: values held, signatures, and what ran."""

    def __init__(self, *, workflow: Workflow, plan: list[PlannedNode], cache: OutputCache, settings: RunSettings,
                 cancel: CancelToken, result: RunResult, emit: Callable[[Event], None]):
        self.workflow = workflow
        self.plan = {p.node_id: p for p in plan}
        self.order = [p.node_id for p in plan]
        self.cache = cache
        self.settings = settings
        self.cancel = cancel
        self.result = result
        self.emit = emit
        self.values: dict[str, Mapping[str, Any]] = {}
        self.signatures: dict[str, str] = {}
        self.volatile: set[str] = set()  # not-idempotent nodes and their descendants: never cached
        self.reported: set[str] = set()

    def execute(self, targets: Iterable[str]) -> None:
        """Run the plan for `targets`; the outcome lands in the result (never raises for node problems)."""
        targets = list(targets)
        try:
            for node_id in self.order:
                self._sign(node_id)
            hits, to_run = self._walk(targets)
            for node_id in self.order:  # everything that will not run is settled by the cache: say so up front
                if node_id not in to_run:
                    self._report_cached(node_id)
                    self._repeat_messages(node_id, hits)
            self._perform(hits, to_run, keep=set(targets))
        except _Stop:
            return
        finally:
            self.result.cached = [n for n in self.order if n in self.reported and n not in self.result.executed]
        self.result.outputs = {n: dict(self.values[n]) for n in targets if n in self.values}
        self.result.status = "finished"

    # --- signatures ---------------------------------------------------------------------------------------------
    def _literals(self, step: PlannedNode) -> dict[str, Any]:
        node = self.workflow.nodes[step.node_id]
        return {spec.name: node.inputs.get(spec.name, spec.default)
                for spec in step.node_def.literal_inputs if spec.name not in step.linked}

    def _sign(self, node_id: str) -> None:
        step = self.plan[node_id]
        literals = self._literals(step)
        fingerprint = None
        if step.node_def.fingerprint is not None:
            arguments = dict(literals)
            linked_literals = {spec.name: step.linked[spec.name] for spec in step.node_def.literal_inputs
                               if spec.name in step.linked}
            sources = {src[0] for src in linked_literals.values() if src}
            if sources:  # a literal fed by a link (a shared file name, say): its value is needed to fingerprint
                self._perform(*self._walk(sources), keep=sources)
            arguments.update({name: self.values[src[0]][src[1]] if src else None
                              for name, src in linked_literals.items()})
            try:
                fingerprint = step.node_def.fingerprint(self.settings, **arguments)
            except Exception as error:
                self._fail(step, error)
        if step.node_def.not_idempotent or step.sources & self.volatile:
            self.volatile.add(node_id)
        self.signatures[node_id] = node_signature(
            step.node_def, literals, fingerprint,
            {name: (self.signatures[src[0]], src[1]) if src else ("", "") for name, src in step.linked.items()},
            nonce=f"{self.result.run_id}:{node_id}" if step.node_def.not_idempotent else None)

    # --- execution ----------------------------------------------------------------------------------------------
    def _walk(self, targets: Iterable[str]) -> tuple[dict[str, CachedOutputs], set[str]]:
        """Walk back from `targets`: the cache entries to load, and the nodes that must run."""
        hits: dict[str, CachedOutputs] = {}
        to_run: set[str] = set()
        pending = [t for t in targets if t not in self.values]
        while pending:
            node_id = pending.pop()
            if node_id in hits or node_id in to_run or node_id in self.values:
                continue
            entry = None if node_id in self.volatile else self.cache.get(self.signatures[node_id])
            if entry is not None:
                hits[node_id] = entry  # held now, so a later eviction during this run cannot lose it
            else:
                to_run.add(node_id)
                pending.extend(self.plan[node_id].sources)
        return hits, to_run

    def _perform(self, hits: dict[str, CachedOutputs], to_run: set[str], keep: set[str]) -> None:
        """Load the hits and run the rest in topological order, freeing each value after its last consumer."""
        uses = Counter(src for node_id in to_run for src in self.plan[node_id].sources)
        for node_id in self.order:
            if node_id in hits:
                self._load(node_id, hits.pop(node_id))
            elif node_id in to_run:
                self._run(node_id)
                for src in self.plan[node_id].sources:
                    uses[src] -= 1
                    if uses[src] == 0 and src not in keep:
                        self.values.pop(src, None)  # its last consumer ran: free it (the cache may still hold it)

    def _load(self, node_id: str, entry: CachedOutputs) -> None:
        self.values[node_id] = entry.values
        self.result.files[node_id] = list(entry.files)
        self._report_cached(node_id)

    def _repeat_messages(self, node_id: str, hits: Mapping[str, CachedOutputs]) -> None:
        """What a node settled by the cache reported when it ran (it still holds: the same inputs gave the same
        result), also for nodes behind a cache hit while the cache still has them."""
        entry = hits.get(node_id) or (None if node_id in self.volatile else self.cache.get(self.signatures[node_id]))
        for about, level, text in entry.messages if entry is not None else ():
            self.emit(NodeMessage(self.result.run_id, about, level, text))

    def _report_cached(self, node_id: str) -> None:
        if node_id not in self.reported:
            self.reported.add(node_id)
            self.emit(NodeCached(self.result.run_id, node_id, self.plan[node_id].node_def.type))

    def _run(self, node_id: str) -> None:
        if self.cancel.cancelled:
            self._cancelled(None)
        step = self.plan[node_id]
        inputs = self._literals(step)
        for spec in step.node_def.inputs:
            if spec.name in step.linked:
                src = step.linked[spec.name]
                inputs[spec.name] = self.values[src[0]][src[1]] if src else None
            else:
                inputs.setdefault(spec.name, None)  # an optional link input left unconnected
        ctx = ExecutionContext(run_id=self.result.run_id, node_id=node_id, node_type=step.node_def.type,
                               workflow=self.workflow, settings=self.settings, cancel=self.cancel, emit=self.emit)
        self.emit(NodeStarted(self.result.run_id, node_id, step.node_def.type))
        started = time.perf_counter()
        try:
            outputs = checked_outputs(step.node_def, step.node_def.run(ctx, **inputs))
        except Cancelled:
            self._cancelled(node_id)
        except KeyboardInterrupt:
            raise
        except BaseException as error:  # node code may raise anything, even SystemExit: it fails the node only
            self._fail(step, error)
        seconds = time.perf_counter() - started
        self.values[node_id] = outputs
        self.result.executed.append(node_id)
        self.result.seconds[node_id] = seconds
        self.result.files[node_id] = list(ctx.files)
        self.reported.add(node_id)
        self.emit(NodeFinished(self.result.run_id, node_id, step.node_def.type, seconds, tuple(ctx.files)))
        if node_id not in self.volatile:
            self.cache.put(self.signatures[node_id], outputs, tuple(ctx.files), tuple(ctx.messages))

    def _out_of_memory(self, error: BaseException) -> str:
        """Free what the model service holds (the next run must work) and say what ran out and what to try."""
        self.result.out_of_memory = True
        release = getattr(self.settings.services.get("models"), "clear", None)
        if callable(release):
            with contextlib.suppress(Exception):  # freeing is best effort; the message below matters more
                release()
        gpu = type(error).__name__ == "OutOfMemoryError" or any(w in str(error) for w in ("CUDA", "MPS", "HIP"))
        where = "the GPU's memory" if gpu else "the computer's memory (RAM)"
        return (f"out of memory: this node needed more than {where} had free; the loaded models were freed. Try a "
                "smaller image or batch, fp16 precision (Settings), fewer models in one graph"
                + (", or the CPU" if gpu else ", or closing other programs"))

    def _cancelled(self, node_id: str | None) -> None:
        self.result.status = "cancelled"
        self.emit(RunCancelled(self.result.run_id, node_id))
        raise _Stop

    def _fail(self, step: PlannedNode, error: BaseException) -> None:
        if isinstance(error, NodeError):
            message, details = str(error), ""
        elif out_of_memory(error):
            message, details = self._out_of_memory(error), ""
        else:
            message = f"{type(error).__name__}: {error}"
            details = "".join(traceback.format_exception(error))
        result = self.result
        result.status, result.failed_node, result.message, result.details = "failed", step.node_id, message, details
        self.emit(NodeFailed(result.run_id, step.node_id, step.node_def.type, message, details))
        self.emit(RunFailed(result.run_id, step.node_id, message))
        raise _Stop


def checked_outputs(node_def: NodeDef, outputs: Any) -> Mapping[str, Any]:
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


def out_of_memory(error: BaseException) -> bool:
    """Whether `error` means memory ran out: Python's MemoryError, torch's OutOfMemoryError (CUDA), or an allocator's
    error saying so (CPU "DefaultCPUAllocator: can't allocate", MPS/HIP "out of memory", a memory map refused with
    ENOMEM "Cannot allocate memory"). Duck-typed: the engine does not import torch."""
    if isinstance(error, MemoryError) or type(error).__name__ == "OutOfMemoryError":
        return True
    text = str(error).lower()
    return isinstance(error, (RuntimeError, OSError)) and any(
        words in text for words in ("out of memory", "can't allocate memory", "cannot allocate memory"))
