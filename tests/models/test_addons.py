"""LoRAs, textual-inversion embeddings and hypernetworks on real (tiny) models, checked against diffusers' own
behaviour on the same files: equal where they must be, different by far more than the tolerance where a strength,
embedding or hypernetwork changes, and no trace left after each block."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file, save_file

from nodegraph.models.offline import ensure_offline

ensure_offline()

import diffusers  # noqa: E402
from peft.tuners.tuners_utils import BaseTunerLayer  # noqa: E402

from nodegraph.models import synthetic  # noqa: E402
from nodegraph.models.embeddings import (  # noqa: E402
    expand_prompt,
    read_embedding,
    registered_embeddings,
)
from nodegraph.models.errors import IncompatibleModelError, ModelError, UnsafeModelError  # noqa: E402
from nodegraph.models.hypernetwork import applied_hypernetworks, read_hypernetwork  # noqa: E402
from nodegraph.models.loader import load_checkpoint  # noqa: E402
from nodegraph.models.lora import LoraSpec, applied_loras, unload_loras  # noqa: E402
from tests.reference import reference_pipeline  # noqa: E402

ATOL = 1e-5
#: A changed strength, embedding or hypernetwork must move outputs by at least this many tolerances.
FAR = 100
PROMPT = "a photo of mytoken riding a bicycle"


# --- files and models ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """The tiny models gain nothing from intra-op threads, and on a busy 2-core machine OpenMP's spinning threads
    make each forward pass up to 100x slower. Restored for the other test modules."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("addons")


@pytest.fixture(scope="module")
def sd1_path(folder):
    return synthetic.write_checkpoint(folder / "tiny-sd1.safetensors", "sd1", seed=0)


@pytest.fixture(scope="module")
def sdxl_path(folder):
    return synthetic.write_checkpoint(folder / "tiny-sdxl.safetensors", "sdxl-base", seed=0)


@pytest.fixture(scope="module")
def loras(folder):
    """LoRA-type files by name (written on first use)."""

    class Files(dict):
        def __missing__(self, key):
            family, fmt, seed = key
            self[key] = synthetic.write_lora(folder / f"lora-{family}-{fmt}-{seed}.safetensors", family, fmt,
                                             seed=seed)
            return self[key]

    return Files()


@pytest.fixture(scope="module")
def inputs():
    gen = torch.Generator().manual_seed(1234)
    return {"latents": torch.randn(1, 4, 8, 8, generator=gen), "timestep": torch.tensor(500),
            "context": torch.randn(1, 77, 768, generator=gen), "context_xl": torch.randn(1, 77, 2048, generator=gen),
            "text_embeds": torch.randn(1, 1280, generator=gen),
            "time_ids": torch.tensor([[64.0, 64.0, 0.0, 0.0, 64.0, 64.0]])}


def report(what, value):
    print(f"\n[max |diff|] {what}: {value:.3g}")
    return value


def max_diff(a, b):
    return (a.double() - b.double()).abs().max().item()


def assert_matches(what, ours, reference, moved):
    """`ours` equals `reference` within ATOL while `moved` (the reference at another strength, embedding, …) is far
    from it: the comparison can tell the difference it is meant to catch."""
    diff = report(what, max_diff(ours, reference))
    far = report(f"{what} (changed input)", max_diff(ours, moved))
    assert diff <= ATOL, f"{what}: differs from the reference by {diff}"
    assert far > FAR * ATOL, f"{what}: a changed input moves the output by only {far}"


def unet_out(unet, inputs):
    with torch.no_grad():
        if unet.config.addition_embed_type == "text_time":
            return unet(inputs["latents"], inputs["timestep"], inputs["context_xl"],
                        added_cond_kwargs={"text_embeds": inputs["text_embeds"],
                                           "time_ids": inputs["time_ids"]}).sample
        return unet(inputs["latents"], inputs["timestep"], inputs["context"]).sample


