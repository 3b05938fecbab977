"""Add-on files are judged by their content before anything loads: an embedding in a LoRA folder is listed and used
as an embedding, and `validate`'s pre-run check refuses, naming node and port, a file of no known format, of the
wrong kind for its node, of an unsupported format, or (LyCORIS included) for another model line."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from nodegraph.core.graph import Workflow
from nodegraph.models.discovery import ModelFolders
from nodegraph.models.preflight import family_problems
from nodegraph.packs import create_registry


def _embedding(path: Path) -> Path:
    save_file({"emb_params": torch.randn(2, 768)}, str(path))
    return path


def _lokr(path: Path, prefix: str = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k",
          width: int = 768) -> Path:
    save_file({f"{prefix}.lokr_w1": torch.randn(4, 4), f"{prefix}.lokr_w2": torch.randn(80, width // 4),
               f"{prefix}.alpha": torch.tensor(4.0)}, str(path))
    return path


@pytest.fixture(scope="module")
def node_registry():
    """The built-in nodes."""
    return create_registry(user_packs=False)


@pytest.fixture
def root(tmp_path, sd1_path):
    (tmp_path / "models" / "Lora").mkdir(parents=True)
    (tmp_path / "models" / "embeddings").mkdir()
    (tmp_path / "models" / "checkpoints").mkdir()
    shutil.copy(sd1_path, tmp_path / "models" / "checkpoints" / "sd1.safetensors")
    return tmp_path


def test_an_embedding_in_the_lora_folder_is_listed_and_resolved_as_an_embedding(root):
    lora_folder = root / "models" / "Lora"
    _embedding(lora_folder / "EasyNegative.safetensors")
    _lokr(lora_folder / "style.safetensors")
    folders = ModelFolders([root], include_home=False)
    assert folders.list("loras") == ["style.safetensors"]
    assert folders.list("embeddings") == ["EasyNegative.safetensors"]
    assert folders.resolve("embeddings", "EasyNegative.safetensors") == lora_folder / "EasyNegative.safetensors"
    assert folders.found_in("embeddings", "EasyNegative.safetensors") == f"found in the loras folder {lora_folder}"
    assert folders.found_in("loras", "style.safetensors") is None


def test_listing_reads_no_model_with_torch():
    """Listing runs on the app's UI thread: headers only, torch never imported."""
    code = ("import sys, tempfile, pathlib\n"
            "from nodegraph.models.discovery import ModelFolders\n"
            "root = pathlib.Path(tempfile.mkdtemp()); (root / 'models' / 'Lora').mkdir(parents=True)\n"
            "(root / 'models' / 'Lora' / 'x.safetensors').write_bytes(b'\\x08\\0\\0\\0\\0\\0\\0\\0{}      ')\n"
            "ModelFolders([root], include_home=False).list('embeddings')\n"
            "assert 'torch' not in sys.modules, 'torch imported'\n")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[2])


def _lora_workflow(name: str, node_type: str = "LoadLoRA") -> Workflow:
    workflow = Workflow()
    workflow.add_node("LoadCheckpoint", "ckpt", inputs={"ckpt_name": "sd1.safetensors", "prediction": "auto"})
    inputs = {"lora_name": name, "strength_model": 1.0}
    if node_type == "LoadLoRA":
        inputs["strength_clip"] = 1.0
    workflow.add_node(node_type, "lora", inputs=inputs)
    workflow.connect("ckpt", "MODEL", "lora", "model")
    if node_type == "LoadLoRA":
        workflow.connect("ckpt", "CLIP", "lora", "clip")
    return workflow


