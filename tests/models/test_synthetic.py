"""The tiny synthetic model files: exact round trips through diffusers' own converters, family detection, safe
pickles, and add-ons that diffusers loads offline."""

from __future__ import annotations

import pickle
import re

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from nodegraph.models.offline import ensure_offline

ensure_offline()

from diffusers.loaders import single_file_utils as sfu  # noqa: E402

from nodegraph.models import synthetic  # noqa: E402
from nodegraph.models.synthetic.pickles import numpy_scalar_function  # noqa: E402

DIFFUSERS_MODEL_TYPE = {"sd1": "v1", "sd1-inpaint": "inpainting", "sd2": "v2", "sd2-v": "v2",
                        "sd2-inpaint": "inpainting_v2", "sdxl-base": "xl_base", "sdxl-refiner": "xl_refiner",
                        "sdxl-inpaint": "xl_inpaint"}


def _assert_identical(converted, reference, what, allowed_extra=()):
    missing = sorted(set(reference) - set(converted))
    unexpected = sorted(k for k in set(converted) - set(reference) if not any(re.fullmatch(p, k)
                                                                                 for p in allowed_extra))
    assert not missing, f"{what}: {len(missing)} missing, e.g. {missing[:3]}"
    assert not unexpected, f"{what}: unexpected {unexpected[:5]}"
    different = [k for k, v in reference.items() if v.dtype != converted[k].dtype or not torch.equal(v, converted[k])]
    assert not different, f"{what}: {len(different)} tensors differ, e.g. {different[:3]}"


def _storage(tensor):
    return tensor.untyped_storage().data_ptr()


def _assert_real_layout(family, shapes, state):
    """Spot checks of names and shapes that identification by real tools relies on."""
    unet = "model.diffusion_model."
    assert shapes[unet + "input_blocks.0.0.weight"][1] == (9 if family.endswith("inpaint") else 4)
    assert shapes["first_stage_model.decoder.mid.attn_1.q.weight"] == (64, 64, 1, 1)
    if family.startswith("sd1"):
        assert shapes[unet + "input_blocks.2.1.transformer_blocks.0.attn2.to_k.weight"][1] == 768
        assert len(shapes[unet + "input_blocks.1.1.proj_in.weight"]) == 4  # SD 1.x: 1x1 conv projections
        assert shapes["cond_stage_model.transformer.text_model.embeddings.token_embedding.weight"] == (49408, 768)
        assert state["cond_stage_model.transformer.text_model.embeddings.position_ids"].dtype == torch.int64
        assert shapes["alphas_cumprod"] == (1000,)
    elif family.startswith("sd2"):
        assert shapes[unet + "input_blocks.2.1.transformer_blocks.0.attn2.to_k.weight"][1] == 1024
        assert shapes["cond_stage_model.model.transformer.resblocks.0.attn.in_proj_weight"] == (3072, 1024)
        assert "cond_stage_model.model.transformer.resblocks.3.ln_1.weight" in shapes  # the unused extra block
    elif family == "sdxl-refiner":
        assert shapes[unet + "label_emb.0.0.weight"][1] == 2560
        assert shapes["conditioner.embedders.0.model.transformer.resblocks.9.attn.in_proj_weight"] == (3840, 1280)
    else:
        assert shapes[unet + "label_emb.0.0.weight"][1] == 2816
        assert shapes[unet + "input_blocks.4.1.transformer_blocks.1.attn2.to_k.weight"] == (128, 2048)
        assert shapes["conditioner.embedders.0.transformer.text_model.embeddings.token_embedding.weight"] == (
            49408, 768)
        assert shapes["conditioner.embedders.1.model.token_embedding.weight"] == (49408, 1280)
        assert shapes["conditioner.embedders.1.model.transformer.resblocks.9.mlp.c_proj.bias"] == (1280,)
        assert shapes["conditioner.embedders.1.model.text_projection"] == (1280, 1280)


