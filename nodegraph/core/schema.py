"""Node declarations: a typed schema (inputs and outputs by name) plus a pure `run(ctx, **inputs)` function.

A node pack declares nodes with the :func:`node` decorator; the decorator only builds a :class:`NodeDef` value and
registers nothing. The registry collects those values and checks them (see ``registry.py``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from nodegraph.core.types import PortType, is_literal_type, literal_type_problem

#: The three ways a node can take part in a run.
NODE_MODES = ("normal", "bypass", "mute")


@dataclass(frozen=True)
class InputSpec:
    """One named input of a node.

    Args:
        name: the input's name, a Python identifier; also the keyword `run` receives it under.
        type: a port type name (see :class:`PortType`).
        default: the value used when a workflow gives no literal (literal types only); None means "no default".
        min, max, step: numeric limits for INT/FLOAT inputs (widgets use `step`; validation enforces min/max).
        choices: the allowed strings of a CHOICE input.
        tooltip: help text shown in the GUI and by `nodegraph nodes`.
        multiline: a STRING input edited in a multi-line box (prompts).
        optional: when True the input may stay unconnected/empty and `run` receives None for it.
        file_kind: for a STRING/CHOICE that names a model file, the model folder kind it lists (e.g. "checkpoints").
        multiple_of: an INT must be a multiple of this (image sizes: 8).
        labels: display labels of CHOICE values (e.g. "dpmpp_2m" -> "DPM++ 2M"); the values stay what files store.
    """

    name: str
    type: str
    default: Any = None
    min: float | None = None
    max: float | None = None
    step: float | None = None
    choices: tuple[str, ...] = ()
    tooltip: str = ""
    multiline: bool = False
    optional: bool = False
    file_kind: str | None = None
    multiple_of: int | None = None
    labels: tuple[tuple[str, str], ...] = ()

    @property
    def is_literal(self) -> bool:
        """True when the input can hold a literal value (a widget) instead of only a link."""
        return is_literal_type(self.type)

    @property
    def required(self) -> bool:
        """True when a run needs a value for this input: a link, a literal, or a default."""
        return not self.optional

    def check_value(self, value: object) -> str | None:
        """Return why `value` is not acceptable for this input (type, range, choices), or None when it is."""
        problem = literal_type_problem(self.type, value)
        if problem:
            return problem
        if self.type in (PortType.INT, PortType.FLOAT):
            if self.min is not None and value < self.min:
                return f"{value!r} is below the minimum {_num(self.min)}"
            if self.max is not None and value > self.max:
                return f"{value!r} is above the maximum {_num(self.max)}"
            if self.multiple_of and value % self.multiple_of:
                return f"{value!r} is not a multiple of {self.multiple_of}"
        if self.type == PortType.CHOICE and value not in self.choices:
            shown = ", ".join(self.choices[:12]) + (", …" if len(self.choices) > 12 else "")
            return f"{value!r} is not one of: {shown}"
        return None

    def declaration_problems(self) -> list[str]:
        """Everything wrong with this declaration itself (checked when its node is registered)."""
        problems = []
        if not self.name.isidentifier():
            problems.append(f"input name {self.name!r} is not a Python identifier")
        numeric = self.type in (PortType.INT, PortType.FLOAT)
        if not numeric and (self.min is not None or self.max is not None or self.step is not None):
            problems.append(f"input {self.name!r}: min/max/step only apply to INT and FLOAT inputs")
        for label, bound in (("min", self.min), ("max", self.max), ("step", self.step)):
            if bound is not None and (isinstance(bound, bool) or not isinstance(bound, (int, float))
                                      or not math.isfinite(bound)):
                problems.append(f"input {self.name!r}: {label} must be a finite number")
                return problems
        if self.min is not None and self.max is not None and self.min > self.max:
            problems.append(f"input {self.name!r}: min {self.min} is above max {self.max}")
        if self.step is not None and self.step <= 0:
            problems.append(f"input {self.name!r}: step must be positive")
        if self.type == PortType.CHOICE:
            if not self.choices:
                problems.append(f"input {self.name!r}: a CHOICE input needs at least one choice")
            elif len(set(self.choices)) != len(self.choices) or not all(isinstance(c, str) for c in self.choices):
                problems.append(f"input {self.name!r}: choices must be distinct strings")
        elif self.choices:
            problems.append(f"input {self.name!r}: choices only apply to CHOICE inputs")
        if self.multiple_of is not None and (self.type != PortType.INT or self.multiple_of < 1):
            problems.append(f"input {self.name!r}: multiple_of only applies to INT inputs, and must be >= 1")
        if self.labels and (self.type != PortType.CHOICE or {v for v, _ in self.labels} - set(self.choices)):
            problems.append(f"input {self.name!r}: labels must name choices of a CHOICE input")
        if self.multiline and self.type != PortType.STRING:
            problems.append(f"input {self.name!r}: multiline only applies to STRING inputs")
        if self.default is not None:
            if not self.is_literal:
                problems.append(f"input {self.name!r}: a {self.type} input cannot have a default value")
            else:
                why = self.check_value(self.default)
                if why:
                    problems.append(f"input {self.name!r}: default {why}")
        return problems


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


@dataclass(frozen=True)
class OutputSpec:
    """One named output of a node, carrying values of `type`."""

    name: str
    type: str
    tooltip: str = ""


class Input:
    """Shorthand constructors for :class:`InputSpec`, so declarations read like the widget they make."""

    @staticmethod
    def link(name: str, type: str, *, optional: bool = False, tooltip: str = "") -> InputSpec:
        """An input fed by a link (MODEL, CLIP, LATENT, …). For a literal type (INT, …) it has no default, so a
        literal may still be typed in when no link is connected."""
        return InputSpec(name, type, optional=optional, tooltip=tooltip)

    @staticmethod
    def int(name: str, default: int | None = 0, *, min: int | None = None, max: int | None = None,
            step: int | None = 1, tooltip: str = "", optional: bool = False,
            multiple_of: int | None = None) -> InputSpec:
        """An integer widget with optional limits (and a required multiple, for image sizes)."""
        return InputSpec(name, PortType.INT, default, min, max, step, tooltip=tooltip, optional=optional,
                         multiple_of=multiple_of)

    @staticmethod
    def float(name: str, default: float | None = 0.0, *, min: float | None = None, max: float | None = None,
              step: float | None = 0.01, tooltip: str = "", optional: bool = False) -> InputSpec:
        """A number widget with optional limits."""
        return InputSpec(name, PortType.FLOAT, default, min, max, step, tooltip=tooltip, optional=optional)

    @staticmethod
    def string(name: str, default: str | None = "", *, multiline: bool = False, tooltip: str = "",
               optional: bool = False, file_kind: str | None = None) -> InputSpec:
        """A text widget; `multiline` for prompts; `file_kind` when the text names a model file."""
        return InputSpec(name, PortType.STRING, default, tooltip=tooltip, multiline=multiline, optional=optional,
                         file_kind=file_kind)

    @staticmethod
    def boolean(name: str, default: bool | None = False, *, tooltip: str = "", optional: bool = False) -> InputSpec:
        """A check box."""
        return InputSpec(name, PortType.BOOLEAN, default, tooltip=tooltip, optional=optional)

    @staticmethod
    def choice(name: str, choices: Sequence[str], default: str | None = None, *, tooltip: str = "",
               optional: bool = False, labels: Mapping[str, str] | None = None) -> InputSpec:
        """A drop-down of fixed strings; the default is the first choice unless given; `labels` are shown instead
        of the stored values."""
        choices = tuple(choices)
        if default is None and choices:
            default = choices[0]
        return InputSpec(name, PortType.CHOICE, default, choices=choices, tooltip=tooltip, optional=optional,
                         labels=tuple((labels or {}).items()))


Output = OutputSpec

#: Upgrades a node's saved literal inputs from one type version to the next: ``upgrades[v](inputs) -> inputs``.
Upgrader = Callable[[dict[str, Any]], dict[str, Any]]


@dataclass(frozen=True)
class NodeDef:
    """A node type: its schema and its behaviour.

    Args:
        type: the stable type id stored in workflow files (never rename it).
        version: the schema version; bump it when inputs change and add an upgrader for files saved before.
        display_name, category, description: what users see in the palette and in `nodegraph nodes`.
        inputs, outputs: the ports, by name.
        run: ``run(ctx, **inputs) -> {output name: value}``; must not keep state between calls.
        fingerprint: ``fingerprint(settings, **literal_inputs) -> str | None``: extra identity for caching, e.g. a
            file's size and mtime, so an edited file is not served from the cache; `settings` is the run's
            :class:`~nodegraph.engine.context.RunSettings` (its services resolve model names to files).
        not_idempotent: never reuse a cached result (e.g. a random-seed node).
        output_node: the node produces something for the user (a saved image); runs start from output nodes.
        upgrades: ``{old_version: upgrader}`` applied in order to inputs saved by an older version.
        check: ``check(**literal_inputs) -> {input name: message}``: problems between literals that no single
            input's limits express (e.g. a sampler that does not support a schedule); run by validation.
    """

    type: str
    run: Callable[..., Mapping[str, Any] | None]
    version: int = 1
    display_name: str = ""
    category: str = "misc"
    description: str = ""
    inputs: tuple[InputSpec, ...] = ()
    outputs: tuple[OutputSpec, ...] = ()
    fingerprint: Callable[..., str | None] | None = None
    not_idempotent: bool = False
    output_node: bool = False
    upgrades: Mapping[int, Upgrader] = field(default_factory=dict)
    check: Callable[..., Mapping[str, str]] | None = None

    def input(self, name: str) -> InputSpec | None:
        """The input called `name`, or None."""
        return next((spec for spec in self.inputs if spec.name == name), None)

    def output(self, name: str) -> OutputSpec | None:
        """The output called `name`, or None."""
        return next((spec for spec in self.outputs if spec.name == name), None)

    @property
    def literal_inputs(self) -> tuple[InputSpec, ...]:
        """The inputs that can hold a literal (widget) value."""
        return tuple(spec for spec in self.inputs if spec.is_literal)

    def upgrade_inputs(self, inputs: dict[str, Any], from_version: int) -> dict[str, Any]:
        """Return `inputs` as saved by `from_version` converted to this version through the declared upgraders."""
        for version in range(from_version, self.version):
            upgrader = self.upgrades.get(version)
            if upgrader is not None:
                inputs = dict(upgrader(dict(inputs)))
        return inputs


def node(
    *,
    type: str,
    display_name: str,
    category: str,
    description: str,
    inputs: Sequence[InputSpec] = (),
    outputs: Sequence[OutputSpec] = (),
    version: int = 1,
    fingerprint: Callable[..., str | None] | None = None,
    not_idempotent: bool = False,
    output_node: bool = False,
    upgrades: Mapping[int, Upgrader] | None = None,
    check: Callable[..., Mapping[str, str]] | None = None,
) -> Callable[[Callable[..., Any]], NodeDef]:
    """Declare a node: decorate its `run(ctx, **inputs)` function; the result is a :class:`NodeDef` value.

    Nothing is registered here: a node pack's module-level NodeDefs are collected by the registry when the pack
    loads, and checked then.
    """

    def wrap(run: Callable[..., Any]) -> NodeDef:
        return NodeDef(
            type=type,
            run=run,
            version=version,
            display_name=display_name,
            category=category,
            description=description,
            inputs=tuple(inputs),
            outputs=tuple(outputs),
            fingerprint=fingerprint,
            not_idempotent=not_idempotent,
            output_node=output_node,
            upgrades=dict(upgrades or {}),
            check=check,
        )

    return wrap
