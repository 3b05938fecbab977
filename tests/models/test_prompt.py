"""Prompt syntax and prompt encoding.

The parser is checked against AUTOMATIC1111's documented behaviour; the encoder against diffusers' own
``encode_prompt`` on the same tiny weights (bit for bit where no emphasis is used), and against hand computations of
AUTOMATIC1111's emphasis rule and of CLIP skip. Each comparison is shown to be able to fail: a different prompt,
weight, layer or embedding moves the result far past the tolerance.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from nodegraph.models.offline import ensure_offline

ensure_offline()

import diffusers  # noqa: E402

from nodegraph.models.embeddings import read_embedding  # noqa: E402
from nodegraph.models.errors import ModelNotFoundError  # noqa: E402
from nodegraph.models.loader import load_checkpoint  # noqa: E402
from nodegraph.models.prompt_encoder import encode_prompt  # noqa: E402
from nodegraph.models.prompt_parser import (  # noqa: E402
    BREAK,
    Fragment,
    find_embedding_references,
    has_emphasis,
    parse_prompt,
    split_chunks,
)
from tests.reference import reference_pipeline  # noqa: E402

ATOL = 1e-6
FAR = 100  # a changed input must move the result by more than FAR * ATOL
PROMPT = "a photo of a cat riding a bicycle"
OTHER = "an oil painting of a dog in the snow"
#: Words that are one CLIP token each, so a prompt made of them has a known token count.
WORDS = ("a", "photo", "of", "cat", "dog", "red", "blue", "green", "house", "tree", "river", "sky", "sun", "moon",
         "city", "night", "day", "old", "young", "big", "small")


def report(what, value):
    print(f"\n[max |diff|] {what}: {value:.3g}")
    return value


def max_diff(a, b):
    return (a.double() - b.double()).abs().max().item()


def long_prompt(count):
    return " ".join(WORDS[i % len(WORDS)] for i in range(count))


# --- parser ----------------------------------------------------------------------------------------------------------
E = 1.1


@pytest.mark.parametrize(("prompt", "expected"), [
    ("normal text", [("normal text", 1.0)]),
    ("an (important) word", [("an ", 1.0), ("important", E), (" word", 1.0)]),
    ("((word))", [("word", E * E)]),
    ("(((word)))", [("word", E * E * E)]),
    ("[word]", [("word", 1 / E)]),
    ("[[word]]", [("word", 1 / E / E)]),
    ("(word:1.3)", [("word", 1.3)]),
    ("( word : 0.5 )", [(" word ", 0.5)]),
    ("(word:-1)", [("word", -1.0)]),
    ("(word:+.5)", [("word", 0.5)]),
    ("((word:1.3))", [("word", 1.3 * E)]),
    ("(a (b) [c])", [("a ", E), ("b", E * E), (" ", E), ("c", 1 / E * E)]),
    ("a (((house:1.3)) [on] a (hill:0.5), sun, (((sky))).",
     [("a ", 1.0), ("house", 1.5730000000000004), (" ", 1.1), ("on", 1.0), (" a ", 1.1), ("hill", 0.55),
      (", sun, ", 1.1), ("sky", 1.4641000000000006), (".", 1.1)]),
])
def test_emphasis_and_nesting(prompt, expected):
    assert parse_prompt(prompt) == expected


@pytest.mark.parametrize(("prompt", "expected"), [
    ("\\(literal\\]", [("(literal]", 1.0)]),
    ("\\[x\\) and \\\\ slash", [("[x) and \\ slash", 1.0)]),
    ("a \\ b", [("a \\ b", 1.0)]),  # a lone backslash stays (AUTOMATIC1111 would drop it)
    ("(a \\(b\\))", [("a (b)", E)]),
    ("embedding:sub\\name", [("embedding:sub\\name", 1.0)]),
])
def test_escapes(prompt, expected):
    assert parse_prompt(prompt) == expected


@pytest.mark.parametrize(("prompt", "expected"), [
    ("(unbalanced", [("unbalanced", E)]),
    ("((a)", [("a", E * E)]),
    ("[a", [("a", 1 / E)]),
    ("x) y] z:1.2)", [("x) y] z:1.2)", 1.0)]),  # closers with nothing open are text
    ("a:1.2) b", [("a:1.2) b", 1.0)]),
    ("(x:1.2.3)", [("x:1.2.3", E)]),  # not a number: the colon is text and ")" closes normally
    ("(a:b)", [("a:b", E)]),
    ("(a [b:1.5) c", [("a ", 1.5), ("b", 1.5 / E), (" c", 1 / E)]),  # ")" and "]" close their own kind
    ("(a) b)", [("a", E), (" b)", 1.0)]),
])
def test_unbalanced_brackets_are_tolerated(prompt, expected):
    assert parse_prompt(prompt) == expected


@pytest.mark.parametrize(("prompt", "expected"), [
    ("a BREAK b", [("a", 1.0), BREAK, ("b", 1.0)]),
    ("a  BREAK\nb", [("a", 1.0), BREAK, ("b", 1.0)]),
    ("a BREAK a", [("a", 1.0), BREAK, ("a", 1.0)]),  # never merged across a break
    ("BREAK", [BREAK]),
    ("BREAK b", [BREAK, ("b", 1.0)]),
    ("(a BREAK b)", [("a", E), BREAK, ("b", E)]),
    ("aBREAK b break BREAKS", [("aBREAK b break BREAKS", 1.0)]),  # only the upper-case whole word
])
def test_break(prompt, expected):
    fragments = parse_prompt(prompt)
    assert fragments == expected
    assert [f is BREAK for f in fragments] == [f == BREAK for f in expected]


def test_merging_and_empty_prompts():
    assert parse_prompt("(unnecessary)(parens)") == [("unnecessaryparens", E)]
    assert parse_prompt("a \\(b\\) c") == [("a (b) c", 1.0)]
    assert parse_prompt("a (b:1.0) c") == [("a b c", 1.0)]
    assert parse_prompt("") == [("", 1.0)]
    assert parse_prompt("()[]") == [("", 1.0)]
    fragments = parse_prompt("a (b) c")
    assert all(isinstance(f, Fragment) for f in fragments)
    assert has_emphasis(fragments) and not has_emphasis(parse_prompt("a \\(b\\) BREAK c"))


def test_split_chunks_follows_automatic1111():
    def tokens(ids, weight=1.0):
        return [((i,), weight) for i in ids]

    chunks = split_chunks(tokens(range(80)))
    assert [len(c.ids) for c in chunks] == [75, 5] and chunks[1].ids == list(range(75, 80))
    assert [len(c.ids) for c in split_chunks(tokens(range(75)))] == [75]
    assert split_chunks([]) == [([], [])]
    assert split_chunks([BREAK]) == [([], [])]
    assert [c.ids for c in split_chunks([*tokens([1]), BREAK, *tokens([2], 1.5)])] == [[1], [2]]
    assert [c.weights for c in split_chunks([*tokens([1]), BREAK, *tokens([2], 1.5)])] == [[1.0], [1.5]]
    assert [c.ids for c in split_chunks([BREAK, *tokens([2])])] == [[], [2]]
    # A full chunk with a comma in its last 20 tokens: what follows the comma moves on.
    comma = 267
    ids = [*range(60), comma, *range(100, 114), *range(200, 210)]
    chunks = split_chunks(tokens(ids), comma_id=comma)
    assert chunks[0].ids == [*range(60), comma] and chunks[1].ids == [*range(100, 114), *range(200, 210)]
    assert split_chunks(tokens(ids), comma_id=comma, comma_backtrack=0)[0].ids == ids[:75]
    far_comma = [*range(50), comma, *range(100, 140)]  # 24 tokens after the comma: too far back
    assert split_chunks(tokens(far_comma), comma_id=comma)[0].ids == far_comma[:75]
    # An embedding's vectors stay together.
    chunks = split_chunks([*tokens(range(73)), ((900, 901, 902), 1.2), *tokens([5])])
    assert chunks[0].ids == list(range(73)) and chunks[1].ids == [900, 901, 902, 5]
    assert chunks[1].weights == [1.2, 1.2, 1.2, 1.0]
    with pytest.raises(ValueError, match="76 vectors"):
        split_chunks([(tuple(range(76)), 1.0)])


def test_embedding_references():
    files = {"mytoken": "/models/embeddings/neg/EasyNegative.safetensors", "bad-hand": None,
             "bad-hand-v4": "/models/embeddings/bad-hand-v4.pt"}

    def refs(text):
        return [(text[r.start:r.end], r.name, r.key, r.explicit) for r in find_embedding_references(text, files)]

    key = "mytoken"
    for written in ("easynegative", "EasyNegative", "EasyNegative.safetensors", "neg/easynegative",
                    "neg\\EasyNegative.safetensors", "embeddings/neg/EasyNegative", "mytoken"):
        assert refs(f"a embedding:{written}, b") == [(f"embedding:{written}", written, key, True)], written
    assert refs("(embedding:easynegative:1.2)") == [("embedding:easynegative", "easynegative", key, True)]
    assert refs("embedding:easynegative.") == [("embedding:easynegative", "easynegative", key, True)]
    assert refs("embedding:missing x") == [("embedding:missing", "missing", None, True)]
    assert refs("embedding:easynegative.pt") == [("embedding:easynegative.pt", "easynegative.pt", None, True)]
    assert refs("embedding: x") == []
    # Bare names: the key or the file stem, whole words only; the longest name wins.
    assert refs("mytoken, EasyNegative bad-hand bad-hand-v4") == [
        ("mytoken", "mytoken", key, False), ("EasyNegative", "EasyNegative", key, False),
        ("bad-hand", "bad-hand", "bad-hand", False), ("bad-hand-v4", "bad-hand-v4", "bad-hand-v4", False)]
    assert refs("xmytoken mytokens bad-hand-v5 easynegative.safetensors") == [
        ("easynegative", "easynegative", key, False)]
    assert refs("embedding:bad-hand mytoken") == [("embedding:bad-hand", "bad-hand", "bad-hand", True),
                                                  ("mytoken", "mytoken", key, False)]
    assert find_embedding_references("a photo", {}) == []


def test_the_parser_loads_no_torch():
    code = "import sys, nodegraph.models.prompt_parser; print('torch' in sys.modules)"
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


# --- models and diffusers references ---------------------------------------------------------------------------------
@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Tiny models gain nothing from intra-op threads, and a busy 2-core machine makes them much slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def load32(path):
    return load_checkpoint(path, dtype=torch.float32)


def sd_pipeline(path):
    """diffusers' pipeline on an independent float32 copy of the checkpoint."""
    return reference_pipeline(load32(path))


