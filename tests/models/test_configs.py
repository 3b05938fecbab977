"""The bundled model configs and CLIP tokenizer: real architectures, right schedulers, offline tokenizers.

Every model is built from its bundled config on the meta device (no memory, no weights) and its parameter count is
compared with the official model's. Nothing may touch the network: the session-wide conftest blocks sockets, and the
``_no_network_attempts`` fixture below fails any test that even tried.
"""

from __future__ import annotations

import gzip
import importlib.util
import json
import os
import socket
import zipfile
from pathlib import Path

import pytest

from nodegraph.models import configs
from nodegraph.models.families import FAMILIES

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")
transformers = pytest.importorskip("transformers")

ROOT = Path(__file__).resolve().parents[2]

CLIP_L = 123_060_480  # OpenAI CLIP ViT-L/14 text model (SD 1.x, SDXL text_encoder)
OPENCLIP_H = 340_387_840  # OpenCLIP ViT-H/14 text model, 23 of its 24 blocks (SD 2.x)
OPENCLIP_BIGG = 694_659_840  # OpenCLIP ViT-bigG/14 text model with projection (SDXL text_encoder_2)
VAE = 83_653_863  # the SD / SDXL KL autoencoder (same architecture, different weights)
INPAINT_EXTRA = 5 * 320 * 3 * 3  # conv_in gains 5 input channels (mask + masked-image latent)

UNET = {
    "sd1": 859_520_964,
    "sd1-inpaint": 859_520_964 + INPAINT_EXTRA,
    "sd2": 865_910_724,
    "sd2-v": 865_910_724,
    "sd2-inpaint": 865_910_724 + INPAINT_EXTRA,
    "sdxl-base": 2_567_463_684,
    "sdxl-refiner": 2_259_526_660,
    "sdxl-inpaint": 2_567_463_684 + INPAINT_EXTRA,
}

TEXT_ENCODERS = {
    "sd1": {"text_encoder": ("CLIPTextModel", CLIP_L)},
    "sd1-inpaint": {"text_encoder": ("CLIPTextModel", CLIP_L)},
    "sd2": {"text_encoder": ("CLIPTextModel", OPENCLIP_H)},
    "sd2-v": {"text_encoder": ("CLIPTextModel", OPENCLIP_H)},
    "sd2-inpaint": {"text_encoder": ("CLIPTextModel", OPENCLIP_H)},
    "sdxl-base": {
        "text_encoder": ("CLIPTextModel", CLIP_L),
        "text_encoder_2": ("CLIPTextModelWithProjection", OPENCLIP_BIGG),
    },
    "sdxl-refiner": {"text_encoder_2": ("CLIPTextModelWithProjection", OPENCLIP_BIGG)},
    "sdxl-inpaint": {
        "text_encoder": ("CLIPTextModel", CLIP_L),
        "text_encoder_2": ("CLIPTextModelWithProjection", OPENCLIP_BIGG),
    },
}

SCHEDULERS = {
    "sd1": ("PNDMScheduler", "epsilon"),
    "sd1-inpaint": ("DDIMScheduler", "epsilon"),
    "sd2": ("PNDMScheduler", "epsilon"),
    "sd2-v": ("DDIMScheduler", "v_prediction"),
    "sd2-inpaint": ("PNDMScheduler", "epsilon"),
    "sdxl-base": ("EulerDiscreteScheduler", "epsilon"),
    "sdxl-refiner": ("EulerDiscreteScheduler", "epsilon"),
    "sdxl-inpaint": ("EulerDiscreteScheduler", "epsilon"),
}

PIPELINES = {
    "sd1": "StableDiffusionPipeline",
    "sd1-inpaint": "StableDiffusionInpaintPipeline",
    "sd2": "StableDiffusionPipeline",
    "sd2-v": "StableDiffusionPipeline",
    "sd2-inpaint": "StableDiffusionInpaintPipeline",
    "sdxl-base": "StableDiffusionXLPipeline",
    "sdxl-refiner": "StableDiffusionXLImg2ImgPipeline",
    "sdxl-inpaint": "StableDiffusionXLInpaintPipeline",
}

