"""ControlNet files: identification and loading of every layout, refusals, and the sampler against diffusers' SDXL
ControlNet pipeline.

The files are tiny random-weight ControlNets matching the tiny UNets (``nodegraph.models.synthetic.controlnet``),
written in lllyasviel's original layout (``control_model.…``, ``.safetensors`` and pickled ``.pth``), as diffusers'
state dict in one file, and as a diffusers folder; every one must load to exactly the weights it was written from.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from nodegraph.models.offline import ensure_offline

ensure_offline()

import diffusers  # noqa: E402

from nodegraph.models.conditioning import Conditioning, Control  # noqa: E402
from nodegraph.models.configs import load_config  # noqa: E402
from nodegraph.models.controlnet import (  # noqa: E402
    ControlNetHandle,
    check_fits,
    controlnets_for,
    ldm_names_to_diffusers,
    load_controlnet,
)
from nodegraph.models.errors import IncompatibleModelError, IncompleteModelError, ModelError  # noqa: E402
from nodegraph.models.families import get_family  # noqa: E402
from nodegraph.models.identify import identify  # noqa: E402
from nodegraph.models.sampling import sample  # noqa: E402
from nodegraph.models.schedulers import build_scheduler  # noqa: E402
from nodegraph.models.synthetic import write_malicious_pickle  # noqa: E402
from nodegraph.models.synthetic.controlnet import build_controlnet, controlnet_state_dict, write_controlnet  # noqa: E402
from nodegraph.models.synthetic.tiny import build_vae, unet_config  # noqa: E402

pytestmark = [pytest.mark.usefixtures("one_thread"),
              pytest.mark.filterwarnings("ignore:__array:DeprecationWarning"),
              pytest.mark.filterwarnings("ignore::FutureWarning")]

#: key → (file or folder name, family, layout, seed, expected (family, format) from identify)
FILES = {
    "sd1-ldm": ("cn-sd1.safetensors", "sd1", "ldm", 1, ("sd1", "ldm")),
    "sd1-ldm-pth": ("control_sd15_tiny.pth", "sd1", "ldm", 1, ("sd1", "ldm")),
    "sd1-diffusers": ("cn-sd1-diffusers.safetensors", "sd1", "diffusers", 1, ("sd1", "diffusers")),
    "sd1-folder": ("cn-sd1-folder", "sd1", "folder", 1, ("sd1", "diffusers")),
    "sd2-ldm": ("cn-sd21.safetensors", "sd2", "ldm", 2, ("sd2", "ldm")),
    "sdxl-diffusers": ("cn-sdxl.safetensors", "sdxl-base", "diffusers", 3, ("sdxl", "diffusers")),
    "sdxl-ldm": ("cn-sdxl-ldm.safetensors", "sdxl-base", "ldm", 3, ("sdxl", "ldm")),
}


@pytest.fixture(scope="module")
def built():
    """The source ControlNetModel of each (family, seed)."""
    return {(family, seed): build_controlnet(family, seed) for _, family, _, seed, _ in FILES.values()}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("controlnet")
    return {key: write_controlnet(folder / name, family, layout, seed=seed)
            for key, (name, family, layout, seed, _) in FILES.items()}


@pytest.mark.parametrize("key", list(FILES))
def test_every_layout_is_identified_and_loads_exactly_its_weights(key, files, built):
    _, family, _, seed, (base, fmt) = FILES[key]
    info = identify(files[key])
    assert (info.kind, info.family, info.format, info.unsupported) == ("controlnet", base, fmt, None)
    loaded = load_controlnet(files[key])
    source = built[(family, seed)]
    expected, state = source.state_dict(), loaded.state_dict()
    assert set(state) == set(expected)
    assert all(torch.equal(state[name], expected[name]) for name in expected)
    for field in ("block_out_channels", "down_block_types", "cross_attention_dim", "attention_head_dim",
                  "use_linear_projection", "addition_embed_type", "projection_class_embeddings_input_dim",
                  "conditioning_embedding_out_channels", "mid_block_type", "in_channels", "conditioning_channels"):
        assert _listed(loaded.config[field]) == _listed(source.config[field]), field
    assert _depths(loaded.config) == _depths(source.config)


def _listed(value):
    return list(value) if isinstance(value, (list, tuple)) else value


def _depths(config):
    """Transformer depths per level, as a list (configs may hold one number for all levels)."""
    depths = config.transformer_layers_per_block
    return list(depths) if isinstance(depths, (list, tuple)) else [depths] * len(config.down_block_types)


def test_ldm_names_are_what_diffusers_converter_reads():
    state = controlnet_state_dict("sd1", "ldm", seed=1)
    for name in ("control_model.input_hint_block.0.weight", "control_model.input_hint_block.14.bias",
                 "control_model.zero_convs.11.0.weight", "control_model.middle_block_out.0.weight",
                 "control_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight",
                 "control_model.input_blocks.3.0.op.weight", "control_model.time_embed.0.weight"):
        assert name in state, name
    mapping = ldm_names_to_diffusers(name.removeprefix("control_model.") for name in state)
    assert set(mapping) == set(build_controlnet("sd1", 1).state_dict())
    assert set(mapping.values()) == {name.removeprefix("control_model.") for name in state}


def test_a_controlnet_inside_a_whole_checkpoint_or_misfiled_is_still_a_controlnet(tmp_path):
    # lllyasviel's first release shipped each ControlNet inside a whole SD 1.5 model (control_sd15_canny.pth).
    state = controlnet_state_dict("sd1", "ldm", seed=1)
    state["model.diffusion_model.input_blocks.0.0.weight"] = torch.zeros(32, 4, 3, 3)
    state["first_stage_model.encoder.conv_in.weight"] = torch.zeros(32, 3, 3, 3)
    path = tmp_path / "checkpoints" / "control_sd15_canny.safetensors"
    path.parent.mkdir()
    save_file(state, str(path))
    info = identify(path)
    assert (info.kind, info.family, info.format) == ("controlnet", "sd1", "ldm")
    assert any("only control_model" in note for note in info.notes)
    loaded = load_controlnet(path)
    assert torch.equal(loaded.conv_in.weight, build_controlnet("sd1", 1).conv_in.weight)


def test_missing_and_stray_tensors_are_errors_naming_the_file(tmp_path):
    state = controlnet_state_dict("sd1", "ldm", seed=1)
    missing = {k: v for k, v in state.items() if not k.startswith("control_model.zero_convs.3.")}
    save_file(missing, str(tmp_path / "missing.safetensors"))
    with pytest.raises(IncompleteModelError, match=r"missing\.safetensors: not a complete ControlNet file: 2 "
                                                   r"ControlNet tensors missing \(controlnet_down_blocks\.3"):
        load_controlnet(tmp_path / "missing.safetensors")
    stray = {**state, "control_model.zero_convs.99.0.weight": torch.zeros(1)}
    save_file(stray, str(tmp_path / "stray.safetensors"))
    with pytest.raises(IncompleteModelError, match=r"stray\.safetensors: .*fit no ControlNet part "
                                                   r"\(zero_convs\.99\.0\.weight\)"):
        load_controlnet(tmp_path / "stray.safetensors")
    with pytest.raises(ModelError, match="is a lora, not a ControlNet"):
        save_file({"lora_unet_x.lora_down.weight": torch.zeros(4, 8), "lora_unet_x.lora_up.weight": torch.zeros(8, 4)},
                  str(tmp_path / "lora.safetensors"))
        load_controlnet(tmp_path / "lora.safetensors")


def test_a_malicious_pth_is_refused_without_running(tmp_path):
    marker = tmp_path / "RAN"
    path = write_malicious_pickle(tmp_path / "control_evil.pth", marker)
    with pytest.raises(ModelError, match="control_evil.pth"):
        load_controlnet(path)
    assert not marker.exists()


def test_control_lora_and_union_models_are_recognised_but_refused(tmp_path):
    save_file({"lora_controlnet": torch.zeros(1), "input_hint_block.0.weight": torch.zeros(16, 3, 3, 3)},
              str(tmp_path / "control-lora-canny-rank128.safetensors"))
    union = dict(controlnet_state_dict("sdxl-base", "diffusers", seed=3))
    union["task_embedding"] = torch.zeros(8, 64)
    save_file(union, str(tmp_path / "controlnet-union-sdxl.safetensors"))
    for name, what in (("control-lora-canny-rank128.safetensors", "Control-LoRA"),
                       ("controlnet-union-sdxl.safetensors", "ControlNet Union")):
        info = identify(tmp_path / name)
        assert info.kind == "controlnet" and what in info.unsupported
        with pytest.raises(ModelError, match=f"{name}: a {what}"):
            load_controlnet(tmp_path / name)


def test_a_controlnet_for_another_model_line_is_refused(files, built):
    sdxl = ControlNetHandle(files["sdxl-diffusers"], "cn-sdxl.safetensors", "sdxl", 2048)
    conditioning = Conditioning(torch.zeros(1, 77, 768), controls=(Control(sdxl, torch.zeros(1, 8, 8, 3)),))

    class Models:
        def controlnet(self, path):
            raise AssertionError("loaded before the family check")

    with pytest.raises(IncompatibleModelError, match=r"cn-sdxl\.safetensors: is a ControlNet for SDXL models and "
                                                     r"cannot be used with the SD 1\.x model"):
        controlnets_for(Models(), get_family("sd1"), conditioning, conditioning)
    sd1_unet = diffusers.UNet2DConditionModel.from_config(unet_config("sd1"))
    with pytest.raises(IncompatibleModelError, match="for SDXL models and cannot be used with the SD 1.x model"):
        check_fits(built[("sdxl-base", 3)], sd1_unet, get_family("sd1"), files["sdxl-diffusers"])


def test_inspect_and_models_show_controlnets(files, tmp_path, capsys):
    from nodegraph.cli import main

    assert main(["inspect", str(files["sd1-ldm-pth"]), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert (data["kind"], data["family"], data["format"]) == ("controlnet", "sd1", "ldm")
    root = tmp_path / "ComfyUI"
    (root / "models" / "controlnet").mkdir(parents=True)
    (root / "models" / "controlnet" / "cn-sdxl.safetensors").write_bytes(files["sdxl-diffusers"].read_bytes())
    assert main(["models", "--models-dir", str(root), "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)["controlnet"]["models"]
    assert [(m["name"], m["kind"], m["family"]) for m in listed] == [("cn-sdxl.safetensors", "controlnet", "sdxl")]


# --- the sampler ----------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def sdxl():
    """A tiny SDXL UNet and VAE, fixed prompt embeddings and a control image."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        unet = diffusers.UNet2DConditionModel.from_config(unet_config("sdxl-base")).eval().requires_grad_(False)
    gen = torch.Generator().manual_seed(0)
    return {"unet": unet, "vae": build_vae("sdxl-base"),
            "pos": torch.randn(1, 77, 2048, generator=gen), "neg": torch.randn(1, 77, 2048, generator=gen),
            "pooled_pos": torch.randn(1, 1280, generator=gen), "pooled_neg": torch.randn(1, 1280, generator=gen),
            "image": torch.rand(1, 64, 64, 3, generator=gen), "other_image": torch.rand(1, 64, 64, 3, generator=gen)}