sdxl_pipeline = sd_pipeline  # reference_pipeline picks the SDXL class from the family


def reference(pipe, prompt):
    with torch.no_grad():
        out = pipe.encode_prompt(prompt, device="cpu", num_images_per_prompt=1, do_classifier_free_guidance=False)
    return out if isinstance(pipe, diffusers.StableDiffusionXLPipeline) else out[0]


def encode(ck, prompt, **kwargs):
    return encode_prompt(prompt, family=ck.family, tokenizers=ck.tokenizers, text_encoders=ck.text_encoders, **kwargs)


@pytest.fixture(scope="module")
def sd1(model_files):
    return load32(model_files["sd1"])


@pytest.fixture(scope="module")
def sd1_pipe(model_files):
    return sd_pipeline(model_files["sd1"])


@pytest.fixture(scope="module")
def sd1_biased(model_files):
    """The tiny SD 1.x model with a bias in its final layer norm. Default-initialised, the norm has none, so every
    output token has mean 0 and the mean AUTOMATIC1111's emphasis restores is rounding noise; trained encoders have
    one."""
    ck = load32(model_files["sd1"])
    with torch.no_grad():
        ck.text_encoders["text_encoder"].final_layer_norm.bias.copy_(torch.linspace(-0.1, 0.3, 768))
    return ck


