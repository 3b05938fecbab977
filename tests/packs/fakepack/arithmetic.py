"""Integer nodes with no side effects."""

from nodegraph.core import Input, NodeError, Output, PortType, node


@node(type="Number", display_name="Number", category="test", description="Emit an integer literal.",
      inputs=[Input.int("value", 1, min=-1000, max=1000)], outputs=[Output("VALUE", PortType.INT)])
def number(ctx, value):
    return {"VALUE": value}


@node(type="Add", display_name="Add", category="test", description="Add two integers.",
      inputs=[Input.link("a", PortType.INT), Input.link("b", PortType.INT, optional=True)],
      outputs=[Output("SUM", PortType.INT)])
def add(ctx, a, b):
    return {"SUM": a + (b or 0)}


@node(type="Scale", display_name="Scale", category="test", description="Multiply an integer by a factor.",
      inputs=[Input.link("value", PortType.INT), Input.int("factor", 2, min=0, max=100)],
      outputs=[Output("VALUE", PortType.INT)])
def scale(ctx, value, factor):
    return {"VALUE": value * factor}


@node(type="Choose", display_name="Choose", category="test", description="Emit one of a few words.",
      inputs=[Input.choice("word", ["alpha", "beta", "gamma"]), Input.float("weight", 0.5, min=0.0, max=1.0),
              Input.boolean("shout", False)],
      outputs=[Output("WORD", PortType.STRING)])
def choose(ctx, word, weight, shout):
    return {"WORD": word.upper() if shout else word}


@node(type="MakeToken", display_name="Make Token", category="test", description="Wrap a value in a TOKEN handle.",
      inputs=[Input.link("value", PortType.INT)], outputs=[Output("TOKEN", "TOKEN")])
def make_token(ctx, value):
    return {"TOKEN": ("token", value)}


@node(type="TokenValue", display_name="Token Value", category="test", description="Unwrap a TOKEN handle.",
      inputs=[Input.link("token", "TOKEN")], outputs=[Output("VALUE", PortType.INT)])
def token_value(ctx, token):
    return {"VALUE": token[1]}


@node(type="Fail", display_name="Fail", category="test", description="Fail on purpose.",
      inputs=[Input.link("value", PortType.INT), Input.choice("how", ["user", "bug", "memory"])],
      outputs=[Output("VALUE", PortType.INT)])
def fail(ctx, value, how):
    if how == "user":
        raise NodeError(f"the value {value} is not acceptable")
    if how == "memory":
        raise MemoryError()
    raise ZeroDivisionError("division by zero")


@node(type="Random", display_name="Random", category="test", description="Not idempotent: never cached.",
      inputs=[Input.link("value", PortType.INT)], outputs=[Output("VALUE", PortType.INT)], not_idempotent=True)
def random_node(ctx, value):
    return {"VALUE": value}