def text_out(tokenizer, encoder, prompt="a photo of a cat riding a bicycle"):
    """The last and penultimate hidden states (or the pooled projection and the penultimate hidden states) for the
    prompt's tokens, unpadded: the LoRA comparisons need no padding, and full-width CLIP on 77 tokens is slow."""
    ids = tokenizer(prompt, return_tensors="pt").input_ids
    with torch.no_grad():
        out = encoder(ids, output_hidden_states=True)
    return torch.cat([out[0].flatten(), out.hidden_states[-2].flatten()])


def all_text_outs(ck, prompt="a photo of a cat riding a bicycle"):
    return {name: text_out(ck.tokenizers[name.replace("text_encoder", "tokenizer")], encoder, prompt)
            for name, encoder in ck.text_encoders.items()}





def independent_pipeline(path):
    """diffusers' pipeline on a second, independent copy of the checkpoint."""
    return reference_pipeline(load_checkpoint(path))


def pipeline_text_outs(pipe):
    pairs = {"text_encoder": ("tokenizer", "text_encoder"), "text_encoder_2": ("tokenizer_2", "text_encoder_2")}
    return {name: text_out(getattr(pipe, tok), getattr(pipe, enc)) for name, (tok, enc) in pairs.items()
            if getattr(pipe, enc, None) is not None}