def hidden(ck, ids, layer=None):
    """The SD 1.x encoder's output for token ids, by hand: the last hidden state, or final_layer_norm of
    ``hidden_states[layer]``."""
    encoder = ck.text_encoders["text_encoder"]
    with torch.no_grad():
        if layer is None:
            return encoder(torch.tensor([ids]))[0]
        return encoder.final_layer_norm(encoder(torch.tensor([ids]), output_hidden_states=True).hidden_states[layer])


def chunk_ids(ck, prompt):
    tokenizer = ck.tokenizers["tokenizer"]
    return tokenizer(prompt, padding="max_length", max_length=77, truncation=True).input_ids


def a1111_emphasis(z, weights):
    """AUTOMATIC1111's rule, written out: weight each token's vector, then restore the chunk's mean."""
    weighted = z * torch.tensor(weights).reshape(1, -1, 1)
    assert abs(z.mean()) > 0.01 * z.abs().mean(), "a chunk mean of ~0 makes the rule meaningless"
    return weighted * (z.mean() / weighted.mean())


# --- SD 1.x ----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("prompt", [PROMPT, "", "an astronaut, 8k, highly detailed"])
def test_sd1_equals_diffusers_encode_prompt(sd1, sd1_pipe, prompt):
    ours = encode(sd1, prompt)
    ref = reference(sd1_pipe, prompt)
    moved = reference(sd1_pipe, OTHER)
    assert ours.embeds.shape == (1, 77, 768) and ours.pooled is None and ours.text == prompt
    report(f"SD1 {prompt!r} vs diffusers", max_diff(ours.embeds, ref))
    assert torch.equal(ours.embeds, ref)
    assert report(f"SD1 {prompt!r} vs another prompt", max_diff(ours.embeds, moved)) > FAR * ATOL