@pytest.mark.parametrize(("write", "message"), [
    (lambda p: _lokr(p), None),
    (lambda p: _lokr(p, "lora_te1_text_model_encoder_layers_0_self_attn_q_proj"), "a LoRA for SDXL models"),
    (lambda p: _lokr(p, width=1024), "a LoRA for SD2 models"),
    (lambda p: save_file({"unet:0:down": torch.randn(1, 320), "unet:0:up": torch.randn(320, 1)}, str(p)),
     "cloneofsimo"),
    (lambda p: save_file({"lora_unet_x.oft_blocks": torch.randn(4, 8, 8)}, str(p)), "LyCORIS OFT"),
    (lambda p: save_file({"something.else": torch.randn(3)}, str(p)), "not a recognised Stable Diffusion file"),
    (lambda p: p.write_bytes(b"not a model at all"), "x.safetensors"),
], ids=["fits", "sdxl-lokr", "sd2-lokr", "cloneofsimo", "oft", "unknown-format", "corrupt"])
def test_validate_refuses_unappliable_addons_before_loading(root, node_registry, write, message):
    write(root / "models" / "Lora" / "x.safetensors")
    folders = ModelFolders([root], include_home=False)
    for node_type in ("LoadLoRA", "LoadLoRAModelOnly"):
        problems = family_problems(_lora_workflow("x.safetensors", node_type), node_registry, folders)
        if message is None:
            assert problems == []
        else:
            [problem] = problems
            assert (problem.node_id, problem.port) == ("lora", "lora_name") and message in problem.message, problem


def test_an_embedding_in_a_lora_node_is_refused_as_the_wrong_kind(root, node_registry):
    # Named by absolute path, so the LoRA node really gets the embedding.
    path = _embedding(root / "EasyNegative.safetensors")
    folders = ModelFolders([root], include_home=False)
    [problem] = family_problems(_lora_workflow(str(path)), node_registry, folders)
    assert problem.message == f"{path} is an embedding, not a LoRA" and problem.port == "lora_name"


def _controlnet(path: Path, context: int) -> Path:
    """A diffusers-layout ControlNet header: its family is in the cross-attention width."""
    save_file({"controlnet_cond_embedding.conv_in.weight": torch.zeros(16, 3, 3, 3),
               "controlnet_down_blocks.0.weight": torch.zeros(32, 32, 1, 1),
               "down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k.weight": torch.zeros(64, context)},
              str(path))
    return path


@pytest.mark.parametrize(("context", "message"), [(768, None), (2048, "a ControlNet for SDXL models")])
def test_a_controlnet_for_another_model_line_is_refused_before_loading(root, node_registry, context, message):
    (root / "models" / "controlnet").mkdir()
    _controlnet(root / "models" / "controlnet" / "cn.safetensors", context)
    workflow = Workflow()
    workflow.add_node("LoadCheckpoint", "ckpt", inputs={"ckpt_name": "sd1.safetensors", "prediction": "auto"})
    for prompt in ("pos", "neg"):
        workflow.add_node("CLIPTextEncode", prompt, inputs={"text": prompt})
        workflow.connect("ckpt", "CLIP", prompt, "clip")
    workflow.add_node("LoadControlNet", "cn", inputs={"control_net_name": "cn.safetensors"})
    # two Apply ControlNet nodes in a chain: the second one's conditioning leads back through the first
    for apply, (pos, neg) in (("apply1", (("pos", "CONDITIONING"), ("neg", "CONDITIONING"))),
                              ("apply2", (("apply1", "positive"), ("apply1", "negative")))):
        workflow.add_node("ApplyControlNet", apply, inputs={"strength": 1.0, "start_percent": 0.0,
                                                           "end_percent": 1.0})
        workflow.connect(*pos, apply, "positive")
        workflow.connect(*neg, apply, "negative")
    workflow.connect("cn", "CONTROL_NET", "apply2", "control_net")
    problems = family_problems(workflow, node_registry, ModelFolders([root], include_home=False))
    if message is None:
        assert problems == []
    else:
        [problem] = problems
        assert (problem.code, problem.node_id, problem.port) == ("wrong_family", "cn", "control_net_name")
        assert message in problem.message and "SD 1.x" in problem.message
