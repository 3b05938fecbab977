"""The built-in node pack. Each module holds one family of nodes declared with ``nodegraph.core.node``.

Installed, this folder is the package ``nodegraph.nodes``; the registry loads it like any user pack.
"""