def test_sd1_keeps_the_encoder_dtype(model_files):
    ck = load_checkpoint(model_files["sd1"])  # float16 as stored
    out = encode(ck, "a (cat:1.2)")
    assert out.embeds.dtype == torch.float16 and out.embeds.device.type == "cpu"
    assert not out.embeds.is_inference()


def test_long_prompt_gives_two_chunks(sd1, sd1_pipe):
    prompt = long_prompt(100)
    ours = encode(sd1, prompt)
    assert ours.embeds.shape == (1, 154, 768)
    first, rest = long_prompt(75), " ".join(prompt.split()[75:])
    # diffusers truncates to the first 75 tokens: exactly our first chunk.
    report("long prompt, first chunk vs diffusers (truncated)",
           max_diff(ours.embeds[:, :77], reference(sd1_pipe, prompt)))
    assert torch.equal(ours.embeds[:, :77], reference(sd1_pipe, prompt))
    assert torch.equal(ours.embeds[:, :77], encode(sd1, first).embeds)
    assert torch.equal(ours.embeds[:, 77:], encode(sd1, rest).embeds)
    assert max_diff(ours.embeds[:, 77:], ours.embeds[:, :77]) > FAR * ATOL
    assert encode(sd1, long_prompt(75)).embeds.shape == (1, 77, 768)
    assert encode(sd1, long_prompt(76)).embeds.shape == (1, 154, 768)


def test_break_starts_a_new_chunk(sd1):
    ours = encode(sd1, "a photo of a cat BREAK a dog in the snow")
    assert ours.embeds.shape == (1, 154, 768)
    assert torch.equal(ours.embeds[:, :77], encode(sd1, "a photo of a cat").embeds)
    assert torch.equal(ours.embeds[:, 77:], encode(sd1, "a dog in the snow").embeds)


def test_comma_backtracking_moves_the_last_words(sd1):
    words = long_prompt(70).split()
    prompt = " ".join(words[:65]) + ", " + " ".join(words[65:]) + " red blue green house tree"
    ours = encode(sd1, prompt)
    assert ours.embeds.shape == (1, 154, 768)
    assert torch.equal(ours.embeds[:, :77], encode(sd1, " ".join(words[:65]) + ",").embeds)


