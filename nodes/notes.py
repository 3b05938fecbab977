"""A note on the canvas: text for whoever opens the workflow (ComfyUI's Note imports as one). Never runs."""

from nodegraph.core import Input, node


@node(type="Note", display_name="Note", category="utils",
      description="A note for whoever opens the workflow. It has no ports and never runs.",
      inputs=[Input.string("text", "", multiline=True)])
def note(ctx, text):
    """Nothing to do: a note only carries its text."""
    return {}