#: (family, tokenizer folder) -> the pad token id
PAD_IDS = {
    ("sd1", "tokenizer"): 49407,
    ("sd1-inpaint", "tokenizer"): 49407,
    ("sd2", "tokenizer"): 0,
    ("sd2-v", "tokenizer"): 0,
    ("sd2-inpaint", "tokenizer"): 0,
    ("sdxl-base", "tokenizer"): 49407,
    ("sdxl-base", "tokenizer_2"): 0,
    ("sdxl-refiner", "tokenizer_2"): 0,
    ("sdxl-inpaint", "tokenizer"): 49407,
    ("sdxl-inpaint", "tokenizer_2"): 0,
}

CAT = [49406, 320, 1125, 539, 320, 2368, 49407]
ASTRONAUT = [49406, 320, 1125, 539, 550, 18376, 6765, 320, 4558, 525, 7496, 49407]


@pytest.fixture(autouse=True)
def _no_network_attempts(monkeypatch):
    """Record every connection or DNS lookup a test attempts (even one whose error was swallowed) and fail on it."""
    attempts: list[str] = []

    def recording(original, kind):
        def wrapper(*args, **kwargs):
            attempts.append(f"{kind}{args[1:3]!r}")
            return original(*args, **kwargs)

        return wrapper

    monkeypatch.setattr(socket.socket, "connect", recording(socket.socket.connect, "connect"))
    monkeypatch.setattr(socket.socket, "connect_ex", recording(socket.socket.connect_ex, "connect_ex"))
    monkeypatch.setattr(socket, "getaddrinfo", recording(socket.getaddrinfo, "getaddrinfo"))
    yield
    assert attempts == [], f"the test tried to reach the network: {attempts}"


def count(model) -> int:
    return sum(p.numel() for p in model.parameters())