def test_emphasis_follows_automatic1111(sd1_biased):
    sd1 = sd1_biased
    plain = encode(sd1, PROMPT).embeds
    ids = chunk_ids(sd1, PROMPT)
    cat = ids.index(2368)  # "cat</w>"
    for prompt, factor in (("a photo of a (cat:1.5) riding a bicycle", 1.5), ("a photo of a [cat] riding a bicycle",
                                                                             1 / 1.1),
                           ("a photo of a ((cat)) riding a bicycle", 1.1 * 1.1)):
        ours = encode(sd1, prompt).embeds
        weights = [1.0] * 77
        weights[cat] = factor
        expected = a1111_emphasis(hidden(sd1, ids), weights)
        report(f"{prompt!r} vs the hand-computed rule", max_diff(ours, expected))
        assert max_diff(ours, expected) <= ATOL
        assert report(f"{prompt!r} vs no emphasis", max_diff(ours, plain)) > FAR * ATOL
        # Every token keeps its direction; only the weighted one changes its length relative to the others.
        ratio = ours.norm(dim=-1) / plain.norm(dim=-1)
        others = torch.cat([ratio[0, :cat], ratio[0, cat + 1:]])
        assert torch.allclose(others, others[0].expand_as(others), rtol=1e-5)
        assert ratio[0, cat] / others[0] == pytest.approx(factor, rel=1e-5)
        cosine = torch.nn.functional.cosine_similarity(ours, plain, dim=-1)
        assert torch.allclose(cosine, torch.ones_like(cosine), atol=1e-5)
    # A negative weight turns the token around.
    flipped = encode(sd1, "a photo of a (cat:-1) riding a bicycle").embeds
    assert torch.nn.functional.cosine_similarity(flipped, plain, dim=-1)[0, cat] == pytest.approx(-1, abs=1e-5)
    # Weights of 1.0 and escapes leave the encoding bit-identical.
    assert torch.equal(encode(sd1, "a photo of a (cat:1.0) riding a bicycle").embeds, plain)
    escaped = encode(sd1, "a \\(photo\\) of a \\[cat\\]").embeds
    assert torch.equal(escaped, hidden(sd1, chunk_ids(sd1, "a (photo) of a [cat]")))


def test_emphasis_without_a_meaningful_mean_only_weights(sd1):
    """With a bias-free final norm the chunk's mean is ~0 (here ~1e-9): restoring it would scale every vector by
    noise, so only the weights apply."""
    ids = chunk_ids(sd1, PROMPT)
    plain = hidden(sd1, ids)
    assert abs(plain.mean()) < 1e-6 * plain.abs().mean()
    weights = [1.0] * 77
    weights[ids.index(2368)] = 1.5
    ours = encode(sd1, "a photo of a (cat:1.5) riding a bicycle").embeds
    assert torch.equal(ours, plain * torch.tensor(weights).reshape(1, -1, 1))


def test_emphasis_only_touches_its_own_chunk(sd1):
    ours = encode(sd1, "a photo of a cat BREAK a (dog:1.4) in the snow").embeds
    assert torch.equal(ours[:, :77], encode(sd1, "a photo of a cat").embeds)
    assert max_diff(ours[:, 77:], encode(sd1, "a dog in the snow").embeds) > FAR * ATOL


def test_clip_skip_matches_the_hand_computation(sd1, sd1_biased):
    ids = chunk_ids(sd1, PROMPT)
    last = encode(sd1, PROMPT).embeds
    assert torch.equal(last, hidden(sd1, ids))
    for skip in (2, 3):
        # diffusers' clip_skip=n is final_layer_norm(hidden_states[-(n + 1)]): our clip skip n + 1.
        ours = encode(sd1, PROMPT, clip_skip=skip).embeds
        report(f"SD1 clip skip {skip} vs hand computation", max_diff(ours, hidden(sd1, ids, -skip)))
        assert torch.equal(ours, hidden(sd1, ids, -skip))
        assert report(f"SD1 clip skip {skip} vs clip skip 1", max_diff(ours, last)) > FAR * ATOL
    weighted = encode(sd1_biased, "a photo of a (cat:1.5) riding a bicycle", clip_skip=2).embeds
    weights = [1.0] * 77
    weights[ids.index(2368)] = 1.5
    assert max_diff(weighted, a1111_emphasis(hidden(sd1_biased, ids, -2), weights)) <= ATOL
    for bad in (0, 4):  # the tiny encoder has 3 layers
        with pytest.raises(ValueError, match="clip skip"):
            encode(sd1, PROMPT, clip_skip=bad)


