"""AUTOMATIC1111's prompt editing (``[from:to:when]``, ``[a|b]``), step by step.

The reference is written out by hand from AUTOMATIC1111's rules (``modules/prompt_parser.py`` with its default "new"
timelines, and the 0-based denoiser step that ``reconstruct_cond_batch`` compares with ``current_step <=
end_at_step``): at sampler step i, s = max(i, 1); an edit gives `from` while s <= its step (``int(when × steps)``
for a number with a ".", else ``int(when)``, at most `steps`), an alternation option ``(s − 1) mod n``. The
conditioning chosen per step must equal, bit for bit, the encoding of the text the table expects; each comparison is
shown to be able to fail (a neighbouring step or another text gives different embeddings).
"""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from nodegraph.models.offline import ensure_offline

ensure_offline()

from nodegraph.core import NodeError  # noqa: E402
from nodegraph.models.conditioning import Conditioning  # noqa: E402
from nodegraph.models.embeddings import read_embedding  # noqa: E402
from nodegraph.models.handles import ClipHandle  # noqa: E402
from nodegraph.models.loader import load_checkpoint  # noqa: E402
from nodegraph.models.prompt_encoder import encode_prompt  # noqa: E402
from nodegraph.models.prompt_parser import (  # noqa: E402
    MAX_PROMPT_VARIANTS,
    Alternation,
    Edit,
    TooManyPromptVariants,
    parse_prompt,
    parse_schedule,
)

ATOL = 1e-6
FAR = 100


def expand(*runs):
    """("cat", 6), ("dog", 4) → six "cat" then four "dog": one expected text per step."""
    return [text for text, count in runs for _ in range(count)]


# (prompt, steps, the text at each sampler step 0 … steps − 1), worked out by hand from the rules above.
TABLE = [
    # 0.5 × 10 = 5: s <= 5 at steps 0-5 (step 0 counts as s = 1), so `from` six times.
    ("a [cat:dog:0.5] photo", 10, expand(("a cat photo", 6), ("a dog photo", 4))),
    ("a [cat:dog:0.5] photo", 4, expand(("a cat photo", 3), ("a dog photo", 1))),
    ("[cat:dog:3]", 10, expand(("cat", 4), ("dog", 6))),
    ("[cat:dog: 3 ]", 10, expand(("cat", 4), ("dog", 6))),
    ("[cat::0.25]", 10, expand(("cat", 3), ("", 7))),  # int(2.5) = 2
    ("a [cat::0.25]", 8, expand(("a cat", 3), ("a ", 5))),  # int(2.0) = 2
    ("[:dog:4]", 10, expand(("", 5), ("dog", 5))),
    ("[dog:4]", 10, expand(("", 5), ("dog", 5))),
    ("[dog:.5]", 6, expand(("", 4), ("dog", 2))),
    ("[cat|dog|bird]", 10, ["cat", "cat", "dog", "bird", "cat", "dog", "bird", "cat", "dog", "bird"]),
    ("a [cat|dog]", 5, ["a cat", "a cat", "a dog", "a cat", "a dog"]),
    ("[fe|]male", 6, ["female", "female", "male", "female", "male", "female"]),
    ("[fe|||]male", 6, ["female", "female", "male", "male", "male", "female"]),
    # nested: the inner edit switches at 2, the outer at 5.
    ("[a [b:c:2]:d:5]", 10, expand(("a b", 3), ("a c", 3), ("d", 4))),
    ("[[a|b]:c:0.5]", 6, ["a", "a", "b", "a", "c", "c"]),
    ("[cat|dog] [day:night:0.5]", 4, ["cat day", "cat day", "dog day", "cat night"]),
    ("[cat:dog:0.0]", 10, expand(("dog", 10))),  # step 0: never `from`
    ("[cat:dog:0]", 10, expand(("dog", 10))),
    ("[cat:dog:-2]", 5, expand(("dog", 5))),
    ("[cat:dog:1.0]", 10, expand(("cat", 10))),  # the last step: always `from`
    ("[cat:dog:1]", 10, expand(("cat", 2), ("dog", 8))),  # step 1 is the first switch point
    ("[cat:dog:25]", 10, expand(("cat", 10))),  # beyond the steps
    ("[cat:dog:25]", 30, expand(("cat", 26), ("dog", 4))),
    ("[cat:dog:1.5]", 10, expand(("cat", 10))),
    ("[cat:dog:0.5]", 1, ["dog"]),  # int(0.5) = 0
    ("[cat:dog:1e1]", 20, expand(("cat", 11), ("dog", 9))),  # no ".": a step number
    ("[cat:dog:.5e1]", 20, expand(("cat", 20))),  # a ".": a fraction, 5 × 20 capped at 20
    ("a (red:1.3) [(cat:1.2):dog:2] BREAK sky", 4,
     expand(("a (red:1.3) (cat:1.2) BREAK sky", 3), ("a (red:1.3) dog BREAK sky", 1))),
    ("score: 9, [cat:dog:2]", 4, expand(("score: 9, cat", 3), ("score: 9, dog", 1))),
    ("((a][:b:c [d:3]", 5, expand(("((a][:b:c ", 4), ("((a][:b:c d", 1))),  # broken groups stay text
    ("a[b:[c:d:2]:1]e", 4, ["abe", "abe", "ace", "ade"]),
    ("[ a |b\\:]", 3, [" a ", " a ", "b\\:"]),
]

