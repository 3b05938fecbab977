"""A small node pack for tests: integer arithmetic, text output files, failures, slow steps and a custom port type.

Loaded through the real pack loader (``NodeRegistry.load_pack``), like any user pack.
"""

PORT_TYPES = ["TOKEN"]
