"""Textual-inversion embeddings (AUTOMATIC1111 .pt, safetensors, diffusers, SDXL) read exactly and encoded like
diffusers' own ``load_textual_inversion`` on the same files, removed again after each block."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from nodegraph.models.offline import ensure_offline

ensure_offline()

from nodegraph.models import synthetic  # noqa: E402
from nodegraph.models.embeddings import (  # noqa: E402
    expand_prompt,
    read_embedding,
    registered_embeddings,
)
from nodegraph.models.errors import IncompatibleModelError, UnsafeModelError  # noqa: E402
from nodegraph.models.loader import load_checkpoint  # noqa: E402
from tests.models.addon_helpers import (  # noqa: E402
    ATOL,
    FAR,
    PROMPT,
    independent_pipeline,
    max_diff,
    report,
)

# The tiny models gain nothing from intra-op threads (see the one_thread fixture).
pytestmark = pytest.mark.usefixtures("one_thread")


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