# Prompts with no editing, or that AUTOMATIC1111 rejects as a whole (then used as written).
PLAIN = ["a photo of a cat", "a [word] and [[more]]", "[cat:dog]", "[cat:dog:x]", "\\[cat:dog:2\\]",
         "a | b [cat:dog:2]", "(a|b) [cat:dog:2]", "[a|b", "[cat:dog:2] \\", "(cat:dog:2)", "[a:b|c:2]",
         "[a:b:c:2]", "(masterpiece:1.2), [best]"]


@pytest.mark.parametrize(("prompt", "steps", "expected"), TABLE)
def test_the_text_at_each_step_follows_automatic1111(prompt, steps, expected):
    schedule = parse_schedule(prompt)
    assert schedule is not None
    assert [schedule.text_at(i, steps) for i in range(steps)] == expected
    assert set(expected) <= set(schedule.texts())  # every text a step uses is encoded


@pytest.mark.parametrize("prompt", PLAIN)
def test_prompts_without_editing_stay_as_written(prompt):
    assert parse_schedule(prompt) is None


def test_de_emphasis_is_untouched():
    assert parse_prompt("a [cat] photo")[1] == ("cat", 1 / 1.1)
    assert parse_schedule("a [cat] photo") is None


def test_the_parsed_structure():
    assert parse_schedule("a [b:(c:1.2):0.5]").parts == ("a ", Edit(("b",), ("(c:1.2)",), "0.5"))
    assert parse_schedule("[:c: 3 ]").parts == (Edit((), ("c",), "3"),)
    assert parse_schedule("[x|[y:z:2]|]").parts == (Alternation((("x",), (Edit(("y",), ("z",), "2"),), ())),)


def test_steps_outside_the_schedule_and_the_hires_fix_pass():
    schedule = parse_schedule("[cat:dog:0.5]")
    # A step index past the schedule falls back to its first entry, as AUTOMATIC1111's reconstruct_cond_batch.
    assert schedule.text_at(10, 10) == "dog" and schedule.text_at(11, 10) == "cat"
    with pytest.raises(ValueError, match="at least one step"):
        schedule.text_at(0, 0)
    # Hires fix second pass (first pass 10 steps, second 10): fractions lose 1, step numbers the first pass's steps.
    for prompt, expected in [("[cat:dog:0.5]", expand(("dog", 10))), ("[cat:dog:1.5]", expand(("cat", 6), ("dog", 4))),
                             ("[cat:dog:15]", expand(("cat", 6), ("dog", 4))), ("[cat:dog:5]", expand(("dog", 10))),
                             ("[cat|dog]", ["cat", "cat", "dog", "cat", "dog", "cat", "dog", "cat", "dog", "cat"])]:
        assert [parse_schedule(prompt).text_at(i, 10, first_pass_steps=10) for i in range(10)] == expected, prompt