# --- embeddings -------------------------------------------------------------------------------------------------------
EMB_PROMPT = "a photo of {} riding a bicycle"


def encoder_state(ck):
    return [(len(tok), tuple(enc.get_input_embeddings().weight.shape), enc.get_input_embeddings().weight.clone(),
             enc.get_input_embeddings()) for tok, enc in zip(ck.tokenizers.values(), ck.text_encoders.values(),
                                                             strict=True)]


def assert_unchanged(ck, before):
    for (length, shape, weight, module), tok, enc in zip(before, ck.tokenizers.values(), ck.text_encoders.values(),
                                                         strict=True):
        assert len(tok) == length == 49408
        assert enc.get_input_embeddings() is module and tuple(module.weight.shape) == shape
        assert torch.equal(module.weight, weight)
        assert not any("nodegraph-embedding" in t for t in tok.get_vocab())


def test_sd1_embeddings_equal_diffusers_textual_inversion(sd1, sd1_biased, model_files):
    path = model_files["emb-a1111-pt"]  # two vectors
    embeddings = {"mytoken": read_embedding(path)}
    pipe = sd_pipeline(model_files["sd1"])
    pipe.load_textual_inversion(str(path), token="mytoken")
    expected = reference(pipe, EMB_PROMPT.format("mytoken"))
    before = encoder_state(sd1)
    for written in ("mytoken", path.stem, f"embedding:{path.stem}", "embedding:mytoken", f"embedding:{path.name}",
                    f"embedding:embeddings/{path.stem}", f"(embedding:{path.stem}:1.0)"):
        ours = encode(sd1, EMB_PROMPT.format(written), embeddings=embeddings).embeds
        report(f"embedding written {written!r} vs diffusers", max_diff(ours, expected))
        assert torch.equal(ours, expected), written
    assert_unchanged(sd1, before)
    assert report("embedding vs the plain word", max_diff(expected, encode(sd1, EMB_PROMPT.format("mytoken")).embeds)
                  ) > FAR * ATOL
    other = {"mytoken": read_embedding(model_files["emb-safetensors"])}
    assert report("embedding vs another embedding",
                  max_diff(expected, encode(sd1, EMB_PROMPT.format("mytoken"), embeddings=other).embeds)) > FAR * ATOL

    # The weight of its fragment applies to the embedding's vectors.
    ids = pipe.tokenizer(pipe.maybe_convert_prompt(EMB_PROMPT.format("mytoken"), pipe.tokenizer),
                         padding="max_length", max_length=77).input_ids
    weighted = encode(sd1_biased, EMB_PROMPT.format("(embedding:mytoken:1.3)"), embeddings=embeddings).embeds
    unweighted = encode(sd1_biased, EMB_PROMPT.format("mytoken"), embeddings=embeddings).embeds
    weights = [1.3 if i >= 49408 else 1.0 for i in ids]
    assert weights.count(1.3) == 2
    hand = a1111_emphasis(unweighted, weights)
    report("weighted embedding vs the hand-computed rule", max_diff(weighted, hand))
    assert max_diff(weighted, hand) <= ATOL
    assert max_diff(weighted, unweighted) > FAR * ATOL
    assert_unchanged(sd1, before)

    with pytest.raises(ModelNotFoundError, match="embedding:nothere"):
        encode(sd1, "a photo of embedding:nothere", embeddings=embeddings)
    assert_unchanged(sd1, before)


# --- SD 2.x and SDXL --------------------------------------------------------------------------------------------------
def test_sd2_equals_diffusers_encode_prompt(model_files):
    ck, pipe = load32(model_files["sd2-v"]), sd_pipeline(model_files["sd2-v"])
    assert ck.tokenizers["tokenizer"].pad_token_id == 0
    for prompt in (PROMPT, ""):
        ours = encode(ck, prompt).embeds
        report(f"SD2 {prompt!r} vs diffusers", max_diff(ours, reference(pipe, prompt)))
        assert ours.shape == (1, 77, 1024) and torch.equal(ours, reference(pipe, prompt))
    assert report("SD2 vs another prompt", max_diff(encode(ck, PROMPT).embeds, reference(pipe, OTHER))) > FAR * ATOL
    assert encode(ck, long_prompt(90)).embeds.shape == (1, 154, 1024)


