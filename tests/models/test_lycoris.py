"""LyCORIS merges (LoHa, LoKr in both layouts, LoCon with DoRA, full, IA3, norm) against lycoris-lora's own modules,
the real LoKr file of the shared corpus, and application to a real (tiny) model: stackable with ordinary LoRAs,
strength 0 is the base model, nothing left behind, and how many layers matched is reported."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from nodegraph.models.offline import ensure_offline

ensure_offline()

from nodegraph.models.errors import IncompatibleModelError  # noqa: E402
from nodegraph.models.identify import identify  # noqa: E402
from nodegraph.models.loader import load_checkpoint  # noqa: E402
from nodegraph.models.lora import LoraSpec, applied_loras  # noqa: E402
from nodegraph.models.lycoris import layer_index, merged_weight, parse_modules  # noqa: E402
from tests.models.addon_helpers import max_diff, report, state_copy, text_out, unet_out  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")
lycoris_modules = pytest.importorskip("lycoris.modules", reason="lycoris-lora (the reference) is a test dependency")
from lycoris.functional.lokr import kron_weight  # noqa: E402

#: A real LoKr file (Apache-2.0, from the LyCORIS repository; see tests/data/addons/README.md).
CORPUS_LOKR = Path(__file__).resolve().parents[1] / "data" / "addons" / "smart_falcon_4_lokr.safetensors"
REFERENCE_TOLERANCE = 1e-6


@pytest.fixture(autouse=True)
def _no_grad():
    """lycoris copies file tensors into its parameters in place, which autograd forbids outside no_grad."""
    with torch.no_grad():
        yield


def _randomised(module: torch.nn.Module, seed: int) -> torch.nn.Module:
    """lycoris initialises some factors to zero (an untrained layer changes nothing): give every one a value."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in module.named_parameters():
            if not name.startswith("org_"):
                param.copy_(torch.randn(param.shape, generator=gen) * 0.2)
    return module


def _file_state(module: torch.nn.Module, name: str) -> dict[str, torch.Tensor]:
    """The module's tensors as its file stores them (`lora_unet_x.hada_w1_a`, …)."""
    state = module.custom_state_dict() if type(module).__name__ != "IA3Module" else None
    if state is None:
        state = {k: v for k, v in module.state_dict().items() if not k.startswith("org_")}
    return {f"{name}.{key}": value.detach().clone() for key, value in state.items()}


def _reference_merge(reference, layer: torch.nn.Module, strength: float) -> torch.Tensor:
    """lycoris's merged weight as its forward pass computes it (the weight a file was trained with).

    For LoHa and LoKr, lycoris-lora 4.1's ``get_merged_weight`` scales ΔW by alpha/rank twice (``get_weight``
    already applies it, ``get_diff_weight`` multiplies again) while its ``forward`` — training — applies it once, as
    ComfyUI and AUTOMATIC1111 do; so the reference for those is ``forward``'s own formula, from its own functions.
    """
    if type(reference).__name__ in ("LohaModule", "LokrModule"):
        diff = reference.get_weight(layer.weight.shape) * reference.scalar
        if reference.wd:
            return reference.apply_weight_decompose(layer.weight + diff, strength)
        return layer.weight + diff * strength
    return reference.get_merged_weight(multiplier=strength, shape=layer.weight.shape)[0]