def test_the_variants_are_the_distinct_texts():
    assert parse_schedule("[cat:dog:0.5] [x|y]").texts() == ["cat x", "dog x", "cat y", "dog y"]
    assert parse_schedule("[cat|dog] [x|y]").texts() == ["cat x", "dog y"]  # alternations move together
    assert parse_schedule("[cat|dog] [x|y|z]").texts() == ["cat x", "dog y", "cat z", "dog x", "cat y", "dog z"]
    assert parse_schedule("[cat:dog:0]").texts() == ["dog"]  # `from` is never reached
    assert parse_schedule("[a [b:c:2]:d:5]").texts() == ["a b", "a c", "d"]
    six = " ".join(f"[a{i}:b{i}:{i + 1}]" for i in range(6))
    assert len(parse_schedule(six).texts()) == MAX_PROMPT_VARIANTS
    with pytest.raises(TooManyPromptVariants, match=f"more than {MAX_PROMPT_VARIANTS} different prompts"):
        parse_schedule(six + " [c:d:9]").texts()
    with pytest.raises(TooManyPromptVariants, match="more than 3 different prompts"):
        parse_schedule("[a:b:1] [c:d:2]").texts(limit=3)
    with pytest.raises(TooManyPromptVariants, match="repeat every 27720 steps"):
        parse_schedule("".join("[" + "|".join("x" * n) + "]" for n in range(5, 12))).texts()


# --- encodings ------------------------------------------------------------------------------------------------------
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def sd1(model_files):
    return load_checkpoint(model_files["sd1"], dtype=torch.float32)


def encode(ck, prompt, **kwargs):
    return encode_prompt(prompt, family=ck.family, tokenizers=ck.tokenizers, text_encoders=ck.text_encoders, **kwargs)


def max_diff(a, b):
    if a.shape != b.shape:
        return float("inf")
    return (a.double() - b.double()).abs().max().item()


def check_steps(ck, prompt, steps, expected, **kwargs):
    """Each step's conditioning is the encoding of its expected text, and no other step's text gives it."""
    cond = encode(ck, prompt, **kwargs)
    assert cond.is_scheduled and cond.text == prompt
    references = {text: encode(ck, text, **kwargs) for text in set(expected)}
    assert len(references) > 1
    for i, text in enumerate(expected):
        chosen = cond.at_step(i, steps)
        assert not chosen.is_scheduled and chosen.text == prompt and chosen.clip_skip == cond.clip_skip
        assert torch.equal(chosen.embeds, references[text].embeds), (prompt, i)
        if references[text].pooled is not None:
            assert torch.equal(chosen.pooled, references[text].pooled), (prompt, i)
        for other, reference in references.items():
            if other != text:
                assert max_diff(chosen.embeds, reference.embeds) > FAR * ATOL, (prompt, i, other)
    return cond


@pytest.mark.parametrize(("prompt", "steps", "expected"), [
    row for row in TABLE if row[0] in {"a [cat:dog:0.5] photo", "[cat::0.25]", "[cat|dog|bird]", "[a [b:c:2]:d:5]",
                                        "a (red:1.3) [(cat:1.2):dog:2] BREAK sky", "[cat|dog] [day:night:0.5]"}])
def test_each_step_encodes_as_its_text_alone(sd1, prompt, steps, expected):
    cond = check_steps(sd1, prompt, steps, expected)
    assert cond.at_step(0, steps) is cond.at_step(1, steps)  # the same stored object for the same text


def test_variants_with_breaks_have_their_own_length(sd1):
    cond = check_steps(sd1, "a photo of a [cat BREAK dog:bird:2]", 4,
                       expand(("a photo of a cat BREAK dog", 3), ("a photo of a bird", 1)))
    assert cond.at_step(0, 4).embeds.shape[1] == 154 and cond.at_step(3, 4).embeds.shape[1] == 77