def test_sdxl_equals_diffusers_encode_prompt_with_embeddings_and_clip_skip(model_files):
    ck, pipe = load32(model_files["sdxl-base"]), sdxl_pipeline(model_files["sdxl-base"])
    for prompt in (PROMPT, ""):
        ours = encode(ck, prompt)
        embeds, _, pooled, _ = reference(pipe, prompt)
        report(f"SDXL {prompt!r} vs diffusers (embeds, pooled)", max(max_diff(ours.embeds, embeds),
                                                                      max_diff(ours.pooled, pooled)))
        assert ours.embeds.shape == (1, 77, 2048) and ours.pooled.shape == (1, 1280)
        assert torch.equal(ours.embeds, embeds) and torch.equal(ours.pooled, pooled)
    embeds, _, pooled, _ = reference(pipe, OTHER)
    plain = encode(ck, PROMPT)
    assert report("SDXL vs another prompt", max_diff(plain.embeds, embeds)) > FAR * ATOL
    assert max_diff(plain.embeds[..., :768], embeds[..., :768]) > FAR * ATOL  # both encoders take part
    assert max_diff(plain.pooled, pooled) > FAR * ATOL

    # Clip skip 2: hidden_states[-3] of each encoder (diffusers' clip_skip=1), no final norm.
    parts = []
    for name in ("text_encoder", "text_encoder_2"):
        tokenizer, encoder = ck.tokenizers[name.replace("text_encoder", "tokenizer")], ck.text_encoders[name]
        ids = tokenizer(PROMPT, padding="max_length", max_length=77).input_ids
        with torch.no_grad():
            parts.append(encoder(torch.tensor([ids]), output_hidden_states=True).hidden_states[-3])
    skipped = encode(ck, PROMPT, clip_skip=2)
    report("SDXL clip skip 2 vs hand computation", max_diff(skipped.embeds, torch.cat(parts, dim=-1)))
    assert torch.equal(skipped.embeds, torch.cat(parts, dim=-1)) and torch.equal(skipped.pooled, plain.pooled)
    assert max_diff(skipped.embeds, plain.embeds) > FAR * ATOL

    # Long prompts: two chunks, the pooled embedding from the first.
    long = encode(ck, long_prompt(100))
    assert long.embeds.shape == (1, 154, 2048)
    assert torch.equal(long.embeds[:, :77], encode(ck, long_prompt(75)).embeds)
    assert torch.equal(long.pooled, encode(ck, long_prompt(75)).pooled)

    # An SDXL embedding: diffusers needs load_textual_inversion once per encoder.
    path = model_files["emb-sdxl"]
    raw = load_file(str(path))
    pipe.load_textual_inversion(raw["clip_l"], token="mytoken", text_encoder=pipe.text_encoder,
                                tokenizer=pipe.tokenizer)
    pipe.load_textual_inversion(raw["clip_g"], token="mytoken", text_encoder=pipe.text_encoder_2,
                                tokenizer=pipe.tokenizer_2)
    embeds, _, pooled, _ = reference(pipe, EMB_PROMPT.format("mytoken"))
    before = encoder_state(ck)
    for written in ("mytoken", f"embedding:{path.stem}"):
        ours = encode(ck, EMB_PROMPT.format(written), embeddings={"mytoken": read_embedding(path)})
        report(f"SDXL embedding {written!r} vs diffusers", max(max_diff(ours.embeds, embeds),
                                                               max_diff(ours.pooled, pooled)))
        assert torch.equal(ours.embeds, embeds) and torch.equal(ours.pooled, pooled)
    assert max_diff(embeds, encode(ck, EMB_PROMPT.format("mytoken")).embeds) > FAR * ATOL
    assert_unchanged(ck, before)
