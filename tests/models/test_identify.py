"""Identification from tensor names and shapes: kind, family, variant and the SD 2.x v-prediction rule."""

from __future__ import annotations

import json
import shutil
import struct

import pytest

from nodegraph.models.errors import CorruptModelError, UnsafeModelError
from nodegraph.models.identify import identify
from nodegraph.models.synthetic import MALICIOUS_MARKER


@pytest.mark.parametrize("key, family, variant, prediction", [
    ("sd1", "sd1", None, "epsilon"),
    ("sd1.ckpt", "sd1", None, "epsilon"),
    ("sd1-inpaint", "sd1-inpaint", "inpaint", "epsilon"),
    ("sd2", "sd2", None, "epsilon"),
    ("sd2-v", "sd2-v", None, "v"),
    ("sd2-inpaint", "sd2-inpaint", "inpaint", "epsilon"),
    ("sdxl-base", "sdxl-base", None, "epsilon"),
    ("sdxl-refiner", "sdxl-refiner", None, "epsilon"),
    ("sdxl-inpaint", "sdxl-inpaint", "inpaint", "epsilon"),
])
def test_checkpoint_families(model_files, key, family, variant, prediction):
    info = identify(model_files[key])
    assert (info.kind, info.family, info.variant, info.prediction) == ("checkpoint", family, variant, prediction)
    assert info.tensors > 100 and info.bytes == model_files[key].stat().st_size
    assert "float16" in info.dtypes and "float32" not in info.dtypes


def test_v_prediction_rule_and_override(model_files, tmp_path):
    source = model_files["sd2-v"]
    plain = tmp_path / "my-sd2-finetune.safetensors"
    shutil.copy(source, plain)
    info = identify(plain)
    assert (info.family, info.prediction, info.prediction_source) == ("sd2-v", "v", "default for SD 2.x")
    assert identify(plain, prediction_override="epsilon").family == "sd2"
    base = tmp_path / "sd2-512-finetune.safetensors"
    shutil.copy(source, base)
    assert (identify(base).prediction, identify(base).prediction_source) == ("epsilon", "file name")
    assert identify(base, prediction_override="v").family == "sd2-v"
    plain.with_suffix(".yaml").write_text('model:\n  params:\n    parameterization: "eps"\n')
    assert (identify(plain).prediction, identify(plain).prediction_source) == ("epsilon", "sidecar yaml")
    plain.with_suffix(".yaml").write_text('model:\n  params:\n    parameterization: "v"\n')
    assert identify(plain).family == "sd2-v"
    with pytest.raises(ValueError):
        identify(plain, prediction_override="x")


def test_prediction_is_fixed_for_other_families(model_files):
    info = identify(model_files["sd1"], prediction_override=None)
    assert (info.prediction, info.prediction_source) == ("epsilon", "family")


@pytest.mark.parametrize("key, kind, variant, family", [
    ("vae", "vae", None, "unknown"),
    ("lora-sd1-kohya", "lora", "lora", "sd1"),
    ("lora-sdxl-kohya", "lora", "lora", "sdxl"),
    ("locon-sd1", "lora", "locon", "sd1"),
    ("lora-sd1-peft", "lora", "lora", "sd1"),
    ("loha", "lora", "loha", "sd1"),
    ("lokr", "lora", "lokr", "sd1"),
    ("emb-a1111-pt", "embedding", None, "sd1"),
    ("emb-safetensors", "embedding", None, "sd1"),
    ("emb-diffusers", "embedding", None, "sd1"),
    ("emb-sdxl", "embedding", None, "sdxl"),
    ("hypernetwork", "hypernetwork", None, "sd1"),
])
def test_addon_kinds_and_families(model_files, key, kind, variant, family):
    info = identify(model_files[key])
    assert (info.kind, info.variant, info.family) == (kind, variant, family)


def test_malicious_pickle_is_refused_without_running(model_files):
    path = model_files["malicious"]
    with pytest.raises(UnsafeModelError, match="refused"):
        identify(path)
    assert not (model_files.folder / MALICIOUS_MARKER).exists()


def _header_only_file(path, names):
    """A valid safetensors file holding one tiny tensor per name."""
    header = {name: {"dtype": "F16", "shape": [1], "data_offsets": [2 * i, 2 * i + 2]} for i, name in enumerate(names)}
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + b"\0" * (2 * len(names)))
    return path


@pytest.mark.parametrize("names, expected", [
    (["model.diffusion_model.joint_blocks.0.x_block.attn.qkv.weight"], "SD3"),
    (["double_blocks.0.img_attn.qkv.weight", "single_blocks.0.linear1.weight"], "Flux"),
])
def test_unsupported_architectures_are_named(tmp_path, names, expected):
    info = identify(_header_only_file(tmp_path / "big.safetensors", names))
    assert info.kind == "checkpoint" and expected in info.unsupported and info.family == "unknown"


def test_unrecognised_and_non_model_files(tmp_path):
    with pytest.raises(CorruptModelError, match="not a recognised"):
        identify(_header_only_file(tmp_path / "odd.safetensors", ["foo.bar"]))
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(CorruptModelError, match="not a model file"):
        identify(tmp_path / "notes.txt")


def test_json_shape(model_files):
    data = identify(model_files["sd1"]).to_json()
    assert {"kind", "variant", "family", "prediction", "tensors", "dtypes", "bytes"} <= set(data)
    assert json.loads(json.dumps(data)) == data