def test_embeddings_inside_variants(sd1, model_files):
    embeddings = {"mytoken": read_embedding(model_files["emb-a1111-pt"])}
    weight = sd1.text_encoders["text_encoder"].get_input_embeddings().weight
    before = (len(sd1.tokenizers["tokenizer"]), weight.shape, weight.clone())
    check_steps(sd1, "a photo of [mytoken:dog:2] riding [(mytoken:1.2)|a cat]", 4,
                ["a photo of mytoken riding (mytoken:1.2)", "a photo of mytoken riding (mytoken:1.2)",
                 "a photo of mytoken riding a cat", "a photo of dog riding (mytoken:1.2)"], embeddings=embeddings)
    # The embedding takes part: the same prompt without it differs at the steps that name it.
    without = encode(sd1, "a photo of [mytoken:dog:2] riding a bicycle")
    with_it = encode(sd1, "a photo of [mytoken:dog:2] riding a bicycle", embeddings=embeddings)
    assert max_diff(without.at_step(0, 4).embeds, with_it.at_step(0, 4).embeds) > FAR * ATOL
    assert torch.equal(without.at_step(3, 4).embeds, with_it.at_step(3, 4).embeds)
    weight = sd1.text_encoders["text_encoder"].get_input_embeddings().weight
    assert (len(sd1.tokenizers["tokenizer"]), weight.shape) == before[:2] and torch.equal(weight, before[2])


def test_sdxl_variants_carry_their_pooled_embedding(model_files):
    ck = load_checkpoint(model_files["sdxl-base"], dtype=torch.float32)
    cond = check_steps(ck, "a photo of a [cat:dog:0.5]", 4, expand(("a photo of a cat", 3), ("a photo of a dog", 1)),
                       clip_skip=2)
    assert max_diff(cond.at_step(0, 4).pooled, cond.at_step(3, 4).pooled) > FAR * ATOL


def test_the_plain_path_is_unchanged(sd1):
    for prompt in ("a photo of a cat riding a bicycle", "a [cat] photo", "a | b [cat:dog:2]"):
        cond = encode(sd1, prompt)
        assert type(cond) is Conditioning and not cond.is_scheduled and cond.schedule is None and not cond.variants
        assert all(cond.at_step(i, 10) is cond for i in range(10))
    # One distinct text (the `from` side is never reached) is a plain conditioning of that text.
    single = encode(sd1, "a [cat:dog:0] photo")
    assert not single.is_scheduled and single.text == "a [cat:dog:0] photo"
    assert torch.equal(single.embeds, encode(sd1, "a dog photo").embeds)
    # A scheduled conditioning's own embeds are its first step at 20 steps.
    scheduled = encode(sd1, "a [cat:dog:0.5] photo")
    assert torch.equal(scheduled.embeds, encode(sd1, "a cat photo").embeds)


def test_too_many_variants_is_refused_naming_the_input(sd1):
    prompt = " ".join(f"[a{i}:b{i}:{i + 1}]" for i in range(7))  # 2^7 = 128 prompts
    with pytest.raises(TooManyPromptVariants, match="more than 64 different prompts"):
        encode(sd1, prompt)
    three = "[a:b:1] [c:d:2] [e:f:3]"
    assert len(encode(sd1, three, max_variants=8).variants) == 8
    with pytest.raises(TooManyPromptVariants, match="more than 7 different prompts"):
        encode(sd1, three, max_variants=7)

    from nodes.conditioning import clip_text_encode

    models = SimpleNamespace(checkpoint=lambda path: sd1, use=lambda *modules: nullcontext(),
                             folders=SimpleNamespace(list=lambda kind: []))
    clip = ClipHandle(checkpoint=Path("tiny-sd1.safetensors"), family="sd1")
    with pytest.raises(NodeError, match=r"^text: prompt editing \(\[from:to:when\], \[a\|b\]\) makes more than 64"):
        clip_text_encode.run(SimpleNamespace(models=models), clip=clip, text=prompt)
    out = clip_text_encode.run(SimpleNamespace(models=models), clip=clip, text="a [cat|dog]")["CONDITIONING"]
    assert out.is_scheduled and out.text == "a [cat|dog]"
