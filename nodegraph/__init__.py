"""nodegraph: a native desktop node-graph app for Stable Diffusion."""

__version__ = "0.1.0"