def test_every_family_has_a_config_folder_and_nothing_else():
    folders = {p.name for p in configs.configs_root().iterdir() if p.is_dir()}
    assert folders == set(FAMILIES)
    assert set(UNET) == set(TEXT_ENCODERS) == set(SCHEDULERS) == set(PIPELINES) == set(FAMILIES)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_model_index_names_the_bundled_components(family):
    index = json.loads((configs.family_config_dir(family) / "model_index.json").read_text(encoding="utf-8"))
    assert index["_class_name"] == PIPELINES[family]
    assert "_diffusers_version" in index
    present = {name for name, value in index.items() if isinstance(value, list) and value[0] is not None}
    assert present == set(configs.components(family))
    encoders = tuple(name for name in ("text_encoder", "text_encoder_2") if name in present)
    assert encoders == FAMILIES[family].text_encoders
    assert index["scheduler"] == ["diffusers", SCHEDULERS[family][0]]
    assert all(index.get(name, [None])[0] is None for name in ("safety_checker", "feature_extractor"))


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_configs_are_clean(family):
    for path in sorted(configs.family_config_dir(family).rglob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        local = [key for key in data if key in ("_name_or_path", "name_or_path", "tokenizer_file", "torch_dtype")]
        assert local == [], f"{path}: machine-local or weight-specific keys {local}"
        if path.name == "model_index.json" or path.parent.name in ("unet", "vae", "scheduler"):
            assert "_class_name" in data and "_diffusers_version" in data, path


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_unet_builds_with_the_official_parameter_count(family):
    from diffusers import UNet2DConditionModel

    cfg = configs.load_config(family, "unet")
    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(cfg)
    assert count(unet) == UNET[family]
    assert unet.config.in_channels == (9 if FAMILIES[family].inpaint else 4)
    # cross-attention reads the text encoders' hidden states (SDXL: both, concatenated)
    widths = {"text_encoder": {"sd1": 768, "sd2": 1024, "sdxl": 768}[FAMILIES[family].base], "text_encoder_2": 1280}
    assert unet.config.cross_attention_dim == sum(widths[name] for name in FAMILIES[family].text_encoders)


def test_sd2_v_upcasts_attention_and_others_do_not():
    assert configs.load_config("sd2-v", "unet")["upcast_attention"] is True
    for family in sorted(set(FAMILIES) - {"sd2-v"}):
        assert not configs.load_config(family, "unet").get("upcast_attention"), family


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_vae_builds_with_its_scaling_factor(family):
    from diffusers import AutoencoderKL

    cfg = configs.load_config(family, "vae")
    assert cfg["scaling_factor"] == FAMILIES[family].vae_scaling_factor
    assert cfg.get("force_upcast", False) is (FAMILIES[family].base == "sdxl")
    with torch.device("meta"):
        vae = AutoencoderKL.from_config(cfg)
    assert count(vae) == VAE
    assert vae.config.scaling_factor == FAMILIES[family].vae_scaling_factor


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_text_encoders_build_with_transformers(family):
    from transformers import CLIPTextConfig

    for component, (class_name, params) in TEXT_ENCODERS[family].items():
        cfg = CLIPTextConfig.from_dict(configs.load_config(family, component))
        assert cfg.architectures == [class_name]
        assert cfg.vocab_size == 49408 and cfg.max_position_embeddings == 77
        with torch.device("meta"):
            model = getattr(transformers, class_name)(cfg)
        assert count(model) == params, component
        assert {p.dtype for p in model.parameters()} == {torch.float32}, component
        if class_name == "CLIPTextModelWithProjection":
            assert model.text_projection.out_features == cfg.projection_dim == 1280


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_scheduler_class_and_prediction_type(family):
    cfg = configs.load_config(family, "scheduler")
    class_name, prediction = SCHEDULERS[family]
    scheduler = getattr(diffusers, cfg["_class_name"]).from_config(cfg)
    assert type(scheduler).__name__ == class_name
    assert scheduler.config.prediction_type == prediction
    assert cfg["prediction_type"] == prediction  # written out, not left to a default
    assert (prediction == "v_prediction") is (FAMILIES[family].prediction == "v")
    assert scheduler.config.num_train_timesteps == 1000
    assert (scheduler.config.beta_start, scheduler.config.beta_end) == (0.00085, 0.012)
    assert scheduler.config.beta_schedule == "scaled_linear"


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_pipeline_assembles_from_the_bundled_folder(family):
    """The model_index.json suits its diffusers pipeline class: handed every component, nothing else is looked up."""
    folder = configs.family_config_dir(family)
    parts = {}
    with torch.device("meta"):
        parts["unet"] = diffusers.UNet2DConditionModel.from_config(configs.load_config(family, "unet"))
        parts["vae"] = diffusers.AutoencoderKL.from_config(configs.load_config(family, "vae"))
        for component, (class_name, _) in TEXT_ENCODERS[family].items():
            cfg = transformers.CLIPTextConfig.from_dict(configs.load_config(family, component))
            parts[component] = getattr(transformers, class_name)(cfg)
    scheduler_cfg = configs.load_config(family, "scheduler")
    parts["scheduler"] = getattr(diffusers, scheduler_cfg["_class_name"]).from_config(scheduler_cfg)
    for component in ("tokenizer", "tokenizer_2"):
        if (folder / component).is_dir():
            parts[component] = configs.load_tokenizer(family, component)

    pipe = getattr(diffusers, PIPELINES[family]).from_pretrained(folder, **parts)
    loaded = {name for name, value in pipe.components.items() if value is not None}
    assert loaded == set(parts)
    if FAMILIES[family].base == "sdxl":
        refiner = family == "sdxl-refiner"
        assert pipe.config.get("requires_aesthetics_score", False) is refiner
        assert pipe.config.get("force_zeros_for_empty_prompt") is not refiner


def test_load_config_errors_and_fresh_copies():
    with pytest.raises(ValueError, match="unknown model family"):
        configs.load_config("sd3", "unet")
    with pytest.raises(ValueError, match="has no component 'text_encoder'"):
        configs.load_config("sdxl-refiner", "text_encoder")
    first = configs.load_config("sd1", "unet")
    first["in_channels"] = 123
    assert configs.load_config("sd1", "unet")["in_channels"] == 4
    assert configs.load_config("sd1", "tokenizer")["model_max_length"] == 77


def test_configs_root_is_inside_the_resources_folder():
    from nodegraph.paths import resources_dir

    assert configs.configs_root() == resources_dir() / "configs"
    assert configs.family_config_dir("sd1") == resources_dir() / "configs" / "sd1"
    vocab, merges = configs.tokenizer_files()
    assert vocab.is_file() and merges.is_file()
    assert (vocab.parent / "LICENSE").read_text(encoding="utf-8").count("Copyright (c) 2021 OpenAI") == 1


# ------------------------------------------------------------------------------------------------------------ tokenizer


def test_vocabulary_files():
    vocab_path, merges_path = configs.tokenizer_files()
    vocab = json.loads(vocab_path.read_text(encoding="utf-8"))
    assert len(vocab) == 49408
    assert sorted(vocab.values()) == list(range(49408))
    assert (vocab["!"], vocab["a</w>"], vocab["<|startoftext|>"], vocab["<|endoftext|>"]) == (0, 320, 49406, 49407)
    lines = merges_path.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "#version: 0.2"
    assert len(lines) == 1 + 48894
    assert lines[1] == "i n"


@pytest.mark.parametrize(("family", "component"), sorted(PAD_IDS))
def test_tokenizers_of_every_family(family, component):
    tokenizer = configs.load_tokenizer(family, component)
    assert type(tokenizer).__name__ == "CLIPTokenizer"
    assert len(tokenizer) == 49408
    assert tokenizer.model_max_length == 77
    assert tokenizer("a photo of a cat").input_ids == CAT
    assert tokenizer.pad_token_id == PAD_IDS[family, component]
    assert (tokenizer.bos_token_id, tokenizer.eos_token_id) == (49406, 49407)


def test_known_token_ids():
    tokenizer = configs.load_tokenizer("sd1")
    assert tokenizer("a photo of an astronaut riding a horse on mars").input_ids == ASTRONAUT
    assert tokenizer("A  Photo\tOF a CAT").input_ids == CAT  # lower-cased, whitespace collapsed


@pytest.mark.parametrize(("family", "pad"), [("sd1", 49407), ("sd2", 0)])
def test_padding_to_77(family, pad):
    tokenizer = configs.load_tokenizer(family)
    ids = tokenizer("a photo of a cat", padding="max_length", max_length=tokenizer.model_max_length).input_ids
    assert len(ids) == 77
    assert ids[:7] == CAT
    assert ids[7:] == [pad] * 70


@pytest.mark.parametrize("family", ["sd1", "sd2", "sdxl-base"])
def test_long_prompt_truncates_to_77(family):
    tokenizer = configs.load_tokenizer(family)
    ids = tokenizer("cat " * 200, truncation=True, max_length=tokenizer.model_max_length).input_ids
    assert len(ids) == 77
    assert ids[0] == 49406 and ids[-1] == 49407
    assert set(ids[1:-1]) == {2368}


def test_load_tokenizer_errors():
    with pytest.raises(ValueError, match="has no tokenizer 'tokenizer'.*tokenizer_2"):
        configs.load_tokenizer("sdxl-refiner")
    with pytest.raises(ValueError, match="unknown model family"):
        configs.load_tokenizer("nope")


def test_load_tokenizer_turns_the_hub_off(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    configs.load_tokenizer("sd1")
    assert os.environ.get("HF_HUB_OFFLINE") == os.environ.get("TRANSFORMERS_OFFLINE") == "1"


# --------------------------------------------------------------------------------------------- derivation script


def _derive_module():
    path = ROOT / "scripts" / "derive_clip_tokenizer.py"
    spec = importlib.util.spec_from_file_location("derive_clip_tokenizer", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_byte_level_alphabet():
    alphabet = _derive_module().byte_level_alphabet()
    assert len(alphabet) == len(set(alphabet)) == 256
    assert alphabet[:3] == ["!", '"', "#"]
    assert alphabet[188] == "Ā"  # byte 0, the first shifted byte
    assert alphabet[220] == "Ġ"  # the space byte (0x20)


def test_derivation_reproduces_the_bundled_files(tmp_path):
    """Rebuild a BPE .gz (header, the merges, trailing unused lines) inside a fake wheel and re-derive from it."""
    derive = _derive_module()
    vocab_path, merges_path = configs.tokenizer_files()
    merges = merges_path.read_text(encoding="utf-8").splitlines()[1:]
    text = "\n".join(['"bpe_simple_vocab_16e6.txt#version: 0.2', *merges, "unused merge", "never used"])
    wheel = tmp_path / "open_clip_torch-0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("open_clip/bpe_simple_vocab_16e6.txt.gz", gzip.compress(text.encode("utf-8")))

    out = tmp_path / "out"
    assert derive.main([str(wheel), "--out", str(out)]) == 0
    assert (out / "vocab.json").read_bytes() == vocab_path.read_bytes()
    assert (out / "merges.txt").read_bytes() == merges_path.read_bytes()

    bare = tmp_path / "bpe_simple_vocab_16e6.txt.gz"
    bare.write_bytes(gzip.compress(text.encode("utf-8")))
    assert derive.main([str(bare), "--out", str(tmp_path / "bare")]) == 0
    assert (tmp_path / "bare" / "vocab.json").read_bytes() == vocab_path.read_bytes()
