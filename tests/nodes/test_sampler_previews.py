"""Live previews can be turned off: the UNet Sampler then reports each step without building a preview image."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nodegraph.models.offline import ensure_offline

ensure_offline()

from nodegraph.core.graph import Workflow  # noqa: E402
from nodegraph.engine import Executor, Progress, RunSettings  # noqa: E402

pytestmark = [pytest.mark.filterwarnings("ignore:__array:DeprecationWarning"),
              pytest.mark.filterwarnings("ignore::FutureWarning")]

STEPS = 3
SIZE = 64


def sampler_graph(ckpt: str) -> Workflow:
    """Load Checkpoint → two prompts → UNet Sampler, on an empty latent."""
    wf = Workflow()
    wf.add_node("LoadCheckpoint", "ckpt", inputs={"ckpt_name": ckpt})
    wf.add_node("EmptyLatentImage", "latent", inputs={"width": SIZE, "height": SIZE, "batch_size": 1})
    wf.add_node("CLIPTextEncode", "positive", inputs={"text": "a cat"})
    wf.add_node("CLIPTextEncode", "negative", inputs={"text": ""})
    wf.add_node("UNetSampler", "sample", inputs={"seed": 3, "steps": STEPS, "cfg": 5.0})
    for src, dst in [(("ckpt", "CLIP"), ("positive", "clip")), (("ckpt", "CLIP"), ("negative", "clip")),
                     (("ckpt", "MODEL"), ("sample", "model")), (("positive", "CONDITIONING"), ("sample", "positive")),
                     (("negative", "CONDITIONING"), ("sample", "negative")),
                     (("latent", "LATENT"), ("sample", "latent_image"))]:
        wf.connect(*src, *dst)
    return wf


def run_sampler(ckpt: str, node_registry, manager, tmp_path, previews: bool):
    """Run the graph to the sampler with a fresh executor; returns (progress events, the sampled latents)."""
    events: list = []
    executor = Executor(node_registry, sink=events.append)
    settings = RunSettings(output_dir=tmp_path / "output", device="cpu", previews=previews,
                           services={"models": manager})
    result = executor.run(sampler_graph(ckpt), targets=["sample"], settings=settings)
    assert result.ok, (result.status, result.message, result.details, result.problems)
    return [e for e in events if isinstance(e, Progress)], result.outputs["sample"]["LATENT"].samples


def test_previews_off_reports_steps_without_images_and_on_reports_images(models, node_registry, manager, tmp_path):
    ckpt = models.name("sd1")
    off_events, off_latents = run_sampler(ckpt, node_registry, manager, tmp_path, previews=False)
    on_events, on_latents = run_sampler(ckpt, node_registry, manager, tmp_path, previews=True)
    assert [(e.node_id, e.step, e.total) for e in off_events] == [("sample", s, STEPS) for s in range(1, STEPS + 1)]
    assert [e.preview for e in off_events] == [None] * STEPS
    assert [(e.node_id, e.step, e.total) for e in on_events] == [("sample", s, STEPS) for s in range(1, STEPS + 1)]
    for event in on_events:
        assert isinstance(event.preview, np.ndarray)
        assert event.preview.shape == (SIZE // 8, SIZE // 8, 3) and event.preview.dtype == np.uint8
    assert torch.equal(off_latents, on_latents)  # previews only watch the sampler; they never change its result
