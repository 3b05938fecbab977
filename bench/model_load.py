"""Benchmark: loading an SD 1.5-size checkpoint (random weights, fp16 safetensors, ~2 GB) three ways, side by side.

1. raw: ``safetensors.torch.load_file`` — every tensor read into memory, the physical limit here;
2. nodegraph: ``nodegraph.models.loader.load_checkpoint`` — identified, converted, strict, ready-to-use modules;
3. diffusers: ``StableDiffusionPipeline.from_single_file`` with a local config (no hub).

Each measurement runs in a fresh subprocess (so peak resident memory is its own), after one untimed read of the file
so that all three read from the page cache. Also measured: a second load of the same file through the model cache.

    python bench/model_load.py [--folder DIR] [--repeat N]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def write_sd15_checkpoint(path: Path) -> None:
    """An SD 1.5-size single-file checkpoint in the original LDM layout, fp16, random weights."""
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from safetensors.torch import save_file
    from transformers import CLIPTextConfig, CLIPTextModel

    from nodegraph.models.configs import load_config
    from nodegraph.models.synthetic import checkpoint_state_dict

    with torch.device("meta"):
        components = {
            "unet": UNet2DConditionModel.from_config(load_config("sd1", "unet")),
            "vae": AutoencoderKL.from_config(load_config("sd1", "vae")),
            "text_encoder": CLIPTextModel(CLIPTextConfig(**{k: v for k, v in load_config("sd1", "text_encoder").items()
                                                            if not k.startswith("_") and k != "architectures"})),
        }
    generator = torch.Generator().manual_seed(0)
    for module in components.values():
        module.to_empty(device="cpu")
        with torch.no_grad():
            for tensor in [*module.parameters(), *module.buffers()]:
                if tensor.is_floating_point():
                    tensor.copy_(torch.randn(tensor.shape, generator=generator) * 0.02)
                else:
                    tensor.copy_(torch.arange(tensor.shape[-1]).expand(tensor.shape))
    state = checkpoint_state_dict("sd1", components, {})
    save_file({k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in state.items()}, str(path))


def _peak_rss() -> int:
    """This process's peak resident memory (VmHWM). Not getrusage's ru_maxrss: Linux carries that over from the
    parent across fork and exec, which would hide the child's own peak."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _touch(tensors) -> int:
    """Read one element of every 4 KB page of each tensor, so memory-mapped weights are really in memory: "ready"
    means resident, for every mode alike. Returns the number of elements the tensors hold."""
    total = 0
    for tensor in tensors:
        flat = tensor.detach().reshape(-1)
        step = max(4096 // tensor.element_size(), 1)
        float(flat[::step].float().sum())
        total += flat.numel()
    return total


def _child(mode: str, path: str, config_dir: str) -> None:
    """One timed load, in its own process; prints seconds and peak RSS growth as JSON."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    import diffusers
    import diffusers.loaders.single_file_utils  # noqa: F401
    import torch  # noqa: F401  (imported before the baseline so its memory is not counted)
    import transformers

    import nodegraph.models.loader  # noqa: F401

    # Resolve the libraries' lazy imports now, so that the timings below are loading and not importing.
    for name in ("UNet2DConditionModel", "AutoencoderKL", "StableDiffusionPipeline", "PNDMScheduler"):
        getattr(diffusers, name)
    for name in ("CLIPTextModel", "CLIPTextModelWithProjection", "CLIPTokenizer"):
        getattr(transformers, name)
    baseline = _peak_rss()
    started = time.perf_counter()
    if mode == "raw":
        from safetensors.torch import load_file

        tensors = load_file(path)
        touched = _touch(tensors.values())
    elif mode == "nodegraph":
        from nodegraph.models.cache import ModelCache, file_key
        from nodegraph.models.loader import load_checkpoint

        cache = ModelCache()
        checkpoint = cache.get(file_key(path), lambda: load_checkpoint(path))
        touched = _touch(p for m in (checkpoint.unet, checkpoint.vae, *checkpoint.text_encoders.values())
                         for p in m.parameters())
        seconds = time.perf_counter() - started
        again = time.perf_counter()
        cache.get(file_key(path), lambda: load_checkpoint(path))
        cached = time.perf_counter() - again
    else:
        from diffusers import StableDiffusionPipeline

        pipe = StableDiffusionPipeline.from_single_file(path, config=config_dir, local_files_only=True,
                                                        torch_dtype=torch.float16, safety_checker=None)
        touched = _touch(p for m in (pipe.unet, pipe.vae, pipe.text_encoder) for p in m.parameters())
    if mode != "nodegraph":
        seconds, cached = time.perf_counter() - started, None
    peak = _peak_rss() - baseline
    print(json.dumps({"seconds": seconds, "peak_bytes": peak, "elements": touched, "cached_seconds": cached}))


def _evict_from_page_cache(path: Path) -> None:
    """Drop the file's pages from the page cache, so the next read comes from the disk (cold start)."""
    with path.open("rb") as handle:
        os.fsync(handle.fileno())
        os.posix_fadvise(handle.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)


def _measure(mode: str, path: Path, config_dir: Path, cold: bool) -> dict:
    if cold:
        _evict_from_page_cache(path)
    done = subprocess.run([sys.executable, __file__, "--child", mode, str(path), str(config_dir)],
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def _config_dir(folder: Path) -> Path:
    """The bundled SD 1.x config folder plus the shared tokenizer files, as diffusers' from_single_file wants."""
    from nodegraph.models.configs import family_config_dir, tokenizer_files

    target = folder / "sd1-config"
    shutil.copytree(family_config_dir("sd1"), target, dirs_exist_ok=True)
    for file in tokenizer_files():
        shutil.copy(file, target / "tokenizer" / file.name)
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", help="where to write the 2 GB checkpoint (default: a temporary folder)")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    folder = Path(args.folder or tempfile.mkdtemp(prefix="nodegraph-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "sd15-random.safetensors"
    if not path.exists():
        write_sd15_checkpoint(path)
    config_dir = _config_dir(folder)
    size = path.stat().st_size
    for cold in (False, True):
        if not cold:
            with path.open("rb") as handle:  # warm: every mode reads from the page cache, not the disk
                while handle.read(64 * 1024 * 1024):
                    pass
        _report(path, config_dir, size, args.repeat, cold)


def _report(path: Path, config_dir: Path, size: int, repeat: int, cold: bool) -> None:
    results = {mode: [_measure(mode, path, config_dir, cold) for _ in range(repeat)]
               for mode in ("raw", "nodegraph", "diffusers")}
    seconds = {mode: statistics.median(r["seconds"] for r in runs) for mode, runs in results.items()}
    peaks = {mode: max(r["peak_bytes"] for r in runs) for mode, runs in results.items()}
    cached = statistics.median(r["cached_seconds"] for r in results["nodegraph"])
    print(f"\nfile: {size / 1e9:.2f} GB fp16, {results['raw'][0]['elements'] / 1e6:.0f} M elements; median of "
          f"{repeat} runs each; {'cold: read from the disk' if cold else 'warm: file in the page cache'}")
    print("| load | seconds | vs raw | peak RSS growth | vs file size |")
    print("|---|---|---|---|---|")
    for mode in results:
        print(f"| {mode} | {seconds[mode]:.2f} | {seconds[mode] / seconds['raw']:.2f}x | "
              f"{peaks[mode] / 1e9:.2f} GB | {peaks[mode] / size:.2f}x |")
    print(f"second load through the model cache: {cached * 1000:.3f} ms")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        _child(*sys.argv[2:5])
    else:
        main()