def state_copy(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def assert_same_state(module, original, what):
    state = module.state_dict()
    assert set(state) == set(original), f"{what}: keys differ: {sorted(set(state) ^ set(original))[:5]}"
    different = [k for k, v in original.items() if not torch.equal(state[k], v)]
    assert not different, f"{what}: {len(different)} tensors changed, e.g. {different[:3]}"


def has_peft_layers(module):
    return any(isinstance(m, BaseTunerLayer) for m in module.modules())


# --- LoRA ----------------------------------------------------------------------------------------------------------
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
def test_lycoris_files_are_refused_naming_lycoris(sd1_path, loras, fmt):
    ck = load_checkpoint(sd1_path)
    with pytest.raises(IncompatibleModelError, match=rf"LyCORIS {fmt.upper()}"), \
            applied_loras([LoraSpec(loras["sd1", fmt, 0])], ck.family, ck.unet, ck.text_encoders):
        pass
    assert not has_peft_layers(ck.unet)


# --- embeddings ----------------------------------------------------------------------------------------------------
EMBEDDING_SUFFIX = {"a1111-pt": ".pt", "safetensors": ".safetensors", "diffusers": ".safetensors",
                    "sdxl": ".safetensors"}


@pytest.fixture(scope="module")
def embeddings(folder):
    class Files(dict):
        def __missing__(self, key):
            fmt, seed = key
            family = "sdxl-base" if fmt == "sdxl" else "sd1"
            self[key] = synthetic.write_embedding(folder / f"emb-{fmt}-{seed}{EMBEDDING_SUFFIX[fmt]}", fmt,
                                                  family=family, seed=seed, vectors=2)
            return self[key]

    return Files()


@pytest.mark.parametrize("fmt", synthetic.EMBEDDING_FORMATS)
def test_read_embedding_returns_the_vectors_exactly(embeddings, fmt):
    path = embeddings[fmt, 0]
    if fmt == "a1111-pt":
        raw = torch.load(path, weights_only=True)
        expected = {"text_encoder": raw["string_to_param"]["*"]}
    else:
        raw = load_file(str(path))
        if fmt == "safetensors":
            expected = {"text_encoder": raw["emb_params"]}
        elif fmt == "diffusers":
            (vector,) = raw.values()
            expected = {"text_encoder": vector[None]}
        else:
            expected = {"text_encoder": raw["clip_l"], "text_encoder_2": raw["clip_g"]}
    embedding = read_embedding(path)
    assert set(embedding.vectors) == set(expected)
    for name, tensor in expected.items():
        assert embedding.vectors[name].shape == tensor.shape
        assert torch.equal(embedding.vectors[name], tensor), name
    assert embedding.base == ("sdxl" if fmt == "sdxl" else "sd1")


def test_pickled_embedding_goes_through_the_safe_loader(folder):
    marker = folder / "PAYLOAD_RAN"
    path = synthetic.write_malicious_pickle(folder / "evil-embedding.pt", marker)
    with pytest.raises(UnsafeModelError):
        read_embedding(path)
    assert not marker.exists()


def _sd1_encode(ck, prompt):
    tokenizer, encoder = ck.tokenizers["tokenizer"], ck.text_encoders["text_encoder"]
    ids = tokenizer(expand_prompt(prompt, tokenizer), padding="max_length", max_length=tokenizer.model_max_length,
                    truncation=True, return_tensors="pt").input_ids
    with torch.no_grad():
        return encoder(ids)[0]


@pytest.mark.parametrize("fmt", ["a1111-pt", "safetensors", "diffusers"])
def test_embedding_encodes_like_diffusers_and_is_removed_after(sd1_path, embeddings, fmt):
    path = embeddings[fmt, 0]
    ck = load_checkpoint(sd1_path)
    tokenizer, encoder = ck.tokenizers["tokenizer"], ck.text_encoders["text_encoder"]
    module = encoder.get_input_embeddings()
    weight = module.weight.detach().clone()
    ids_before = tokenizer(PROMPT).input_ids
    base = _sd1_encode(ck, PROMPT)

    pipe = independent_pipeline(sd1_path)
    pipe.load_textual_inversion(str(path), token="mytoken")
    with torch.no_grad():
        reference = pipe.encode_prompt(PROMPT, "cpu", 1, False)[0]

    with registered_embeddings([("mytoken", read_embedding(path))], ck.family, ck.tokenizers, ck.text_encoders):
        ours = _sd1_encode(ck, PROMPT)
        vectors = read_embedding(path).vectors["text_encoder"].shape[0]
        if vectors > 1:  # without expand_prompt only the first vector would be used
            plain_ids = tokenizer(PROMPT, padding="max_length", max_length=77, return_tensors="pt").input_ids
            with torch.no_grad():
                assert max_diff(encoder(plain_ids)[0], reference) > FAR * ATOL
    with registered_embeddings([("mytoken", read_embedding(embeddings["a1111-pt", 1]))], ck.family, ck.tokenizers,
                               ck.text_encoders):
        other = _sd1_encode(ck, PROMPT)

    report(f"{fmt} embedding vs diffusers encode_prompt", max_diff(ours, reference))
    report(f"{fmt} embedding vs another embedding", max_diff(other, reference))
    assert torch.equal(ours, reference)
    assert max_diff(other, reference) > FAR * ATOL
    assert max_diff(ours, base) > FAR * ATOL

    # After the block: the token is unknown again and the embedding matrix is the original one.
    assert "mytoken" not in tokenizer.get_vocab() and "mytoken_1" not in tokenizer.get_vocab()
    assert len(tokenizer) == 49408
    assert tokenizer(PROMPT).input_ids == ids_before
    after = encoder.get_input_embeddings()
    assert after is module
    assert after.weight.shape == weight.shape and torch.equal(after.weight, weight)
    assert not after.weight.requires_grad
    assert encoder.config.vocab_size == 49408
    assert torch.equal(_sd1_encode(ck, PROMPT), base)


def test_wrong_width_embedding_is_refused(sd1_path, sdxl_path, folder, embeddings):
    sd2 = read_embedding(synthetic.write_embedding(folder / "sd2-emb.safetensors", "safetensors", family="sd2"))
    ck = load_checkpoint(sd1_path)
    with pytest.raises(IncompatibleModelError, match=r"SD2.*SD 1\.x"), \
            registered_embeddings([("mytoken", sd2)], ck.family, ck.tokenizers, ck.text_encoders):
        pass
    xl = read_embedding(embeddings["sdxl", 0])
    with pytest.raises(IncompatibleModelError, match=r"SDXL.*SD 1\.x"), \
            registered_embeddings([("mytoken", xl)], ck.family, ck.tokenizers, ck.text_encoders):
        pass
    # An SD 1.x embedding has CLIP-L's width, like SDXL's first encoder, but nothing for the second one.
    sdxl = load_checkpoint(sdxl_path)
    sd1 = read_embedding(embeddings["a1111-pt", 0])
    with pytest.raises(IncompatibleModelError, match=r"SD1.*SDXL base"), \
            registered_embeddings([("mytoken", sd1)], sdxl.family, sdxl.tokenizers, sdxl.text_encoders):
        pass
    for model in (ck, sdxl):
        assert all("mytoken" not in tok.get_vocab() for tok in model.tokenizers.values())
        assert all(te.get_input_embeddings().weight.shape[0] == 49408 for te in model.text_encoders.values())


def _sdxl_encode(tokenizers, encoders, prompt):
    """SDXL's prompt encoding (as StableDiffusionXLPipeline.encode_prompt): penultimate hidden states of both
    encoders side by side, and the second encoder's pooled projection."""
    hidden, pooled = [], None
    for tokenizer, encoder in zip(tokenizers, encoders, strict=True):
        ids = tokenizer(expand_prompt(prompt, tokenizer), padding="max_length",
                        max_length=tokenizer.model_max_length, truncation=True, return_tensors="pt").input_ids
        with torch.no_grad():
            out = encoder(ids, output_hidden_states=True)
        hidden.append(out.hidden_states[-2])
        pooled = out[0]
    return torch.cat(hidden, dim=-1), pooled


def test_sdxl_embedding_registers_on_both_encoders_like_diffusers(sdxl_path, embeddings):
    path = embeddings["sdxl", 0]
    ck = load_checkpoint(sdxl_path)
    tokenizers = [ck.tokenizers["tokenizer"], ck.tokenizers["tokenizer_2"]]
    encoders = [ck.text_encoders["text_encoder"], ck.text_encoders["text_encoder_2"]]
    weights = [e.get_input_embeddings().weight.detach().clone() for e in encoders]
    base = _sdxl_encode(tokenizers, encoders, PROMPT)

    raw = load_file(str(path))
    pipe = independent_pipeline(sdxl_path)
    pipe.load_textual_inversion(raw["clip_l"], token="mytoken", text_encoder=pipe.text_encoder,
                                tokenizer=pipe.tokenizer)
    pipe.load_textual_inversion(raw["clip_g"], token="mytoken", text_encoder=pipe.text_encoder_2,
                                tokenizer=pipe.tokenizer_2)
    with torch.no_grad():
        embeds, _, pooled, _ = pipe.encode_prompt(PROMPT, device="cpu", num_images_per_prompt=1,
                                                  do_classifier_free_guidance=False)

    with registered_embeddings([("mytoken", read_embedding(path))], ck.family, ck.tokenizers, ck.text_encoders):
        assert all("mytoken_1" in tok.get_vocab() for tok in tokenizers)
        ours, ours_pooled = _sdxl_encode(tokenizers, encoders, PROMPT)
    with registered_embeddings([("mytoken", read_embedding(embeddings["sdxl", 5]))], ck.family, ck.tokenizers,
                               ck.text_encoders):
        other, other_pooled = _sdxl_encode(tokenizers, encoders, PROMPT)

    report("SDXL embedding vs diffusers, prompt embeds", max_diff(ours, embeds))
    report("SDXL embedding vs diffusers, pooled", max_diff(ours_pooled, pooled))
    report("SDXL embedding, another embedding, prompt embeds", max_diff(other, embeds))
    report("SDXL embedding, another embedding, pooled", max_diff(other_pooled, pooled))
    assert torch.equal(ours, embeds) and torch.equal(ours_pooled, pooled)
    assert max_diff(other[..., :768], embeds[..., :768]) > FAR * ATOL  # each encoder moves on its own
    assert max_diff(other[..., 768:], embeds[..., 768:]) > FAR * ATOL
    assert max_diff(other_pooled, pooled) > FAR * ATOL

    for tokenizer, encoder, weight in zip(tokenizers, encoders, weights, strict=True):
        assert "mytoken" not in tokenizer.get_vocab()
        assert torch.equal(encoder.get_input_embeddings().weight, weight)
    after, after_pooled = _sdxl_encode(tokenizers, encoders, PROMPT)
    assert torch.equal(after, base[0]) and torch.equal(after_pooled, base[1])


# --- hypernetworks ---------------------------------------------------------------------------------------------------
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
