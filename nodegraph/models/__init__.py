"""The model layer: finding, identifying and safely loading Stable Diffusion files, offline, with a model cache.

This is the only package that imports torch, diffusers, transformers or peft — always lazily, inside functions,
after :func:`nodegraph.models.offline.ensure_offline` has disabled every hub lookup. Importing this package itself
stays cheap.
"""
