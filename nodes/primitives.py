"""Primitive value nodes: one literal shared by several inputs (e.g. one seed feeding two samplers)."""

from nodegraph.core import Input, Output, PortType, node


@node(type="PrimitiveInt", display_name="Integer", category="utils/primitives",
      description="An integer value to link into several inputs at once.",
      inputs=[Input.int("value", 0, min=-(2**63), max=2**64 - 1)], outputs=[Output("INT", PortType.INT)])
def primitive_int(ctx, value):
    """Pass the integer through."""
    return {"INT": value}


@node(type="PrimitiveFloat", display_name="Number", category="utils/primitives",
      description="A number to link into several inputs at once.",
      inputs=[Input.float("value", 0.0)], outputs=[Output("FLOAT", PortType.FLOAT)])
def primitive_float(ctx, value):
    """Pass the number through."""
    return {"FLOAT": float(value)}


@node(type="PrimitiveString", display_name="Text", category="utils/primitives",
      description="A text (for example a shared prompt) to link into several inputs at once.",
      inputs=[Input.string("value", "", multiline=True)], outputs=[Output("STRING", PortType.STRING)])
def primitive_string(ctx, value):
    """Pass the text through."""
    return {"STRING": value}


@node(type="PrimitiveBoolean", display_name="Boolean", category="utils/primitives",
      description="A true/false switch to link into several inputs at once.",
      inputs=[Input.boolean("value", False)], outputs=[Output("BOOLEAN", PortType.BOOLEAN)])
def primitive_boolean(ctx, value):
    """Pass the switch through."""
    return {"BOOLEAN": value}
