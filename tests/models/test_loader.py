"""Loading single files into components through the real code: exact weights, strict completeness, VAE files."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from nodegraph.models.errors import IncompleteModelError, ModelError
from nodegraph.models.loader import load_checkpoint, load_vae_file
from nodegraph.models.synthetic import CHECKPOINTS, build_components, build_vae, ldm_state_dict


def assert_same_weights(module, source, dtype=torch.float16):
    loaded, expected = module.state_dict(), source.state_dict()
    assert set(loaded) == set(expected)
    for name, tensor in expected.items():
        assert torch.equal(loaded[name], tensor.to(dtype) if tensor.is_floating_point() else tensor), name


@pytest.mark.parametrize("key", [k for k in CHECKPOINTS if k != "sd1.ckpt"])
def test_every_family_loads_with_exactly_the_source_weights(model_files, key):
    _, family, seed = CHECKPOINTS[key]
    checkpoint = load_checkpoint(model_files[key])
    assert checkpoint.family.name == family
    source = build_components(family, seed)
    assert_same_weights(checkpoint.unet, source["unet"])
    assert_same_weights(checkpoint.vae, source["vae"])
    assert set(checkpoint.text_encoders) == set(checkpoint.family.text_encoders)
    for name, encoder in checkpoint.text_encoders.items():
        assert_same_weights(encoder, source[name])
        assert name.replace("text_encoder", "tokenizer") in checkpoint.tokenizers
    assert checkpoint.scheduler_config["_class_name"]
    assert not any(p.is_meta for p in checkpoint.unet.parameters())
    assert not any(b.is_meta for enc in checkpoint.text_encoders.values() for b in enc.buffers())


def test_ckpt_and_safetensors_load_the_same(model_files):
    from_ckpt = load_checkpoint(model_files["sd1.ckpt"])
    from_safetensors = load_checkpoint(model_files["sd1"])
    assert_same_weights(from_ckpt.unet, from_safetensors.unet)
    assert_same_weights(from_ckpt.text_encoders["text_encoder"], from_safetensors.text_encoders["text_encoder"])


def test_dtype_cast(model_files):
    checkpoint = load_checkpoint(model_files["sd1"], dtype=torch.float32)
    assert {p.dtype for p in checkpoint.unet.parameters()} == {torch.float32}


@pytest.fixture(scope="module")
def sd1_state():
    return ldm_state_dict("sd1", seed=0)


def write_variant(path, state, drop=lambda name: False):
    save_file({k: v.half().contiguous() for k, v in state.items() if not drop(k)}, path)
    return path


def test_missing_vae_tensors_are_counted_and_named(tmp_path, sd1_state):
    attention = [k for k in sd1_state if k.startswith("first_stage_model.decoder.mid.attn_1.")]
    path = write_variant(tmp_path / "broken.safetensors", sd1_state, lambda k: k in attention)
    with pytest.raises(IncompleteModelError, match=rf"not a complete SD 1.x checkpoint: {len(attention)} VAE tensors "
                                                   r"missing \(decoder\.mid_block"):
        load_checkpoint(path)


def test_missing_unet_and_text_encoder_tensors(tmp_path, sd1_state):
    dropped = [k for k in sd1_state if k.startswith("model.diffusion_model.middle_block.1.")]
    path = write_variant(tmp_path / "no-mid-attn.safetensors", sd1_state, lambda k: k in dropped)
    with pytest.raises(IncompleteModelError, match=r"SD 1.x checkpoint: \d+ UNet tensors missing"):
        load_checkpoint(path)
    path = write_variant(tmp_path / "no-clip.safetensors", sd1_state, lambda k: k.startswith("cond_stage_model."))
    with pytest.raises(IncompleteModelError, match="text encoder is missing"):
        load_checkpoint(path)
    layer = "cond_stage_model.transformer.text_model.encoder.layers.0.mlp.fc1.weight"
    path = write_variant(tmp_path / "holey-clip.safetensors", sd1_state, lambda k: k == layer)
    with pytest.raises(IncompleteModelError, match=r"SD 1.x checkpoint: 1 text encoder tensor missing \(encoder"):
        load_checkpoint(path)


def test_checkpoint_without_vae_loads_and_says_so(tmp_path, sd1_state):
    path = write_variant(tmp_path / "no-vae.safetensors", sd1_state, lambda k: k.startswith("first_stage_model."))
    checkpoint = load_checkpoint(path)
    assert checkpoint.vae is None
    assert any("VAE override" in note for note in checkpoint.info.notes)


def test_standalone_vae_file(model_files):
    vae = load_vae_file(model_files["vae"])
    assert_same_weights(vae, build_vae("sd1", seed=1))
    assert vae.config.scaling_factor == 0.18215


def test_wrong_kind_is_refused(model_files):
    with pytest.raises(ModelError, match="is a lora, not a checkpoint"):
        load_checkpoint(model_files["lora-sd1-kohya"])
    with pytest.raises(ModelError, match="not a VAE file"):
        load_vae_file(model_files["lora-sd1-kohya"])


def write_diffusers_folder(folder, family="sd1", seed=0):
    """A diffusers pipeline folder of the tiny model, saved with the libraries' own save_pretrained."""
    from nodegraph.models.synthetic import write_diffusers_config

    write_diffusers_config(folder, family)
    for name, module in build_components(family, seed).items():
        module.save_pretrained(folder / name)
    return folder


def test_diffusers_folder_loads_exactly(tmp_path):
    from nodegraph.models.identify import identify
    from nodegraph.models.loader import load_diffusers_folder

    folder = write_diffusers_folder(tmp_path / "tiny-sd1-diffusers")
    info = identify(folder)
    assert (info.kind, info.family) == ("diffusers", "sd1")
    checkpoint = load_diffusers_folder(folder)
    source = build_components("sd1", 0)
    assert_same_weights(checkpoint.unet, source["unet"], torch.float32)
    assert_same_weights(checkpoint.vae, source["vae"], torch.float32)
    assert_same_weights(checkpoint.text_encoders["text_encoder"], source["text_encoder"], torch.float32)
    assert checkpoint.tokenizers["tokenizer"]("a photo of a cat").input_ids == [49406, 320, 1125, 539, 320, 2368, 49407]


def test_diffusers_folder_with_missing_weights_is_refused(tmp_path):
    from safetensors.torch import load_file

    from nodegraph.models.loader import load_diffusers_folder

    folder = write_diffusers_folder(tmp_path / "broken")
    weights = folder / "text_encoder" / "model.safetensors"
    tensors = load_file(weights)
    dropped = [k for k in tensors if "layers.0.mlp" in k]
    save_file({k: v for k, v in tensors.items() if k not in dropped}, weights, metadata={"format": "pt"})
    with pytest.raises(IncompleteModelError, match=rf"{len(dropped)} text encoder tensors missing"):
        load_diffusers_folder(folder)