def _sample(sdxl, controlnet, positive_controls=(), negative_controls=(), cfg=5.0, seed=3):
    scheduler = build_scheduler(load_config("sdxl-base", "scheduler"), "euler", "normal")
    positive = Conditioning(sdxl["pos"], sdxl["pooled_pos"], controls=tuple(positive_controls))
    negative = Conditioning(sdxl["neg"], sdxl["pooled_neg"], controls=tuple(negative_controls))
    return sample(unet=sdxl["unet"], scheduler=scheduler, family=get_family("sdxl-base"), positive=positive,
                  negative=negative, seed=seed, steps=3, cfg=cfg, width=64, height=64,
                  controlnets={Path("cn-sdxl"): controlnet})


def test_sdxl_controlnet_sampling_equals_the_sdxl_controlnet_pipeline(sdxl, built):
    controlnet = built[("sdxl-base", 3)]
    handle = ControlNetHandle(Path("cn-sdxl"), "cn-sdxl", "sdxl", 2048)
    pipe = diffusers.StableDiffusionXLControlNetPipeline(
        vae=sdxl["vae"], text_encoder=None, text_encoder_2=None, tokenizer=None, tokenizer_2=None, unet=sdxl["unet"],
        controlnet=controlnet, scheduler=build_scheduler(load_config("sdxl-base", "scheduler"), "euler", "normal"),
        add_watermarker=False)
    pipe.set_progress_bar_config(disable=True)

    def reference(cfg=5.0, **kwargs):
        with torch.no_grad():
            return pipe(prompt_embeds=sdxl["pos"], negative_prompt_embeds=sdxl["neg"],
                        pooled_prompt_embeds=sdxl["pooled_pos"], negative_pooled_prompt_embeds=sdxl["pooled_neg"],
                        image=sdxl["image"].movedim(-1, 1), height=64, width=64, num_inference_steps=3,
                        guidance_scale=cfg, generator=torch.Generator("cpu").manual_seed(3), output_type="latent",
                        **kwargs).images

    control = Control(handle, sdxl["image"], 0.7, 0.0, 1.0)
    mine = _sample(sdxl, controlnet, [control], [control])
    ref = reference(controlnet_conditioning_scale=0.7)
    assert float((mine - ref).abs().max()) <= 1e-5
    # Without guidance only the positive conditioning's ControlNets run, on the single batch.
    no_cfg = _sample(sdxl, controlnet, [control], [], cfg=1.0)
    assert float((no_cfg - reference(cfg=1.0, controlnet_conditioning_scale=0.7)).abs().max()) <= 1e-5
    late = _sample(sdxl, controlnet, [Control(handle, sdxl["image"], 0.7, 0.4, 1.0)],
                   [Control(handle, sdxl["image"], 0.7, 0.4, 1.0)])
    assert float((late - reference(controlnet_conditioning_scale=0.7, control_guidance_start=0.4)).abs().max()) \
        <= 1e-5

    plain = _sample(sdxl, controlnet)
    zero = Control(handle, sdxl["image"], 0.0, 0.0, 1.0)
    never = Control(handle, sdxl["image"], 1.0, 0.0, 0.0)
    assert torch.equal(_sample(sdxl, controlnet, [zero], [zero]), plain)
    assert torch.equal(_sample(sdxl, controlnet, [never], [never]), plain)
    other = Control(handle, sdxl["other_image"], 0.7, 0.0, 1.0)
    assert float((_sample(sdxl, controlnet, [other], [other]) - mine).abs().mean()) > 1e-3
    assert float((plain - mine).abs().mean()) > 1e-3
    # Different ControlNets on the two sides (ComfyUI's old Apply on the positive prompt only, say): each side
    # runs its own, still in one guidance batch.
    positive_only = _sample(sdxl, controlnet, [control], [])
    assert torch.isfinite(positive_only).all()
    assert float((positive_only - mine).abs().mean()) > 1e-3 and float((positive_only - plain).abs().mean()) > 1e-3
