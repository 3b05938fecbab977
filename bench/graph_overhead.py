"""Benchmark: a txt2img graph run against the same work called directly through diffusers' pipeline, and a
seed-only re-run against the sampler + decode time alone — side by side in one process.

    python bench/graph_overhead.py [--family sd1] [--size 256] [--steps 20] [--repeat 3] [--device auto]
                                   [--checkpoint FILE]

Without --checkpoint it writes the tiny random-weight SD 1.x demo checkpoint (CPU-sized); on a GPU machine pass an
SD 1.5-size file (bench/model_load.py writes one) with --size 512.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", help="a checkpoint file (default: write the tiny demo checkpoint)")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()

    import torch
    from diffusers import StableDiffusionPipeline

    from nodegraph.cli.demo_command import write_demo_checkpoint
    from nodegraph.core.workflow_io import load
    from nodegraph.engine import Executor, OutputCache, RunSettings
    from nodegraph.models.discovery import ModelFolders
    from nodegraph.models.manager import ModelManager
    from nodegraph.models.schedulers import build_scheduler
    from nodegraph.packs import create_registry
    from nodegraph.paths import resources_dir

    root = Path(tempfile.mkdtemp(prefix="nodegraph-bench-"))
    if args.checkpoint:
        checkpoint = Path(args.checkpoint).resolve()
        (root / "checkpoints").mkdir()
        (root / "checkpoints" / checkpoint.name).symlink_to(checkpoint)
    else:
        checkpoint = write_demo_checkpoint(root / "checkpoints")
    manager = ModelManager(ModelFolders([root], include_home=False), device=args.device)
    workflow = load(resources_dir() / "workflows" / "txt2img.json")
    workflow.set_input("ckpt", "ckpt_name", checkpoint.name)
    for name, value in (("width", args.size), ("height", args.size)):
        workflow.set_input("latent", name, value)
    workflow.set_input("sample", "steps", args.steps)
    registry = create_registry(user_packs=False)
    settings = RunSettings(output_dir=root / "out", services={"models": manager})

    loaded = manager.checkpoint(checkpoint)
    pipe = StableDiffusionPipeline(vae=loaded.vae, text_encoder=loaded.text_encoders["text_encoder"],
                                   tokenizer=loaded.tokenizers["tokenizer"], unet=loaded.unet,
                                   scheduler=build_scheduler(loaded.scheduler_config, "euler", "normal"),
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.to(manager.device)
    pipe.set_progress_bar_config(disable=True)
    prompt = workflow.nodes["positive"].inputs["text"]
    negative = workflow.nodes["negative"].inputs["text"]

    def direct(seed: int) -> float:
        started = time.perf_counter()
        pipe(prompt, negative_prompt=negative, num_inference_steps=args.steps, guidance_scale=7.0, height=args.size,
             width=args.size, generator=torch.Generator("cpu").manual_seed(seed), output_type="np")
        _sync(torch)
        return time.perf_counter() - started

    def graph(seed: int, executor: Executor) -> tuple[float, dict]:
        workflow.set_input("sample", "seed", seed)
        started = time.perf_counter()
        result = executor.run(workflow, targets=["decode"], settings=settings)
        _sync(torch)
        assert result.ok, result.message
        return time.perf_counter() - started, result

    graph(0, Executor(registry, cache=OutputCache()))  # warm-up: loads and places the model
    direct(0)
    rows = {"direct": [], "graph": [], "rerun": [], "sample+decode": []}
    for index in range(args.repeat):
        rows["direct"].append(direct(100 + index))
        executor = Executor(registry, cache=OutputCache())  # a fresh output cache: every node runs
        seconds, result = graph(100 + index, executor)
        rows["graph"].append(seconds)
        seconds, rerun = graph(200 + index, executor)  # same executor: only the seed changed
        assert rerun.executed == ["sample", "decode"], rerun.executed
        rows["rerun"].append(seconds)
        rows["sample+decode"].append(rerun.seconds["sample"] + rerun.seconds["decode"])
    median = {name: statistics.median(values) for name, values in rows.items()}
    print(f"{checkpoint.name}, {args.size}x{args.size}, {args.steps} steps, euler, cfg 7, device {manager.device}; "
          f"median of {args.repeat}")
    print("| measurement | seconds |")
    print("|---|---|")
    for name, value in median.items():
        print(f"| {name} | {value:.3f} |")
    print(f"graph overhead vs diffusers: {100 * (median['graph'] / median['direct'] - 1):+.1f} %")
    print(f"seed-only re-run vs sampler + decode alone: {median['rerun'] / median['sample+decode']:.3f}x")
    if manager.device.type == "cuda":
        print(f"it/s: graph {args.steps / median['sample+decode']:.2f} (sampler + decode), "
              f"diffusers {args.steps / median['direct']:.2f} (whole call)")


def _sync(torch) -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


if __name__ == "__main__":
    main()
