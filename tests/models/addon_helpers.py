"""Helpers shared by the add-on tests (LoRA, embeddings, hypernetworks): comparisons against diffusers with a
tolerance and a check that the comparison can fail, model outputs on fixed inputs, and state snapshots."""

from __future__ import annotations

import torch

from nodegraph.models.offline import ensure_offline

ensure_offline()

from peft.tuners.tuners_utils import BaseTunerLayer  # noqa: E402

from nodegraph.models.loader import load_checkpoint  # noqa: E402
from tests.reference import reference_pipeline  # noqa: E402

ATOL = 1e-5
#: A changed strength, embedding or hypernetwork must move outputs by at least this many tolerances.
FAR = 100
PROMPT = "a photo of mytoken riding a bicycle"


def report(what, value):
    """Print a measured difference (visible with -s) and return it."""
    print(f"\n[max |diff|] {what}: {value:.3g}")
    return value


def max_diff(a, b):
    """The largest absolute difference between two tensors, in float64."""
    return (a.double() - b.double()).abs().max().item()


def assert_matches(what, ours, reference, moved):
    """`ours` equals `reference` within ATOL while `moved` (the reference at another strength, embedding, …) is far
    from it: the comparison can tell the difference it is meant to catch."""
    diff = report(what, max_diff(ours, reference))
    far = report(f"{what} (changed input)", max_diff(ours, moved))
    assert diff <= ATOL, f"{what}: differs from the reference by {diff}"
    assert far > FAR * ATOL, f"{what}: a changed input moves the output by only {far}"


def unet_out(unet, inputs):
    """The UNet's output on the fixed `inputs` (SDXL's added conditions when the UNet takes them)."""
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
    """:func:`text_out` of each text encoder of a loaded checkpoint, by encoder name."""
    return {name: text_out(ck.tokenizers[name.replace("text_encoder", "tokenizer")], encoder, prompt)
            for name, encoder in ck.text_encoders.items()}





def independent_pipeline(path):
    """diffusers' pipeline on a second, independent copy of the checkpoint."""
    return reference_pipeline(load_checkpoint(path))


def pipeline_text_outs(pipe):
    """:func:`text_out` of each text encoder of a diffusers pipeline, by encoder name."""
    pairs = {"text_encoder": ("tokenizer", "text_encoder"), "text_encoder_2": ("tokenizer_2", "text_encoder_2")}
    return {name: text_out(getattr(pipe, tok), getattr(pipe, enc)) for name, (tok, enc) in pairs.items()
            if getattr(pipe, enc, None) is not None}


def state_copy(module):
    """A detached copy of a module's weights."""
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def assert_same_state(module, original, what):
    """The module has exactly the weights of `original` (same keys, equal tensors)."""
    state = module.state_dict()
    assert set(state) == set(original), f"{what}: keys differ: {sorted(set(state) ^ set(original))[:5]}"
    different = [k for k, v in original.items() if not torch.equal(state[k], v)]
    assert not different, f"{what}: {len(different)} tensors changed, e.g. {different[:3]}"


def has_peft_layers(module):
    """True while PEFT adapter layers are injected into the module."""
    return any(isinstance(m, BaseTunerLayer) for m in module.modules())