@pytest.mark.parametrize("family", list(DIFFUSERS_MODEL_TYPE))
def test_checkpoint_converts_back_to_the_source_models_exactly(tmp_path, family):
    components = synthetic.build_components(family, seed=3)
    path = synthetic.write_checkpoint(tmp_path / f"{family}.safetensors", family, seed=3)
    state = load_file(str(path))
    path.unlink()
    assert sfu.infer_diffusers_model_type(state) == DIFFUSERS_MODEL_TYPE[family]
    _assert_real_layout(family, {k: tuple(v.shape) for k, v in state.items()}, state)

    outputs = []
    unet, vae = components["unet"], components["vae"]
    outputs.append(sfu.convert_ldm_unet_checkpoint(state, unet.config))
    _assert_identical(outputs[-1], unet.state_dict(), "UNet")
    outputs.append(sfu.convert_ldm_vae_checkpoint(state, vae.config))
    _assert_identical(outputs[-1], vae.state_dict(), "VAE")
    for component, (prefix, openclip) in synthetic.text_encoder_prefixes(family).items():
        encoder = components[component]
        if openclip:
            converted = sfu.convert_open_clip_checkpoint(encoder, state, prefix=prefix)
            extra = [rf"encoder\.layers\.{encoder.config.num_hidden_layers}\..*"]  # SD 2.x's unused last block
        else:
            converted = sfu.convert_ldm_clip_checkpoint(state)
            extra = [r"embeddings\.position_ids"]
        if not hasattr(encoder, "text_model"):  # transformers 5 flattened CLIPTextModel (see FORMATS.md)
            converted = {k.removeprefix("text_model."): v for k, v in converted.items()}
        _assert_identical(converted, encoder.state_dict(), component, extra)
        outputs.append(converted)

    # Every tensor of the file reaches a component, or is one of the documented extras real files carry.
    used = {_storage(t) for output in outputs for t in output.values()}
    fused = re.compile(r".*\.model\.(transformer\.resblocks\.\d+\.attn\.in_proj_(weight|bias)|text_projection)")
    leftover = sorted(k for k, t in state.items() if _storage(t) not in used and not fused.fullmatch(k))
    extras = synthetic.documented_extras(family)
    assert [k for k in leftover if not any(re.fullmatch(p, k) for p in extras)] == []
    assert all(any(re.fullmatch(p, k) for k in state) for p in extras)


def test_ckpt_loads_weights_only_with_just_the_stand_in_and_numpy_globals(tmp_path):
    path = synthetic.write_checkpoint(tmp_path / "tiny.ckpt", "sd1", dtype=torch.float16)
    found = set(torch.serialization.get_unsafe_globals_in_checkpoint(str(path)))
    assert found == {synthetic.LIGHTNING_CALLBACK, "numpy.core.multiarray.scalar", "numpy.dtype"}
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path, weights_only=True)
    allowed = [(synthetic.LightningModelCheckpoint, synthetic.LIGHTNING_CALLBACK),
               (numpy_scalar_function(), "numpy.core.multiarray.scalar"), np.dtype, type(np.dtype("float64"))]
    with torch.serialization.safe_globals(allowed):
        data = torch.load(path, weights_only=True)
    assert data["global_step"] == 840000 and isinstance(data["epoch"], int)
    (callback, callback_state), = data["callbacks"].items()
    assert callback is synthetic.LightningModelCheckpoint
    assert isinstance(callback_state["best_model_score"], np.floating)
    expected = synthetic.ldm_state_dict("sd1")
    assert set(data["state_dict"]) == set(expected)
    for key, value in expected.items():
        stored = data["state_dict"][key]
        assert stored.dtype == (torch.float16 if value.is_floating_point() else value.dtype)
        assert torch.equal(stored, value.to(stored.dtype)), key
    path.unlink()  # 115 MB; pytest keeps old temporary folders


def test_without_vae_and_in_float16(tmp_path):
    path = synthetic.write_checkpoint(tmp_path / "novae.safetensors", "sd1", dtype=torch.float16, include_vae=False)
    state = load_file(str(path))
    path.unlink()
    assert not any(k.startswith("first_stage_model.") for k in state)
    assert {v.dtype for v in state.values()} == {torch.float16, torch.int64, torch.int32}


def test_malicious_pickle_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "PWNED"
    path = synthetic.write_malicious_pickle(tmp_path / "evil.ckpt", marker)
    assert "builtins.exec" in torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
    with pytest.raises(pickle.UnpicklingError, match="exec"):
        torch.load(path, weights_only=True)
    with torch.serialization.safe_globals(synthetic.ckpt_safe_globals()), \
            pytest.raises(pickle.UnpicklingError, match="exec"):
        torch.load(path, weights_only=True)
    assert not marker.exists()


def test_standalone_vae_has_bare_keys_and_converts_back(tmp_path):
    path = synthetic.write_vae(tmp_path / "vae.safetensors", seed=5)
    state = load_file(str(path))
    assert "encoder.conv_in.weight" in state and "post_quant_conv.weight" in state
    assert any(k.startswith("loss.") for k in state)
    assert not any(k.startswith("first_stage_model.") for k in state)
    vae = synthetic.build_vae(seed=5)
    _assert_identical(sfu.convert_ldm_vae_checkpoint(state, vae.config), vae.state_dict(), "VAE")


