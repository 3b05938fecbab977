"""Hostile model names and damaged model folders end as a model error or a problem naming node and port, never as an
internal error: non-string names, names too long for the file system, unknown ``~user`` homes, dangling symlinks and
symlink loops, and diffusers folders whose JSON configs have the wrong shape."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from nodegraph.core.graph import Link, NodeInstance, Workflow
from nodegraph.core.validate import validate
from nodegraph.models.discovery import ModelFolders, file_check
from nodegraph.models.errors import CorruptModelError, ModelNotFoundError
from nodegraph.models.identify import identify
from nodegraph.models.preflight import family_problems
from nodegraph.packs import create_registry

LONG_NAMES = ["a" * 300 + ".safetensors", "é" * 200 + ".safetensors", "sub/" + "b" * 256, "/tmp/" + "c" * 300,
              "d/" * 3000 + "e.safetensors"]


@pytest.fixture(scope="module")
def node_registry():
    return create_registry(user_packs=False)


@pytest.fixture
def root(tmp_path):
    for kind in ("checkpoints", "loras", "embeddings"):
        (tmp_path / "models" / kind).mkdir(parents=True)
    return tmp_path


def _sd1_lora(path: Path) -> Path:
    prefix = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k"
    save_file({f"{prefix}.lokr_w1": torch.randn(4, 4), f"{prefix}.lokr_w2": torch.randn(80, 192),
               f"{prefix}.alpha": torch.tensor(4.0)}, str(path))
    return path


def _lora_workflow(ckpt_name, lora_name) -> Workflow:
    return Workflow([NodeInstance("ck", "LoadCheckpoint", {"ckpt_name": ckpt_name}),
                     NodeInstance("lo", "LoadLoRA", {"lora_name": lora_name})],
                    [Link("ck", "MODEL", "lo", "model"), Link("ck", "CLIP", "lo", "clip")])


@pytest.mark.parametrize("name", [5, 1.5, True, None, ["a"], {"a": 1}, "", "a\0b", "\ud800.safetensors"])
def test_resolve_refuses_names_that_are_no_file_names(root, name):
    with pytest.raises(ModelNotFoundError):
        ModelFolders([root], include_home=False).resolve("loras", name)


@pytest.mark.parametrize("name", LONG_NAMES)
def test_resolve_refuses_names_too_long_for_the_file_system(root, name):
    with pytest.raises(ModelNotFoundError) as caught:
        ModelFolders([root], include_home=False).resolve("loras", name)
    assert len(str(caught.value)) < 400


def test_an_unknown_home_is_not_found(root):
    with pytest.raises(ModelNotFoundError):
        ModelFolders([root], include_home=False).resolve("loras", "~no_such_user_xyz/a.safetensors")


@pytest.mark.parametrize("name", LONG_NAMES + ["~no_such_user_xyz/a.safetensors", 5, ["x"]])
def test_file_check_reports_bad_names_as_missing_files(root, node_registry, name):
    workflow = _lora_workflow(name, name)
    problems = validate(workflow, node_registry, file_check=file_check(ModelFolders([root], include_home=False)))
    ports = {(p.node_id, p.port) for p in problems if p.code in ("missing_file", "wrong_type")}
    assert ports == {("ck", "ckpt_name"), ("lo", "lora_name")}
    assert all(len(str(p)) < 400 for p in problems)


@pytest.mark.parametrize("ckpt_name", [5, ["a"], {"a": 1}, "a" * 300, "~no_such_user_xyz/a"])
def test_family_check_with_a_bad_checkpoint_name_upstream(root, node_registry, ckpt_name):
    _sd1_lora(root / "models" / "loras" / "style.safetensors")
    folders = ModelFolders([root], include_home=False)
    assert family_problems(_lora_workflow(ckpt_name, "style.safetensors"), node_registry, folders) == []


@pytest.mark.parametrize("lora_name", ["a" * 300, "/tmp/" + "c" * 300, "~no_such_user_xyz/a", "x\0"])
def test_family_check_with_a_bad_addon_name(root, node_registry, lora_name):
    folders = ModelFolders([root], include_home=False)
    assert family_problems(_lora_workflow("sd1.safetensors", lora_name), node_registry, folders) == []


def test_dangling_symlinks_and_loops_are_skipped_when_listing(root):
    loras = root / "models" / "loras"
    _sd1_lora(loras / "style.safetensors")
    os.symlink(loras / "gone.safetensors", loras / "dangling.safetensors")
    os.symlink("loop.safetensors", loras / "loop.safetensors")
    os.symlink(".", loras / "self")
    os.symlink("a", loras / "b")
    os.symlink("b", loras / "a")
    (root / "models" / "embeddings" / "pic.png").symlink_to(root / "nowhere.png")
    folders = ModelFolders([root], include_home=False)
    assert folders.list("loras") == ["style.safetensors"]
    assert folders.list("embeddings") == []
    for name in folders.list("loras"):
        folders.resolve("loras", name)


def _pipeline(root: Path, index: str = "{}", unet: str = '{"cross_attention_dim": 768}',
              scheduler: str | bytes = "{}") -> Path:
    folder = root / "pipe"
    (folder / "unet").mkdir(parents=True)
    (folder / "scheduler").mkdir()
    (folder / "model_index.json").write_text(index)
    (folder / "unet" / "config.json").write_text(unet)
    scheduler_file = folder / "scheduler" / "scheduler_config.json"
    scheduler_file.write_bytes(scheduler if isinstance(scheduler, bytes) else scheduler.encode())
    return folder


@pytest.mark.parametrize(("files", "named"), [
    ({"index": "[]"}, "model_index.json"),
    ({"unet": "[1, 2]"}, "config.json"),
    ({"unet": '"text"'}, "config.json"),
    ({"scheduler": "[]"}, "scheduler_config.json"),
    ({"scheduler": b"\xff\xfe"}, "scheduler_config.json"),
    ({"unet": "[" * 100_000 + "]" * 100_000}, "config.json"),
])
def test_a_diffusers_folder_with_wrongly_shaped_configs_is_corrupt(tmp_path, files, named):
    with pytest.raises(CorruptModelError) as caught:
        identify(_pipeline(tmp_path, **files))
    assert named in str(caught.value)


@pytest.mark.parametrize(("dim", "family"), [([768, 768], "sd1"), ([768, 1024], "unknown"), ("768", "unknown"),
                                             ({"a": 1}, "unknown"), (True, "unknown"), (None, "unknown")])
def test_a_diffusers_folder_with_an_odd_cross_attention_dim(tmp_path, dim, family):
    folder = _pipeline(tmp_path, unet=json.dumps({"cross_attention_dim": dim}))
    assert identify(folder).family == family


def test_a_diffusers_folder_with_a_dangling_weight_link(tmp_path):
    folder = _pipeline(tmp_path)
    (folder / "unet" / "diffusion_pytorch_model.safetensors").symlink_to(tmp_path / "gone.safetensors")
    assert identify(folder).family == "sd1"


def test_a_controlnet_folder_with_a_list_cross_attention_dim(tmp_path):
    folder = tmp_path / "cn"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"_class_name": "ControlNetModel", "cross_attention_dim": [1]}))
    assert identify(folder).family == "unknown"
