"""AUTOMATIC1111 hypernetworks: the file's MLPs rebuilt exactly and applied to the cross-attention key and value
inputs as a hand-written reference does, on full- and half-precision models."""

from __future__ import annotations

import pytest
import torch

from nodegraph.models.offline import ensure_offline

ensure_offline()

import diffusers  # noqa: E402

from nodegraph.models import synthetic  # noqa: E402
from nodegraph.models.errors import IncompatibleModelError  # noqa: E402
from nodegraph.models.hypernetwork import applied_hypernetworks, read_hypernetwork  # noqa: E402
from nodegraph.models.loader import load_checkpoint  # noqa: E402
from tests.models.addon_helpers import (  # noqa: E402
    FAR,
    assert_matches,
    max_diff,
    report,
    unet_out,
)

# The tiny models gain nothing from intra-op threads (see the one_thread fixture).
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def hypernetwork_path(folder):
    return synthetic.write_hypernetwork(folder / "tiny-hn.pt", seed=0)


def _hand_mlp(state, x, activation=None, norm=None):
    """AUTOMATIC1111's MLP from the file's tensors: linear.0, [activation], [layer norm at linear.1], last linear."""
    h = x @ state["linear.0.weight"].T + state["linear.0.bias"]
    if activation is not None:
        h = activation(h)
    if norm is not None:
        h = torch.nn.functional.layer_norm(h, h.shape[-1:], state[f"linear.{norm}.weight"],
                                           state[f"linear.{norm}.bias"])
    last = max(int(k.split(".")[1]) for k in state if k.endswith(".weight"))
    return h @ state[f"linear.{last}.weight"].T + state[f"linear.{last}.bias"]


def test_read_hypernetwork_builds_the_files_mlps(hypernetwork_path, folder):
    raw = torch.load(hypernetwork_path, weights_only=True)
    hypernetwork = read_hypernetwork(hypernetwork_path)
    assert set(hypernetwork.modules) == set(synthetic.HYPERNETWORK_WIDTHS)
    x = torch.randn(2, 5, 768, generator=torch.Generator().manual_seed(7))
    for width in synthetic.HYPERNETWORK_WIDTHS:
        xw = x[..., :width] if width <= 768 else x.repeat(1, 1, 2)[..., :width]
        for module, state in zip(hypernetwork.modules[width], raw[width], strict=True):
            with torch.no_grad():
                report(f"hypernetwork MLP {width} vs hand", max_diff(module(xw), _hand_mlp(state, xw)))
                assert max_diff(module(xw), _hand_mlp(state, xw)) <= 1e-6
    k, v = hypernetwork.modules[768]
    with torch.no_grad():
        assert max_diff(k(x), v(x)) > FAR * 1e-6  # the key and value networks are different ones

    # ReLU between the layers and a layer norm after it (AUTOMATIC1111's layout: Linear, ReLU, LayerNorm, Linear).
    gen = torch.Generator().manual_seed(3)
    state = {"linear.0.weight": torch.randn(1536, 768, generator=gen) * 0.02,
             "linear.0.bias": torch.randn(1536, generator=gen) * 0.1,
             "linear.2.weight": 1 + torch.randn(1536, generator=gen) * 0.1,
             "linear.2.bias": torch.randn(1536, generator=gen) * 0.1,
             "linear.3.weight": torch.randn(768, 1536, generator=gen) * 0.02,
             "linear.3.bias": torch.randn(768, generator=gen) * 0.1}
    data = synthetic.hypernetwork_data(widths=(768,))
    data.update({768: [state, state], "activation_func": "relu", "is_layer_norm": True})
    torch.save(data, folder / "relu-norm-hn.pt")
    module = read_hypernetwork(folder / "relu-norm-hn.pt").modules[768][0]
    with torch.no_grad():
        ours, hand = module(x), _hand_mlp(state, x, torch.relu, norm=2)
        no_relu = _hand_mlp(state, x, None, norm=2)
    report("hypernetwork ReLU + layer norm MLP vs hand", max_diff(ours, hand))
    assert max_diff(ours, hand) <= 1e-5
    assert max_diff(ours, no_relu) > FAR * 1e-5


def _cross_attentions(unet):
    return [m for name, m in unet.named_modules() if name.endswith("attn2")]


