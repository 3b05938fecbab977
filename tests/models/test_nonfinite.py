"""NaN/inf and non-float weights are refused where they enter, naming the file (a LoRA, an embedding) or the step
(a checkpoint whose weights spread NaN to the latents), instead of a black image saved as a success."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file, save_file

from nodegraph.models.offline import ensure_offline

ensure_offline()

from nodegraph.core.errors import NodeError  # noqa: E402
from nodegraph.models.conditioning import Conditioning  # noqa: E402
from nodegraph.models.devices import decode_latents  # noqa: E402
from nodegraph.models.embeddings import read_embedding  # noqa: E402
from nodegraph.models.errors import CorruptModelError  # noqa: E402
from nodegraph.models.loader import load_checkpoint  # noqa: E402
from nodegraph.models.lora import LoraSpec, applied_loras  # noqa: E402
from nodegraph.models.sampling import sample  # noqa: E402
from nodegraph.models.schedulers import build_scheduler  # noqa: E402
from nodegraph.models.synthetic import write_embedding, write_lora  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tiny(sd1_path):
    return load_checkpoint(sd1_path)


def _spoiled(path, tmp_path, value, *, dtype=None, name=None):
    """A copy of the safetensors file at `path` with one tensor set to `value` (or cast to `dtype`)."""
    state = load_file(path)
    key = name or sorted(k for k in state if state[k].dim() >= 2)[0]
    state[key] = state[key].to(dtype) if dtype is not None else torch.full_like(state[key], value)
    out = tmp_path / f"spoiled-{path.name}"
    save_file(state, str(out))
    return out


@pytest.mark.parametrize("fmt", ["kohya", "loha"])
@pytest.mark.parametrize(("value", "dtype", "words"), [(float("nan"), None, "NaN or infinite"),
                                                       (float("inf"), None, "NaN or infinite"),
                                                       (None, torch.bool, "bool values")])
def test_a_lora_with_nan_inf_or_bool_weights_is_refused_naming_it(tiny, tmp_path, fmt, value, dtype, words):
    lora = _spoiled(write_lora(tmp_path / f"{fmt}.safetensors", "sd1", fmt), tmp_path, value, dtype=dtype)
    with pytest.raises(CorruptModelError, match=words) as caught, \
            applied_loras([LoraSpec(lora)], tiny.family, tiny.unet, tiny.text_encoders):
        pass
    assert lora.name in str(caught.value)


def test_an_embedding_with_nan_vectors_is_refused_naming_it(tmp_path):
    path = write_embedding(tmp_path / "emb.safetensors", "safetensors")
    spoiled = _spoiled(path, tmp_path, float("nan"), name="emb_params")
    with pytest.raises(CorruptModelError, match="NaN or infinite") as caught:
        read_embedding(spoiled)
    assert spoiled.name in str(caught.value)


def test_nan_weights_in_the_checkpoint_stop_the_sampler_at_the_first_step(tiny):
    layer = tiny.unet.conv_in
    original = layer.weight.data.clone()
    gen = torch.Generator().manual_seed(0)
    conds = [Conditioning(torch.randn(1, 77, 768, generator=gen)) for _ in range(2)]
    try:
        layer.weight.data[0, 0, 0, 0] = float("nan")
        with pytest.raises(NodeError, match="NaN or infinite values after step 1 of 3"):
            sample(unet=tiny.unet, scheduler=build_scheduler(tiny.scheduler_config, "euler"), family=tiny.family,
                   positive=conds[0], negative=conds[1], seed=1, steps=3, cfg=7.0, width=64, height=64)
    finally:
        layer.weight.data.copy_(original)


def test_a_decoded_image_with_nan_is_an_error_not_a_black_image(tiny):
    with pytest.raises(NodeError, match="would be black"):
        decode_latents(tiny.vae, torch.full((1, 4, 8, 8), float("nan")))


def test_a_checkpoint_with_integer_weights_is_one_clear_refusal(sd1_path, tmp_path):
    """(It printed one error per layer: 210 KB.)"""
    spoiled = _spoiled(sd1_path, tmp_path, None, dtype=torch.int32,
                       name="model.diffusion_model.input_blocks.0.0.weight")
    with pytest.raises(CorruptModelError, match="not floating-point numbers") as caught:
        load_checkpoint(spoiled)
    assert len(str(caught.value)) < 300 and spoiled.name in str(caught.value)
