"""AUTOMATIC1111 hypernetworks: small MLPs that transform the attention context before the key and value
projections, ``k = to_k(c + mlp_k(c) * strength)`` (likewise for v), chosen by the context's width.

diffusers has no hypernetwork support (FORMATS.md), so this module builds the MLPs from the file and wraps each
attention layer's ``to_k``/``to_v`` for the duration of a block; leaving the block puts the original layers back.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nodegraph.models.errors import CorruptModelError, IncompatibleModelError
from nodegraph.models.offline import import_torch
from nodegraph.models.safe_load import load_pickle

_ACTIVATIONS = {"relu": "ReLU", "leakyrelu": "LeakyReLU", "elu": "ELU", "swish": "SiLU", "silu": "SiLU",
                "tanh": "Tanh", "sigmoid": "Sigmoid", "softsign": "Softsign", "mish": "Mish", "gelu": "GELU"}


@dataclass(frozen=True)
class Hypernetwork:
    """The MLP pairs of a hypernetwork file by context width: ``{768: (mlp_k, mlp_v), 320: …}``."""

    path: Path
    modules: Mapping[int, tuple[Any, Any]]


def read_hypernetwork(path: str | Path) -> Hypernetwork:
    """Read an AUTOMATIC1111 hypernetwork ``.pt`` (through the safe loader) into torch modules."""
    path = Path(path)
    data = load_pickle(path)
    widths = [key for key in data if isinstance(key, int)]
    if not widths:
        raise CorruptModelError(path, "not a hypernetwork (no per-width layers)")
    activation = str(data.get("activation_func") or "linear").lower()
    if activation != "linear" and activation not in _ACTIVATIONS:
        raise CorruptModelError(path, f"unsupported activation function {activation!r}")
    activate_output = bool(data.get("activate_output", False))
    modules = {}
    for width in widths:
        pair = data[width]
        if not isinstance(pair, (list, tuple)) or len(pair) != 2:
            raise CorruptModelError(path, f"layer {width} does not hold a key/value pair of networks")
        modules[width] = tuple(_build_mlp(path, state, activation, activate_output) for state in pair)
    return Hypernetwork(path, modules)


def _build_mlp(path: Path, state: Mapping[str, Any], activation: str, activate_output: bool) -> Any:
    """Rebuild AUTOMATIC1111's ``nn.Sequential`` from its numbered parameters: linear layers (2-D weights) and layer
    norms (1-D weights) sit at their indices; the parameterless slots between them hold the activation (dropout is
    inactive at inference)."""
    torch = import_torch()
    indices = sorted({int(m.group(1)) for key in state if (m := re.match(r"linear\.(\d+)\.weight$", key))})
    if not indices:
        raise CorruptModelError(path, "a hypernetwork layer without weights")
    layers: list[Any] = []
    pending_activation = False
    for index in range(indices[-1] + 1):
        weight = state.get(f"linear.{index}.weight")
        bias = state.get(f"linear.{index}.bias")
        if weight is None:
            if pending_activation and activation != "linear":
                layers.append(getattr(torch.nn, _ACTIVATIONS[activation])())
            pending_activation = False
            continue
        if weight.dim() == 2:
            layer = torch.nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
            pending_activation = True
        else:
            layer = torch.nn.LayerNorm(weight.shape[0])
        layer.load_state_dict({k: v for k, v in (("weight", weight), ("bias", bias)) if v is not None})
        layers.append(layer)
    if activate_output and activation != "linear":
        layers.append(getattr(torch.nn, _ACTIVATIONS[activation])())
    return torch.nn.Sequential(*layers).eval().requires_grad_(False)


def _wrapped(base: Any, mlps: Sequence[tuple[Any, float]]) -> Any:
    torch = import_torch()

    class HypernetworkProjection(torch.nn.Module):
        """``base(x + Σ mlp(x) * strength)``, applying each hypernetwork in turn, as AUTOMATIC1111 does."""

        def __init__(self) -> None:
            super().__init__()
            self.base = base
            self.mlps = torch.nn.ModuleList([mlp for mlp, _ in mlps])
            self.strengths = [strength for _, strength in mlps]

        @property
        def in_features(self) -> int:
            return base.in_features

        def forward(self, x: Any) -> Any:
            # The MLPs stay float32 (the file's modules are shared: casting them in place to a float16 UNet's dtype
            # would round their weights for every later use); the context is upcast for them, as AUTOMATIC1111
            # does, and cast back for the projection.
            dtype = x.dtype
            x = x.float()
            for mlp, strength in zip(self.mlps, self.strengths, strict=True):
                x = x + mlp.to(device=x.device, dtype=torch.float32)(x) * strength
            return self.base(x.to(dtype))

    return HypernetworkProjection()


@contextmanager
def applied_hypernetworks(unet: Any, hypernetworks: Sequence[tuple[Hypernetwork, float]]) -> Iterator[None]:
    """Within the block, every attention layer of `unet` whose context width a hypernetwork covers uses it."""
    from diffusers.models.attention_processor import Attention

    if not hypernetworks:
        yield
        return
    attentions = [m for m in unet.modules() if isinstance(m, Attention)]
    widths = {attention.to_k.in_features for attention in attentions}
    for hypernetwork, _ in hypernetworks:
        if not widths & set(hypernetwork.modules):
            raise IncompatibleModelError(hypernetwork.path, f"its layer widths {sorted(hypernetwork.modules)} match "
                                                            "no attention layer of this model")
    originals = []
    try:
        for attention in attentions:
            width = attention.to_k.in_features
            pairs = [(h.modules[width], s) for h, s in hypernetworks if width in h.modules]
            if not pairs:
                continue
            originals.append((attention, attention.to_k, attention.to_v))
            attention.to_k = _wrapped(attention.to_k, [(k, s) for (k, _), s in pairs])
            attention.to_v = _wrapped(attention.to_v, [(v, s) for (_, v), s in pairs])
        yield
    finally:
        for attention, to_k, to_v in originals:
            attention.to_k, attention.to_v = to_k, to_v
