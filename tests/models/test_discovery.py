"""Model discovery in the layouts users already have: ComfyUI, AUTOMATIC1111, extra_model_paths.yaml, data folder."""

from __future__ import annotations

import pytest

from nodegraph.core.schema import Input
from nodegraph.models.discovery import ModelFolders, file_check
from nodegraph.models.errors import ModelNotFoundError


def touch(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    return path


def test_comfyui_layout(tmp_path):
    root = tmp_path / "ComfyUI"
    touch(root / "models/checkpoints/sd15.safetensors")
    touch(root / "models/checkpoints/xl/juggernaut.safetensors")
    touch(root / "models/loras/detail.safetensors")
    touch(root / "models/vae/vae-ft-mse.safetensors")
    touch(root / "models/embeddings/easynegative.pt")
    touch(root / "models/hypernetworks/anime.pt")
    touch(root / "models/checkpoints/readme.txt")
    folders = ModelFolders([root], include_home=False)
    assert folders.list("checkpoints") == ["sd15.safetensors", "xl/juggernaut.safetensors"]
    assert folders.list("loras") == ["detail.safetensors"]
    assert folders.list("vae") == ["vae-ft-mse.safetensors"]
    assert folders.list("embeddings") == ["easynegative.pt"]
    assert folders.list("hypernetworks") == ["anime.pt"]
    expected = root / "models/checkpoints/xl/juggernaut.safetensors"
    assert folders.resolve("checkpoints", "xl/juggernaut.safetensors") == expected


def test_automatic1111_layout(tmp_path):
    root = tmp_path / "stable-diffusion-webui"
    touch(root / "models/Stable-diffusion/v1-5-pruned-emaonly.ckpt")
    touch(root / "models/Lora/style.safetensors")
    touch(root / "models/LyCORIS/locon.safetensors")
    touch(root / "models/VAE/kl-f8.pt")
    touch(root / "models/hypernetworks/hn.pt")
    touch(root / "embeddings/bad-hands.pt")
    folders = ModelFolders([root], include_home=False)
    assert folders.list("checkpoints") == ["v1-5-pruned-emaonly.ckpt"]
    assert folders.list("loras") == ["locon.safetensors", "style.safetensors"]
    assert folders.list("vae") == ["kl-f8.pt"]
    assert folders.list("embeddings") == ["bad-hands.pt"]
    assert folders.list("hypernetworks") == ["hn.pt"]


def test_extra_model_paths_yaml(tmp_path):
    comfy = tmp_path / "ComfyUI"
    comfy.mkdir()
    a1111 = tmp_path / "webui"
    touch(a1111 / "models/Stable-diffusion/shared.safetensors")
    touch(a1111 / "models/Lora/shared-lora.safetensors")
    touch(tmp_path / "elsewhere/loras/second.safetensors")
    (comfy / "extra_model_paths.yaml").write_text(
        "a111:\n"
        f"    base_path: {a1111}\n"
        "    checkpoints: models/Stable-diffusion\n"
        "    loras: |\n"
        "        models/Lora\n"
        f"        {tmp_path / 'elsewhere/loras'}\n"
        "    upscale_models: models/ESRGAN\n")
    folders = ModelFolders([comfy], include_home=False)
    assert folders.list("checkpoints") == ["shared.safetensors"]
    assert folders.list("loras") == ["second.safetensors", "shared-lora.safetensors"]


def test_data_folder_and_diffusers_folders(nodegraph_home):
    touch(nodegraph_home / "models/checkpoints/mine.safetensors")
    touch(nodegraph_home / "models/checkpoints/pipeline/model_index.json")
    folders = ModelFolders()
    assert folders.list("checkpoints") == ["mine.safetensors", "pipeline"]


def test_absolute_paths_and_missing_models(tmp_path):
    model = touch(tmp_path / "somewhere/model.safetensors")
    folders = ModelFolders([tmp_path / "root"], include_home=False)
    assert folders.resolve("checkpoints", str(model)) == model
    with pytest.raises(ModelNotFoundError, match="not found in the checkpoints folders"):
        folders.resolve("checkpoints", "nope.safetensors")
    with pytest.raises(ValueError, match="unknown model kind"):
        folders.folders("upscalers")


def test_file_check_for_validation(tmp_path):
    touch(tmp_path / "models/checkpoints/a.safetensors")
    check = file_check(ModelFolders([tmp_path], include_home=False))
    spec = Input.string("ckpt_name", file_kind="checkpoints")
    assert check(spec, "a.safetensors") is None
    assert "b.safetensors: not found in the checkpoints folders" in check(spec, "b.safetensors")
