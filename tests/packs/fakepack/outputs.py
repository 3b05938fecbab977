"""Output nodes: write a value to a text file, collect a value, and a slow node that reports progress."""

import time

from nodegraph.core import Input, NodeError, Output, PortType, node


@node(type="WriteText", display_name="Write Text", category="test", description="Write a value to a text file.",
      inputs=[Input.link("value", PortType.ANY), Input.string("filename_prefix", "out")], output_node=True)
def write_text(ctx, value, filename_prefix):
    if ctx.output_dir is None:
        raise NodeError("no output folder")
    ctx.output_dir.mkdir(parents=True, exist_ok=True)
    index = 1
    while (path := ctx.output_dir / f"{filename_prefix}_{index:05d}.txt").exists():
        index += 1
    path.write_text(f"{value}\n", encoding="utf-8")
    ctx.add_file(path)
    return {}


@node(type="Collect", display_name="Collect", category="test", description="An output node that keeps its value.",
      inputs=[Input.link("value", PortType.ANY)], outputs=[Output("VALUE", PortType.ANY)], output_node=True)
def collect(ctx, value):
    return {"VALUE": value}


@node(type="Slow", display_name="Slow", category="test", description="Take `steps` steps, reporting progress.",
      inputs=[Input.link("value", PortType.INT), Input.int("steps", 5, min=1, max=10000),
              Input.float("delay", 0.01, min=0.0, max=10.0)],
      outputs=[Output("VALUE", PortType.INT)])
def slow(ctx, value, steps, delay):
    for step in range(1, steps + 1):
        time.sleep(delay)
        ctx.progress(step, steps)
    return {"VALUE": value}
