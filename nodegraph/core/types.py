"""Port types: what flows along an edge (a handle such as MODEL) or sits in a widget (a literal such as INT)."""

from __future__ import annotations

import math


class PortType:
    """The built-in port type names. Types are plain strings so node packs can add their own (see the registry)."""

    MODEL = "MODEL"
    CLIP = "CLIP"
    VAE = "VAE"
    CONDITIONING = "CONDITIONING"
    LATENT = "LATENT"
    IMAGE = "IMAGE"
    MASK = "MASK"
    UPSCALE_MODEL = "UPSCALE_MODEL"
    CONTROL_NET = "CONTROL_NET"
    INT = "INT"
    FLOAT = "FLOAT"
    STRING = "STRING"
    BOOLEAN = "BOOLEAN"
    CHOICE = "CHOICE"
    ANY = "*"


#: Types whose value can be typed into a widget and stored in a workflow file's ``inputs``.
LITERAL_TYPES = frozenset({PortType.INT, PortType.FLOAT, PortType.STRING, PortType.BOOLEAN, PortType.CHOICE})

#: Every type known without any node pack.
BUILTIN_TYPES = frozenset(
    {
        PortType.MODEL,
        PortType.CLIP,
        PortType.VAE,
        PortType.CONDITIONING,
        PortType.LATENT,
        PortType.IMAGE,
        PortType.MASK,
        PortType.UPSCALE_MODEL,
        PortType.CONTROL_NET,
        PortType.ANY,
    }
    | LITERAL_TYPES
)


def is_literal_type(port_type: str) -> bool:
    """True when a value of this type lives in a widget rather than arriving only by a link."""
    return port_type in LITERAL_TYPES


def types_compatible(output_type: str, input_type: str) -> bool:
    """Whether an output of `output_type` may feed an input of `input_type`.

    Types match by name; ``*`` (ANY) matches everything. A CHOICE input accepts a STRING or CHOICE output, since a
    choice is a string restricted to a list.
    """
    if PortType.ANY in (output_type, input_type) or output_type == input_type:
        return True
    return input_type == PortType.CHOICE and output_type in (PortType.STRING, PortType.CHOICE)


def describe_value(value: object) -> str:
    """A short, user-facing description of a literal's JSON type, for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def literal_type_problem(port_type: str, value: object) -> str | None:
    """Check that `value` has the JSON type a literal of `port_type` needs; return a message, or None when it does.

    Booleans are never accepted as numbers (JSON `true` is not 1), and an integer is accepted where a float is
    expected. Non-finite floats are refused because JSON cannot store them.
    """
    if port_type == PortType.INT:
        ok = isinstance(value, int) and not isinstance(value, bool)
        expected = "an integer"
    elif port_type == PortType.FLOAT:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        expected = "a finite number"
    elif port_type in (PortType.STRING, PortType.CHOICE):
        ok = isinstance(value, str)
        expected = "a string"
    elif port_type == PortType.BOOLEAN:
        ok = isinstance(value, bool)
        expected = "true or false"
    else:
        return f"takes a {port_type} link, not a literal value"
    return None if ok else f"expected {expected}, got {describe_value(value)}"
