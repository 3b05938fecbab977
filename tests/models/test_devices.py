"""Device selection and the dtype policy, including the VAE upcast that prevents black images."""

from __future__ import annotations

import copy

import pytest
import torch

from nodegraph.models.devices import compute_dtype, decode_latents, pick_device
from nodegraph.models.discovery import ModelFolders
from nodegraph.models.manager import ModelManager
from nodegraph.models.synthetic import build_vae
from nodegraph.settings import PRECISIONS


def test_device_selection():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    if not torch.cuda.is_available() and torch.backends.mps.is_available():
        expected = "mps"
    assert pick_device("auto").type == expected
    assert pick_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="unknown device"):
        pick_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="not available"):
            pick_device("cuda:0")


def test_dtype_policy(monkeypatch):
    assert compute_dtype(torch.device("cpu")) == torch.float32
    assert compute_dtype(torch.device("cuda")) == torch.float16
    monkeypatch.setenv("NODEGRAPH_DTYPE", "bf16")
    assert compute_dtype(torch.device("cuda")) == torch.bfloat16


def test_precision_setting_forces_the_gpu_dtype_and_the_cpu_stays_float32(monkeypatch):
    cuda, mps = torch.device("cuda"), torch.device("mps")
    assert [compute_dtype(torch.device("cpu"), p) for p in PRECISIONS] == [torch.float32] * len(PRECISIONS)
    assert compute_dtype(cuda, "auto") == torch.float16
    assert compute_dtype(cuda, "fp16") == torch.float16
    assert compute_dtype(cuda, "bf16") == torch.bfloat16
    assert compute_dtype(cuda, "fp32") == torch.float32
    assert compute_dtype(mps, "fp32") == torch.float32 and compute_dtype(mps, "bf16") == torch.bfloat16
    monkeypatch.setenv("NODEGRAPH_DTYPE", "bf16")
    assert compute_dtype(cuda, "auto") == torch.bfloat16  # the environment still steers "auto"
    assert compute_dtype(cuda, "fp16") == torch.float16  # an explicit choice wins over it
    with pytest.raises(ValueError, match="unknown precision 'int8'"):
        compute_dtype(cuda, "int8")


def test_model_manager_runs_in_the_precision_it_was_given(monkeypatch):
    assert ModelManager(ModelFolders([]), device="cpu", precision="fp16").dtype == torch.float32
    monkeypatch.setattr("nodegraph.models.manager.pick_device", lambda requested: torch.device("cuda"))
    assert ModelManager(ModelFolders([]), device="cuda").dtype == torch.float16
    assert ModelManager(ModelFolders([]), device="cuda", precision="fp32").dtype == torch.float32
    assert ModelManager(ModelFolders([]), device="cuda", precision="bf16").dtype == torch.bfloat16
    with pytest.raises(ValueError, match="unknown precision"):
        ModelManager(ModelFolders([]), precision="half")


def test_vae_decode_upcasts_when_half_precision_overflows():
    vae = build_vae("sd1", seed=1)
    with torch.no_grad():
        vae.decoder.conv_out.weight.mul_(2e5)  # outputs far beyond float16's range (65504), fine in float32
    half = vae.to(torch.float16)
    latents = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert not torch.isfinite(half.decode(latents.half()).sample).all()  # what would become a black image
        reference = copy.deepcopy(half).float().decode(latents).sample
    assert torch.isfinite(reference).all() and reference.abs().max() > 65504
    image = decode_latents(half, latents)
    assert image.dtype == torch.float32 and torch.isfinite(image).all()
    assert torch.allclose(image, reference, rtol=1e-5, atol=1e-3)
    assert half.dtype == torch.float16  # put back as it was


def test_vae_decode_keeps_a_good_half_precision_result():
    vae = build_vae("sd1", seed=1).to(torch.float16)
    vae.register_to_config(force_upcast=False)  # as the bundled SD 1.x/2.x configs say
    latents = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = vae.decode(latents.half()).sample.float()
    assert torch.equal(decode_latents(vae, latents), expected)


def test_vae_marked_force_upcast_decodes_in_float32_directly():
    vae = build_vae("sd1", seed=1).to(torch.float16)
    vae.register_to_config(force_upcast=True)  # as the bundled SDXL config says
    latents = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = copy.deepcopy(vae).float().decode(latents).sample
    assert torch.equal(decode_latents(vae, latents), expected)
    assert vae.dtype == torch.float16


def test_a_cpu_only_torch_names_the_gpu_it_leaves_unused(monkeypatch):
    from nodegraph import build_info as build_info_module
    from nodegraph import hardware
    from nodegraph.models.devices import cpu_fallback_note

    monkeypatch.setattr(torch.version, "cuda", None)
    monkeypatch.setattr(hardware, "nvidia_gpu", lambda: "NVIDIA GeForce RTX 4090 (driver 550.54.14)")
    note = cpu_fallback_note(torch.device("cpu"))
    assert "CPU-only build" in note and "RTX 4090" in note and "install a CUDA build of torch" in note
    monkeypatch.setattr(build_info_module, "build_info", lambda: build_info_module.BuildInfo("1", variant="cpu"))
    assert "install nodegraph's CUDA build" in cpu_fallback_note(torch.device("cpu"))
    assert cpu_fallback_note(torch.device("cuda")) == ""  # a GPU run has nothing to explain
    monkeypatch.setattr(hardware, "nvidia_gpu", lambda: None)
    assert cpu_fallback_note(torch.device("cpu")) == ""  # no GPU: the CPU is the right device


def test_a_cuda_torch_that_cannot_use_cuda_says_so(monkeypatch):
    from nodegraph import hardware
    from nodegraph.models.devices import cpu_fallback_note

    monkeypatch.setattr(torch.version, "cuda", "12.8")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(hardware, "nvidia_gpu", lambda: None)
    note = cpu_fallback_note(torch.device("cpu"))
    assert "CUDA 12.8 build" in note and "cannot be used" in note and "no NVIDIA driver" in note
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert cpu_fallback_note(torch.device("cpu")) == ""  # the user chose the CPU on a working GPU


def test_the_manager_keeps_the_note_of_the_device_it_picked(monkeypatch):
    from nodegraph import hardware

    monkeypatch.setattr(torch.version, "cuda", None)
    monkeypatch.setattr(hardware, "nvidia_gpu", lambda: "an NVIDIA GPU (driver 550.54.14)")
    manager = ModelManager(ModelFolders([]), device="cpu")
    assert manager.device_note == ""  # nothing picked yet
    assert manager.device.type == "cpu"
    assert "an NVIDIA GPU (driver 550.54.14) is not used" in manager.device_note