def test_kohya_lora_loads_offline_through_diffusers_and_changes_the_outputs(tmp_path):
    pytest.importorskip("peft")
    from diffusers import EulerDiscreteScheduler, StableDiffusionPipeline

    components = synthetic.build_components("sd1")
    pipe = StableDiffusionPipeline(vae=components["vae"], text_encoder=components["text_encoder"], tokenizer=None,
                                   unet=components["unet"], scheduler=EulerDiscreteScheduler(steps_offset=1),
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    gen = torch.Generator().manual_seed(0)
    latents, context = torch.randn(1, 4, 8, 8, generator=gen), torch.randn(1, 77, 768, generator=gen)
    ids = torch.tensor([[49406, 320, 1125, 539, 320, 2368, 49407] + [49407] * 70])

    def outputs():
        with torch.no_grad():
            return pipe.unet(latents, 10, encoder_hidden_states=context).sample, pipe.text_encoder(ids)[0]

    before = outputs()
    pipe.load_lora_weights(str(synthetic.write_lora(tmp_path / "lora.safetensors", "sd1", "kohya")),
                           adapter_name="tiny")
    after = outputs()
    for old, new in zip(before, after, strict=True):
        assert ((new - old).norm() / old.norm()).item() > 0.05
    pipe.unload_lora_weights()
    assert all(torch.equal(old, new) for old, new in zip(before, outputs(), strict=True))


def test_lora_key_layouts():
    kohya = synthetic.lora_state_dict("sd1", "kohya")
    assert "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q.lora_down.weight" in kohya
    assert "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_out_0.alpha" in kohya
    assert "lora_te_text_model_encoder_layers_0_mlp_fc1.lora_up.weight" in kohya
    assert all(v.abs().sum() > 0 for k, v in kohya.items() if k.endswith(".weight"))
    assert kohya["lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight"].shape == (4, 32, 1, 1)
    sdxl = synthetic.lora_state_dict("sdxl-base", "kohya")
    assert "lora_unet_input_blocks_4_1_transformer_blocks_0_attn2_to_k.lora_down.weight" in sdxl
    assert "lora_unet_middle_block_1_proj_in.lora_up.weight" in sdxl
    assert any(k.startswith("lora_te1_text_model_") for k in sdxl) and any(k.startswith("lora_te2_") for k in sdxl)
    assert not any("down_blocks" in k for k in sdxl)
    locon = synthetic.lora_state_dict("sd1", "locon")
    assert locon["lora_unet_down_blocks_0_resnets_0_conv1.lora_down.weight"].shape == (4, 32, 3, 3)
    peft = synthetic.lora_state_dict("sd1", "peft")
    assert "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.lora_A.weight" in peft
    assert "text_encoder.text_model.encoder.layers.0.self_attn.q_proj.lora_B.weight" in peft
    assert any(k.endswith(".hada_w1_a") for k in synthetic.lora_state_dict("sd1", "loha"))
    assert any(k.endswith(".lokr_w1") for k in synthetic.lora_state_dict("sd1", "lokr"))


def test_fixture_set_layout_embeddings_and_hypernetwork(tmp_path):
    keys = [k for k in synthetic.FIXTURE_KEYS if k not in synthetic.CHECKPOINTS]
    paths = synthetic.write_fixture_set(tmp_path, only=keys)
    assert set(paths) == set(keys) and all(p.is_file() for p in paths.values())
    assert {p.parent.name for p in paths.values()} == {"checkpoints", "loras", "vae", "embeddings", "hypernetworks"}

    a1111 = torch.load(paths["emb-a1111-pt"], weights_only=True)
    assert a1111["string_to_token"] == {"*": 265} and a1111["string_to_param"]["*"].shape == (2, 768)
    assert load_file(str(paths["emb-safetensors"]))["emb_params"].shape == (3, 768)
    assert {k: tuple(v.shape) for k, v in load_file(str(paths["emb-diffusers"])).items()} == {
        "<tiny-emb-diffusers>": (768,)}
    sdxl = load_file(str(paths["emb-sdxl"]))
    assert sdxl["clip_l"].shape == (2, 768) and sdxl["clip_g"].shape == (2, 1280)

    hyper = torch.load(paths["hypernetwork"], weights_only=True)
    assert hyper["layer_structure"] == [1, 2, 1] and hyper["activation_func"] == "linear"
    for width in (768, 320, 640, 1280):
        key_module, value_module = hyper[width]
        assert key_module["linear.0.weight"].shape == (2 * width, width)
        assert value_module["linear.1.weight"].shape == (width, 2 * width)
    assert not (tmp_path / synthetic.MALICIOUS_MARKER).exists()
    with pytest.raises(ValueError, match="unknown fixture keys"):
        synthetic.write_fixture_set(tmp_path, only=["nope"])