def _folded(linear, state, strength):
    """A linear layer equal to ``linear(c + mlp(c) * strength)`` for a linear-activation MLP: the file's tensors
    folded into one weight and bias (computed in float64)."""
    w0, b0 = state["linear.0.weight"].double(), state["linear.0.bias"].double()
    w1, b1 = state["linear.1.weight"].double(), state["linear.1.bias"].double()
    weight = linear.weight.double()
    eye = torch.eye(w0.shape[1], dtype=torch.float64)
    folded = torch.nn.Linear(linear.in_features, linear.out_features, bias=True)
    folded.weight.data = (weight @ (eye + strength * w1 @ w0)).float()
    folded.bias.data = (strength * weight @ (w1 @ b0 + b1)).float()
    return folded.requires_grad_(False)


def test_hypernetwork_transforms_key_and_value_inputs(sd1_path, hypernetwork_path, inputs):
    raw = torch.load(hypernetwork_path, weights_only=True)
    hypernetwork = read_hypernetwork(hypernetwork_path)
    ck = load_checkpoint(sd1_path)
    base = unet_out(ck.unet, inputs)
    attention = _cross_attentions(ck.unet)[0]
    to_k, to_v = attention.to_k, attention.to_v
    self_attention = next(m for name, m in ck.unet.named_modules() if name.endswith("attn1"))
    self_k = self_attention.to_k
    context = inputs["context"]

    def by_hand(linear, state, strength):
        with torch.no_grad():
            return linear(context + _hand_mlp(state, context) * strength)

    with applied_hypernetworks(ck.unet, [(hypernetwork, 0.8)]):
        with torch.no_grad():
            keys, values = attention.to_k(context), attention.to_v(context)
        assert self_attention.to_k is self_k  # width 32: the file has no network for it
        ours = unet_out(ck.unet, inputs)
    assert_matches("hypernetwork key projection", keys, by_hand(to_k, raw[768][0], 0.8),
                   by_hand(to_k, raw[768][0], 0.4))
    assert_matches("hypernetwork value projection", values, by_hand(to_v, raw[768][1], 0.8),
                   by_hand(to_v, raw[768][1], 0.4))

    # The whole UNet against an independent copy whose projections have the networks folded into their weights.
    reference = load_checkpoint(sd1_path).unet
    for attn in _cross_attentions(reference):
        attn.to_k, attn.to_v = _folded(attn.to_k, raw[768][0], 0.8), _folded(attn.to_v, raw[768][1], 0.8)
    report("hypernetwork UNet vs no hypernetwork", max_diff(ours, base))
    assert_matches("hypernetwork UNet vs folded weights", ours, unet_out(reference, inputs), base)

    assert attention.to_k is to_k and attention.to_v is to_v
    assert torch.equal(unet_out(ck.unet, inputs), base)
    with applied_hypernetworks(ck.unet, [(hypernetwork, 0.0)]):
        zero = unet_out(ck.unet, inputs)
    report("hypernetwork strength 0 vs base", max_diff(zero, base))
    assert torch.equal(zero, base)


def test_hypernetwork_keeps_its_weights_on_a_half_precision_model(hypernetwork_path):
    hypernetwork = read_hypernetwork(hypernetwork_path)
    before = {w: [p.detach().clone() for m in pair for p in m.parameters()] for w, pair in hypernetwork.modules.items()}
    attention = diffusers.models.attention_processor.Attention(32, cross_attention_dim=768, heads=2, dim_head=16)
    model = torch.nn.ModuleList([attention]).to(torch.bfloat16)
    context = torch.randn(1, 7, 768).to(torch.bfloat16)
    hidden = torch.randn(1, 5, 32).to(torch.bfloat16)
    with torch.no_grad():
        base = attention(hidden, context)
        with applied_hypernetworks(model, [(hypernetwork, 1.0)]):
            changed = attention(hidden, context)
    assert changed.dtype == torch.bfloat16 and not torch.equal(changed, base)
    for width, pair in hypernetwork.modules.items():
        params = [p for m in pair for p in m.parameters()]
        assert all(p.dtype == torch.float32 for p in params)
        assert all(torch.equal(p, q) for p, q in zip(params, before[width], strict=True))


def test_hypernetwork_without_matching_widths_is_refused(sd1_path, folder, inputs):
    path = synthetic.write_hypernetwork(folder / "sdxl-widths-hn.pt", widths=(320, 640, 1280))
    ck = load_checkpoint(sd1_path)
    originals = [(a.to_k, a.to_v) for a in _cross_attentions(ck.unet)]
    with pytest.raises(IncompatibleModelError, match=r"sdxl-widths-hn\.pt.*match"), \
            applied_hypernetworks(ck.unet, [(read_hypernetwork(path), 0.8)]):
        pass
    assert [(a.to_k, a.to_v) for a in _cross_attentions(ck.unet)] == originals
