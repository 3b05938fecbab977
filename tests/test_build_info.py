"""The version is defined once and shown everywhere with the build it belongs to (installer variant, torch build);
the GPU probe that lets a CPU-only build say which GPU it leaves unused."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import nodegraph
from nodegraph import build_info as build_info_module
from nodegraph import hardware
from nodegraph.build_info import BuildInfo, build_info, build_record
from nodegraph.images import a1111_parameters

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def build_file(tmp_path, monkeypatch):
    """Point the build record at a file of the test's (and forget the cached reading before and after)."""
    path = tmp_path / "build.json"
    monkeypatch.setattr(build_info_module, "BUILD_FILE", path)
    build_info.cache_clear()
    yield path
    build_info.cache_clear()


def test_the_version_is_defined_once():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert "version" not in project and "version" in project["dynamic"]
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    assert config["dynamic"]["version"] == {"attr": "nodegraph.__version__"}
    assert f"Version: nodegraph {nodegraph.__version__}" in a1111_parameters({"prompt": "a cat"})  # PNG metadata


def test_a_python_install_says_so(build_file):
    assert not build_file.exists()
    info = build_info()
    assert info == BuildInfo(nodegraph.__version__) and not info.packaged
    assert info.describe() == f"nodegraph {nodegraph.__version__} (Python install)"


def test_an_installer_build_names_its_torch_variant(build_file):
    build_file.write_text(json.dumps(build_record("cpu", "2.13.0+cpu", "abc1234") | {"platform": "Linux"}))
    info = build_info()
    assert info.packaged and info.commit == "abc1234"
    assert info.describe() == f"nodegraph {nodegraph.__version__} (Linux installer, CPU only, torch 2.13.0+cpu)"
    assert BuildInfo("1", variant="cu128").variant_text() == "CUDA 12.8"
    assert BuildInfo("1", variant="cu126").variant_text() == "CUDA 12.6"
    assert BuildInfo("1", variant="rocm6.4").variant_text() == "ROCm 6.4"
    assert BuildInfo("1", variant="mps").variant_text() == "Apple silicon (MPS)"


@pytest.mark.parametrize("text", ["not json", "[1, 2]", '{"variant": 3}'])
def test_a_damaged_build_record_reads_as_a_python_install(build_file, text):
    build_file.write_text(text)
    assert not build_info().packaged


def test_version_option_prints_the_build(tmp_path):
    env = {**os.environ, "NODEGRAPH_HOME": str(tmp_path)}
    done = subprocess.run([sys.executable, "-m", "nodegraph", "--version"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0
    assert done.stdout.strip() == f"nodegraph {nodegraph.__version__} (Python install)"


@pytest.fixture
def no_gpu_cache():
    hardware.nvidia_gpu.cache_clear()
    yield
    hardware.nvidia_gpu.cache_clear()


def test_an_nvidia_gpu_is_named_by_nvidia_smi(tmp_path, monkeypatch, no_gpu_cache):
    smi = tmp_path / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho 'NVIDIA GeForce RTX 4090, 550.54.14'\n")
    smi.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert hardware.nvidia_gpu() == "NVIDIA GeForce RTX 4090 (driver 550.54.14)"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the kernel module's file exists on Linux only")
def test_without_nvidia_smi_the_kernel_module_tells(tmp_path, monkeypatch, no_gpu_cache):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    version = tmp_path / "version"
    version.write_text("NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.14  Thu Feb 22 01:44:30 UTC 2024\n")
    monkeypatch.setattr(hardware, "NVIDIA_PROC", version)
    assert hardware.nvidia_gpu() == "an NVIDIA GPU (driver 550.54.14)"
    monkeypatch.setattr(hardware, "NVIDIA_PROC", tmp_path / "absent")
    hardware.nvidia_gpu.cache_clear()
    assert hardware.nvidia_gpu() is None
