"""LoRAs (kohya, LoCon, diffusers/PEFT; SD 1.x and SDXL) on real (tiny) models, checked against diffusers' own
adapters on the same files: equal where they must be, far apart where a strength changes, no trace left after
unloading, and clear refusals for another family and a file matching nothing. LyCORIS files are merged instead
(tests/models/test_lycoris.py checks the merges against lycoris-lora)."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file, save_file

from nodegraph.models.offline import ensure_offline

ensure_offline()

from peft.tuners.tuners_utils import BaseTunerLayer  # noqa: E402

from nodegraph.models.errors import IncompatibleModelError, ModelError  # noqa: E402
from nodegraph.models.loader import load_checkpoint  # noqa: E402
from nodegraph.models.lora import LoraSpec, applied_loras, unload_loras  # noqa: E402
from tests.models.addon_helpers import (  # noqa: E402
    all_text_outs,
    assert_matches,
    assert_same_state,
    has_peft_layers,
    independent_pipeline,
    max_diff,
    pipeline_text_outs,
    report,
    state_copy,
    text_out,
    unet_out,
)

# The tiny models gain nothing from intra-op threads (see the one_thread fixture).
pytestmark = pytest.mark.usefixtures("one_thread")


def test_kohya_lora_matches_diffusers_and_leaves_no_trace(sd1_path, loras, inputs):
    path = loras["sd1", "kohya", 0]
    ck = load_checkpoint(sd1_path)
    te, tok = ck.text_encoders["text_encoder"], ck.tokenizers["tokenizer"]
    unet_state, te_state = state_copy(ck.unet), state_copy(te)
    base_unet, base_text = unet_out(ck.unet, inputs), text_out(tok, te)

    with applied_loras([LoraSpec(path, 0.7, 0.3)], ck.family, ck.unet, ck.text_encoders):
        ours_unet, ours_text = unet_out(ck.unet, inputs), text_out(tok, te)

    pipe = independent_pipeline(sd1_path)
    pipe.load_lora_weights(str(path), adapter_name="x")
    pipe.set_adapters(["x"], adapter_weights=[{"unet": 0.5, "text_encoder": 0.6}])
    other_unet, other_text = unet_out(pipe.unet, inputs), text_out(pipe.tokenizer, pipe.text_encoder)
    pipe.set_adapters(["x"], adapter_weights=[{"unet": 0.7, "text_encoder": 0.3}])
    ref_unet, ref_text = unet_out(pipe.unet, inputs), text_out(pipe.tokenizer, pipe.text_encoder)

    assert_matches("kohya LoRA, UNet", ours_unet, ref_unet, other_unet)
    assert_matches("kohya LoRA, text encoder", ours_text, ref_text, other_text)
    report("kohya LoRA, UNet vs no LoRA", max_diff(ours_unet, base_unet))

    # After the block: the base outputs, bit for bit (the adapters stay loaded, disabled).
    assert has_peft_layers(ck.unet)
    assert torch.equal(unet_out(ck.unet, inputs), base_unet)
    assert torch.equal(text_out(tok, te), base_text)

    unload_loras(ck.unet, ck.text_encoders)
    assert not has_peft_layers(ck.unet) and not has_peft_layers(te)
    assert_same_state(ck.unet, unet_state, "UNet after unload_loras")
    assert_same_state(te, te_state, "text encoder after unload_loras")
    assert torch.equal(unet_out(ck.unet, inputs), base_unet)

    # Loading again after an unload works and gives the same result.
    with applied_loras([LoraSpec(path, 0.7, 0.3)], ck.family, ck.unet, ck.text_encoders):
        assert torch.equal(unet_out(ck.unet, inputs), ours_unet)


def test_strength_zero_equals_no_lora_and_strengths_of_one_file_add(sd1_path, loras, inputs):
    path = loras["sd1", "kohya", 0]
    ck = load_checkpoint(sd1_path)
    te, tok = ck.text_encoders["text_encoder"], ck.tokenizers["tokenizer"]
    base_unet, base_text = unet_out(ck.unet, inputs), text_out(tok, te)
    with applied_loras([LoraSpec(path, 0.0, 0.0)], ck.family, ck.unet, ck.text_encoders):
        zero_unet, zero_text = unet_out(ck.unet, inputs), text_out(tok, te)
    with applied_loras([LoraSpec(path, 0.7, 0.3)], ck.family, ck.unet, ck.text_encoders):
        once = unet_out(ck.unet, inputs)
    with applied_loras([LoraSpec(path, 0.3, 0.1), LoraSpec(path, 0.4, 0.2)], ck.family, ck.unet, ck.text_encoders):
        twice = unet_out(ck.unet, inputs)
    report("strength 0 vs no LoRA, UNet", max_diff(zero_unet, base_unet))
    report("strength 0 vs no LoRA, text encoder", max_diff(zero_text, base_text))
    assert torch.equal(zero_unet, base_unet)
    assert torch.equal(zero_text, base_text)
    assert_matches("same LoRA twice (0.3 + 0.4) vs once at 0.7", twice, once, base_unet)


def test_two_loras_stack_like_diffusers_adapters(sd1_path, loras, inputs):
    first, second = loras["sd1", "kohya", 0], loras["sd1", "locon", 1]
    ck = load_checkpoint(sd1_path)
    te, tok = ck.text_encoders["text_encoder"], ck.tokenizers["tokenizer"]
    stack = [LoraSpec(first, 0.7, 0.3), LoraSpec(second, 0.5, 0.6)]
    with applied_loras(stack, ck.family, ck.unet, ck.text_encoders):
        ours_unet, ours_text = unet_out(ck.unet, inputs), text_out(tok, te)
    with applied_loras(stack[:1], ck.family, ck.unet, ck.text_encoders):  # both loaded, only one active
        only_first = unet_out(ck.unet, inputs)

    pipe = independent_pipeline(sd1_path)
    pipe.load_lora_weights(str(first), adapter_name="a")
    pipe.load_lora_weights(str(second), adapter_name="b")
    pipe.set_adapters(["a", "b"], adapter_weights=[{"unet": 0.7, "text_encoder": 0.3},
                                                   {"unet": 0.5, "text_encoder": 0.6}])
    ref_unet, ref_text = unet_out(pipe.unet, inputs), text_out(pipe.tokenizer, pipe.text_encoder)
    pipe.set_adapters(["a", "b"], adapter_weights=[{"unet": 0.7, "text_encoder": 0.3},
                                                   {"unet": 0.2, "text_encoder": 0.1}])
    other_unet, other_text = unet_out(pipe.unet, inputs), text_out(pipe.tokenizer, pipe.text_encoder)
    pipe.set_adapters(["a"], adapter_weights=[{"unet": 0.7, "text_encoder": 0.3}])
    ref_first = unet_out(pipe.unet, inputs)

    assert_matches("two LoRAs, UNet", ours_unet, ref_unet, other_unet)
    assert_matches("two LoRAs, text encoder", ours_text, ref_text, other_text)
    assert_matches("two loaded, first active, UNet", only_first, ref_first, ref_unet)


@pytest.mark.parametrize("fmt", ["locon", "peft"])
def test_locon_and_peft_files_apply_like_diffusers(sd1_path, loras, inputs, fmt):
    path = loras["sd1", fmt, 0]
    ck = load_checkpoint(sd1_path)
    te, tok = ck.text_encoders["text_encoder"], ck.tokenizers["tokenizer"]
    with applied_loras([LoraSpec(path, 0.8, 0.9)], ck.family, ck.unet, ck.text_encoders):
        ours_unet, ours_text = unet_out(ck.unet, inputs), text_out(tok, te)
    pipe = independent_pipeline(sd1_path)
    pipe.load_lora_weights(str(path), adapter_name="x")
    pipe.set_adapters(["x"], adapter_weights=[{"unet": 0.8, "text_encoder": 0.9}])
    ref_unet, ref_text = unet_out(pipe.unet, inputs), text_out(pipe.tokenizer, pipe.text_encoder)
    pipe.set_adapters(["x"], adapter_weights=[{"unet": 0.4, "text_encoder": 0.3}])
    other_unet, other_text = unet_out(pipe.unet, inputs), text_out(pipe.tokenizer, pipe.text_encoder)
    assert_matches(f"{fmt} LoRA, UNet", ours_unet, ref_unet, other_unet)
    assert_matches(f"{fmt} LoRA, text encoder", ours_text, ref_text, other_text)
    if fmt == "locon":  # the 3x3 resnet convs are patched too
        assert any(isinstance(m, BaseTunerLayer) and isinstance(m.get_base_layer(), torch.nn.Conv2d)
                   and m.get_base_layer().kernel_size == (3, 3) for m in ck.unet.modules())


def test_sdxl_lora_matches_diffusers(sdxl_path, loras, inputs):
    path = loras["sdxl-base", "kohya", 0]
    ck = load_checkpoint(sdxl_path)
    base_unet = unet_out(ck.unet, inputs)
    base_text = all_text_outs(ck)
    with applied_loras([LoraSpec(path, 0.7, 0.3)], ck.family, ck.unet, ck.text_encoders):
        ours_unet, ours_text = unet_out(ck.unet, inputs), all_text_outs(ck)
    pipe = independent_pipeline(sdxl_path)
    pipe.load_lora_weights(str(path), adapter_name="x")
    pipe.set_adapters(["x"], adapter_weights=[{"unet": 0.3, "text_encoder": 0.8, "text_encoder_2": 0.8}])
    other_unet, other_text = unet_out(pipe.unet, inputs), pipeline_text_outs(pipe)
    pipe.set_adapters(["x"], adapter_weights=[{"unet": 0.7, "text_encoder": 0.3, "text_encoder_2": 0.3}])
    ref_unet, ref_text = unet_out(pipe.unet, inputs), pipeline_text_outs(pipe)
    assert set(ours_text) == set(ref_text) == {"text_encoder", "text_encoder_2"}
    assert_matches("SDXL LoRA, UNet", ours_unet, ref_unet, other_unet)
    for name in ours_text:
        assert_matches(f"SDXL LoRA, {name}", ours_text[name], ref_text[name], other_text[name])
    assert torch.equal(unet_out(ck.unet, inputs), base_unet)
    after = all_text_outs(ck)
    assert all(torch.equal(after[name], base_text[name]) for name in base_text)


def test_lora_for_the_other_family_is_refused_clearly(sd1_path, sdxl_path, loras):
    sd1, sdxl = load_checkpoint(sd1_path), load_checkpoint(sdxl_path)
    with pytest.raises(IncompatibleModelError, match=r"SDXL.*SD 1\.x"), \
            applied_loras([LoraSpec(loras["sdxl-base", "kohya", 0])], sd1.family, sd1.unet, sd1.text_encoders):
        pass
    for fmt in ("kohya", "peft"):
        with pytest.raises(IncompatibleModelError, match=r"SD1.*SDXL base"), \
                applied_loras([LoraSpec(loras["sd1", fmt, 0])], sdxl.family, sdxl.unet, sdxl.text_encoders):
            pass
    for ck in (sd1, sdxl):
        assert not has_peft_layers(ck.unet)
        assert not any(has_peft_layers(te) for te in ck.text_encoders.values())


def _kohya_file(path, modules, seed=0):
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for name, (out_dim, in_dim) in modules.items():
        state[f"{name}.lora_down.weight"] = torch.randn(4, in_dim, generator=gen)
        state[f"{name}.lora_up.weight"] = torch.randn(out_dim, 4, generator=gen)
        state[f"{name}.alpha"] = torch.tensor(2.0)
    save_file(state, str(path))
    return path


def test_lora_matching_nothing_is_an_error_and_leaves_nothing_behind(sd1_path, loras, folder, inputs):
    ck = load_checkpoint(sd1_path)
    base = unet_out(ck.unet, inputs)
    bogus = _kohya_file(folder / "bogus.safetensors", {
        "lora_unet_down_blocks_7_attentions_0_proj_in": (32, 32),
        "lora_te_text_model_encoder_layers_40_self_attn_q_proj": (768, 768)})
    # Real UNet layers, plus text-encoder layers the model does not have (a LoRA for a deeper encoder).
    mixed = folder / "mixed.safetensors"
    state = {k: v for k, v in load_file(str(loras["sd1", "kohya", 0])).items() if k.startswith("lora_unet_")}
    state.update(load_file(str(_kohya_file(folder / "te-only.safetensors", {
        "lora_te_text_model_encoder_layers_40_self_attn_q_proj": (768, 768)}))))
    save_file(state, str(mixed))
    for path in (bogus, mixed):
        for _attempt in range(2):  # a failed load must not leave a half-loaded adapter that a retry would use
            with pytest.raises(ModelError, match=path.name), \
                    applied_loras([LoraSpec(path)], ck.family, ck.unet, ck.text_encoders):
                pass
            assert not has_peft_layers(ck.unet)
            assert not getattr(ck.unet, "peft_config", None)
            assert not has_peft_layers(ck.text_encoders["text_encoder"])
    assert torch.equal(unet_out(ck.unet, inputs), base)


@pytest.mark.parametrize("fmt", ["loha", "lokr"])
def test_lycoris_files_apply_by_merging_and_leave_no_trace(sd1_path, loras, inputs, fmt):
    ck = load_checkpoint(sd1_path)
    base = unet_out(ck.unet, inputs)
    messages = []
    with applied_loras([LoraSpec(loras["sd1", fmt, 0], node_id="9")], ck.family, ck.unet, ck.text_encoders,
                       parts=("unet",), report=lambda *m: messages.append(m)):
        patched = unet_out(ck.unet, inputs)
    assert max_diff(patched, base) > 1e-3
    assert not has_peft_layers(ck.unet)  # merged for the block, not a peft adapter
    assert torch.equal(unet_out(ck.unet, inputs), base)
    [(node, level, text)] = messages
    matched, total = text.split("UNet ")[1].split(" layers")[0].split("/")
    assert (node, level) == ("9", "info") and matched == total