def _layer(kind: str, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Linear(64, 48) if kind == "linear" else torch.nn.Conv2d(16, 32, 3)


#: (id, layer kind, lycoris class name, constructor arguments)
CASES = [
    ("loha", "linear", "LohaModule", {"lora_dim": 4, "alpha": 2.0}),
    ("loha-conv", "conv", "LohaModule", {"lora_dim": 4, "alpha": 3.0}),
    ("loha-tucker", "conv", "LohaModule", {"lora_dim": 4, "alpha": 2.0, "use_tucker": True}),
    ("loha-dora", "linear", "LohaModule", {"lora_dim": 4, "alpha": 2.0, "weight_decompose": True}),
    ("lokr-w1-full", "linear", "LokrModule", {"lora_dim": 2, "alpha": 1.0, "factor": 4}),
    ("lokr-both-factored", "linear", "LokrModule", {"lora_dim": 2, "alpha": 4.0, "factor": 8,
                                                    "decompose_both": True}),
    ("lokr-full-matrix", "linear", "LokrModule", {"lora_dim": 4, "alpha": 2.0, "full_matrix": True}),
    ("lokr-conv", "conv", "LokrModule", {"lora_dim": 2, "alpha": 1.0, "factor": 4}),
    ("lokr-tucker", "conv", "LokrModule", {"lora_dim": 2, "alpha": 1.0, "factor": 4, "use_tucker": True}),
    ("lokr-dora", "linear", "LokrModule", {"lora_dim": 2, "alpha": 1.0, "factor": 4, "weight_decompose": True}),
    ("locon", "conv", "LoConModule", {"lora_dim": 4, "alpha": 2.0}),
    ("locon-tucker", "conv", "LoConModule", {"lora_dim": 4, "alpha": 2.0, "use_tucker": True}),
    ("dora-out", "conv", "LoConModule", {"lora_dim": 4, "alpha": 2.0, "weight_decompose": True}),
    ("dora-in", "linear", "LoConModule", {"lora_dim": 4, "alpha": 2.0, "weight_decompose": True,
                                          "wd_on_out": False}),
    ("full", "linear", "FullModule", {}),
    ("ia3-out", "linear", "IA3Module", {}),
    ("ia3-in", "linear", "IA3Module", {"train_on_input": True}),
]


@pytest.mark.parametrize(("case", "kind", "class_name", "kwargs"), CASES, ids=[c[0] for c in CASES])
def test_merge_equals_lycoris(case, kind, class_name, kwargs):
    cls = getattr(lycoris_modules, class_name)
    layer = _layer(kind, 1)
    made = _randomised(cls("lora_unet_x", layer, 1.0, **kwargs), 2)
    state = _file_state(made, "lora_unet_x")
    # The reference is the module that made the file (lycoris's own loader, make_module_from_state_dict, cannot
    # read back its Tucker LoKr, input-side DoRA or IA3 files), or for full its loader (a made FullModule holds the
    # absolute weight, the file the difference).
    reference = made if class_name != "FullModule" else cls.make_module_from_state_dict(
        "lora_unet_x", layer, state["lora_unet_x.diff"], state["lora_unet_x.diff_b"])
    modules, stray = parse_modules(state)
    assert not stray and list(modules) == ["lora_unet_x"]
    for strength in (1.0, 0.6) if "dora" not in case else (1.0,):
        expected = _reference_merge(reference, layer, strength)
        ours, _ = merged_weight(modules["lora_unet_x"], layer.weight.detach(), None, strength)
        diff = report(f"{case} at {strength}", max_diff(ours, expected))
        assert diff <= REFERENCE_TOLERANCE
        assert max_diff(ours, layer.weight) > 1e-3  # the file changes the layer
    zero, _ = merged_weight(modules["lora_unet_x"], layer.weight.detach(), None, 0.0)
    assert torch.equal(zero, layer.weight.detach())


def test_full_bias_and_norm_layers():
    layer = _layer("linear", 3)
    made = _randomised(lycoris_modules.FullModule("lora_unet_x", layer, 1.0), 4)
    state = _file_state(made, "lora_unet_x")
    reference = lycoris_modules.FullModule.make_module_from_state_dict(
        "lora_unet_x", layer, state["lora_unet_x.diff"], state["lora_unet_x.diff_b"])
    weight, bias = reference.get_merged_weight(multiplier=0.5)
    modules, _ = parse_modules(state)
    ours_w, ours_b = merged_weight(modules["lora_unet_x"], layer.weight.detach(), layer.bias.detach(), 0.5)
    assert max_diff(ours_w, weight) <= REFERENCE_TOLERANCE
    # lycoris's make_weight: org bias + diff_b (scaled as the weight)
    assert max_diff(ours_b, layer.bias + 0.5 * state["lora_unet_x.diff_b"]) <= REFERENCE_TOLERANCE
    norm = torch.nn.GroupNorm(4, 32)
    modules, _ = parse_modules({"lora_unet_n.w_norm": torch.ones(32), "lora_unet_n.b_norm": torch.full((32,), 2.0)})
    w, b = merged_weight(modules["lora_unet_n"], norm.weight.detach(), norm.bias.detach(), 0.5)
    assert torch.equal(w, torch.full((32,), 1.5)) and torch.equal(b, torch.full((32,), 1.0))


def test_dora_strength_interpolates_to_the_base():
    """DoRA at strength s is W + s·(W_dora − W) (ComfyUI's and AUTOMATIC1111's rule): 0 is the base, 1 lycoris."""
    layer = _layer("linear", 5)
    made = _randomised(lycoris_modules.LoConModule("lora_unet_x", layer, 1.0, lora_dim=4, alpha=2.0,
                                                   weight_decompose=True), 6)
    modules, _ = parse_modules(_file_state(made, "lora_unet_x"))
    full, _ = merged_weight(modules["lora_unet_x"], layer.weight.detach(), None, 1.0)
    half, _ = merged_weight(modules["lora_unet_x"], layer.weight.detach(), None, 0.5)
    assert max_diff(half, (layer.weight + full) / 2) <= REFERENCE_TOLERANCE


def test_real_lokr_file_equals_lycoris_on_every_layer():
    """The real early-2023 LoKr file (lokr_w1_a/w1_b/w2_a/w2_b): all 350 layers parse, and each merge equals
    lycoris's on a layer of the shape the factors imply."""
    state = load_file(CORPUS_LOKR)
    modules, stray = parse_modules(state)
    assert not stray and len(modules) == 350 and {m.algorithm for m in modules.values()} == {"lokr"}
    info = identify(CORPUS_LOKR)
    assert (info.kind, info.family, info.variant, info.format) == ("lora", "sd1", "lokr", "lycoris")
    worst = 0.0
    gen = torch.Generator().manual_seed(0)
    for module in modules.values():
        t = module.tensors
        out = t["lokr_w1_a"].shape[0] * t["lokr_w2_a"].shape[0]
        inner = t["lokr_w1_b"].shape[1] * t["lokr_w2_b"].shape[1]
        layer = torch.nn.Linear(inner, out, bias=False)
        with torch.no_grad():
            layer.weight.copy_(torch.randn(out, inner, generator=gen) * 0.05)
        rank = t["lokr_w1_a"].shape[1]
        scale = float(t["alpha"]) / rank
        # lycoris's own kron rebuild (its loader mis-reads some of this file's factor shapes).
        factors = [t[key].float() for key in ("lokr_w1_a", "lokr_w1_b", "lokr_w2_a", "lokr_w2_b")]  # file: fp16
        diff = kron_weight(None, *factors[:2], None, *factors[2:], None, scale=scale, backend="torch")
        expected = layer.weight + diff.reshape(layer.weight.shape)
        ours, _ = merged_weight(module, layer.weight.detach(), None, 1.0)
        worst = max(worst, max_diff(ours, expected))
    report("real LoKr, 350 layers, worst", worst)
    assert worst <= REFERENCE_TOLERANCE


def _lycoris_file(path: Path, ck, cls_name: str, kwargs: dict, *, unet_layers: int, text_layers: int,
                  seed: int = 0) -> Path:
    """A LyCORIS file for the tiny model written by lycoris's own modules: the first `unet_layers` UNet layers and
    `text_layers` text-encoder layers that are linear or 3×3 convs."""
    cls = getattr(lycoris_modules, cls_name)
    index = layer_index(ck.family.base, ck.unet, ck.text_encoders)
    state: dict[str, torch.Tensor] = {}
    counts = {"lora_unet_": unet_layers, "lora_te_": text_layers}
    for name, layer in index.items():
        # the names kohya writes (the index also knows diffusers' lycoris_ and transformers 5's text_model-less ones)
        prefix = ("lora_te_" if name.startswith("lora_te_text_model_") else
                  "lora_unet_" if name.startswith("lora_unet_") else None)
        if prefix is None or counts[prefix] == 0 or not isinstance(layer, torch.nn.Linear | torch.nn.Conv2d):
            continue
        counts[prefix] -= 1
        made = _randomised(cls(name, layer, 1.0, **kwargs), seed + len(state))
        state.update(_file_state(made, name))
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    return path


@pytest.fixture(scope="module")
def tiny(sd1_path):
    return load_checkpoint(sd1_path)


def test_loha_applies_to_unet_and_text_encoder_and_leaves_no_trace(tiny, inputs, tmp_path, loras):
    ck = tiny
    te, tok = ck.text_encoders["text_encoder"], ck.tokenizers["tokenizer"]
    path = _lycoris_file(tmp_path / "style-loha.safetensors", ck, "LohaModule", {"lora_dim": 4, "alpha": 2.0},
                         unet_layers=40, text_layers=20)
    info = identify(path)
    assert (info.kind, info.family, info.variant, info.format) == ("lora", "sd1", "loha", "lycoris")
    before_unet, before_text = state_copy(ck.unet), state_copy(te)
    base_unet, base_text = unet_out(ck.unet, inputs), text_out(tok, te)
    messages = []
    with applied_loras([LoraSpec(path, 1.0, 1.0, node_id="7")], ck.family, ck.unet, ck.text_encoders,
                       report=lambda *m: messages.append(m)):
        one_unet, one_text = unet_out(ck.unet, inputs), text_out(tok, te)
    with applied_loras([LoraSpec(path, 0.0, 0.0)], ck.family, ck.unet, ck.text_encoders):
        zero_unet, zero_text = unet_out(ck.unet, inputs), text_out(tok, te)
    assert report("LoHa UNet vs base", max_diff(one_unet, base_unet)) > 1e-3
    assert report("LoHa text vs base", max_diff(one_text, base_text)) > 1e-3
    assert torch.equal(zero_unet, base_unet) and torch.equal(zero_text, base_text)
    assert torch.equal(unet_out(ck.unet, inputs), base_unet)
    after_unet, after_text = state_copy(ck.unet), state_copy(te)
    assert all(torch.equal(before_unet[k], after_unet[k]) for k in before_unet)
    assert all(torch.equal(before_text[k], after_text[k]) for k in before_text)
    written = {k.split(".")[0] for k in load_file(path)}
    text_layers = sum(1 for name in written if name.startswith("lora_te_"))
    assert text_layers > 0 and len(written) - text_layers == 40
    assert messages == [("7", "info", "style-loha.safetensors: UNet 40/40 layers matched"),
                        ("7", "info", f"style-loha.safetensors: text encoder {text_layers}/{text_layers} layers "
                                      "matched")]

    # Stacked with an ordinary (peft) LoRA: both act, and the LoRA's own outputs come back after.
    lora = loras["sd1", "kohya", 0]
    with applied_loras([LoraSpec(lora, 1.0, 1.0)], ck.family, ck.unet, ck.text_encoders):
        lora_only = unet_out(ck.unet, inputs)
    with applied_loras([LoraSpec(lora, 1.0, 1.0), LoraSpec(path, 1.0, 1.0)], ck.family, ck.unet, ck.text_encoders):
        both = unet_out(ck.unet, inputs)
    assert max_diff(both, lora_only) > 1e-3 and max_diff(both, one_unet) > 1e-3
    assert torch.equal(unet_out(ck.unet, inputs), base_unet)


def test_partly_matching_file_warns_naming_the_groups(tiny, tmp_path):
    ck = tiny
    path = _lycoris_file(tmp_path / "part.safetensors", ck, "LokrModule", {"lora_dim": 2, "alpha": 1.0, "factor": 4},
                         unet_layers=10, text_layers=0)
    state = load_file(path)
    first = sorted({k.split(".")[0] for k in state})[0]
    state.update({k.replace(first, "lora_unet_up_blocks_9_attentions_0_proj_in"): v.clone()
                  for k, v in state.items() if k.startswith(first + ".")})
    save_file(state, str(path))
    messages = []
    with applied_loras([LoraSpec(path, 1.0, 0.0, node_id="3")], ck.family, ck.unet, ck.text_encoders,
                       parts=("unet",), report=lambda *m: messages.append(m)):
        pass
    assert messages == [("3", "warning", "part.safetensors: UNet 10/11 layers matched; not matched: "
                                         "UNet up_blocks_9 (1)")]


def test_file_matching_nothing_is_refused(tiny, tmp_path):
    ck = tiny
    path = tmp_path / "nothing.safetensors"
    save_file({f"lora_unet_nowhere_to_k.{key}": torch.ones(4, 2) if key.endswith("a") else torch.ones(2, 4)
               for key in ("hada_w1_a", "hada_w1_b", "hada_w2_a", "hada_w2_b")}, str(path))
    with pytest.raises(IncompatibleModelError, match="none of its 1 layers matches"), \
            applied_loras([LoraSpec(path)], ck.family, ck.unet, ck.text_encoders):
        pass


@pytest.mark.parametrize(("part", "label"), [("unet", "UNet"), ("text", "text encoder")])
def test_peft_lora_reports_its_matches(tiny, loras, part, label):
    ck = tiny
    messages = []
    with applied_loras([LoraSpec(loras["sd1", "kohya", 0], 1.0, 1.0, node_id="5")], ck.family, ck.unet,
                       ck.text_encoders, parts=(part,), report=lambda *m: messages.append(m)):
        pass
    [(node, level, text)] = messages
    matched, total = text.split(f"{label} ")[1].split(" layers")[0].split("/")
    assert (node, level) == ("5", "info") and matched == total and int(total) > 0


def test_sdxl_file_with_kohya_sgm_names_applies_to_unet_and_both_text_encoders(sdxl_path, inputs, tmp_path):
    """kohya's SDXL scripts name UNet layers by the original (SGM) blocks (``lora_unet_input_blocks_4_1_…``) and the
    text encoders ``lora_te1_``/``lora_te2_``: such a LoKr file is identified as SDXL and applies everywhere."""
    ck = load_checkpoint(sdxl_path)
    index = layer_index("sdxl", ck.unet, ck.text_encoders)
    wanted = {"lora_unet_input_blocks_": 12, "lora_unet_middle_block_": 6, "lora_unet_output_blocks_": 12,
              "lora_te1_text_model_": 6, "lora_te2_text_model_": 6}
    state: dict[str, torch.Tensor] = {}
    for name, layer in index.items():
        prefix = next((p for p in wanted if name.startswith(p)), None)
        if prefix is None or wanted[prefix] == 0 or not isinstance(layer, torch.nn.Linear | torch.nn.Conv2d):
            continue
        wanted[prefix] -= 1
        made = _randomised(lycoris_modules.LokrModule(name, layer, 1.0, lora_dim=2, alpha=1.0, factor=4),
                           len(state))
        state.update(_file_state(made, name))
    assert not any(wanted.values()), wanted
    path = tmp_path / "sdxl-lokr.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    info = identify(path)
    assert (info.family, info.variant, info.format) == ("sdxl", "lokr", "lycoris")

    base = unet_out(ck.unet, inputs)
    tok, te2 = ck.tokenizers["tokenizer_2"], ck.text_encoders["text_encoder_2"]
    base_text = text_out(tok, te2)
    messages = []
    with applied_loras([LoraSpec(path, 1.0, 1.0, node_id="x")], ck.family, ck.unet, ck.text_encoders,
                       report=lambda *m: messages.append(m)):
        patched, patched_text = unet_out(ck.unet, inputs), text_out(tok, te2)
    assert max_diff(patched, base) > 1e-3 and max_diff(patched_text, base_text) > 1e-3
    assert torch.equal(unet_out(ck.unet, inputs), base)
    assert messages == [("x", "info", "sdxl-lokr.safetensors: UNet 30/30 layers matched"),
                        ("x", "info", "sdxl-lokr.safetensors: text encoder 12/12 layers matched")]


def test_incomplete_layers_are_not_applied_but_counted_as_unmatched():
    """A layer missing one of its tensors (a damaged file) is left out, never half-applied or a crash."""
    ones = torch.ones(4, 4)
    state = {"lora_unet_a.lokr_w1": ones, "lora_unet_a.lokr_w2": ones,  # complete
             "lora_unet_b.lokr_w1": ones,  # no second half
             "lora_unet_c.hada_w1_a": ones, "lora_unet_c.hada_w1_b": ones, "lora_unet_c.hada_w2_a": ones,
             "lora_unet_c.hada_w2_b": ones, "lora_unet_c.hada_t1": torch.ones(4, 4, 3, 3)}  # half a Tucker core
    modules, stray = parse_modules(state)
    assert list(modules) == ["lora_unet_a"]
    assert sorted(stray) == ["lora_unet_b.lokr_w1", *sorted(k for k in state if k.startswith("lora_unet_c."))]
    mismatched = {"lora_unet_d.lokr_w1_a": torch.ones(4, 2), "lora_unet_d.lokr_w1_b": torch.ones(3, 4),
                  "lora_unet_d.lokr_w2": ones}  # 4×2 times 3×4
    with pytest.raises(ValueError, match="do not fit together"):
        merged_weight(parse_modules(mismatched)[0]["lora_unet_d"], torch.ones(16, 16), None, 1.0)
