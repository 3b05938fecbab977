"""Imported ComfyUI workflows run: every graph of the shared corpus, with tiny real-format models saved under the
names the workflows use, validates and renders end to end; an imported txt2img graph renders the very pixels of the
same graph built with our nodes by hand."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from nodegraph.models.offline import ensure_offline

ensure_offline()

from nodegraph.core.graph import Workflow  # noqa: E402
from nodegraph.core.validate import validate  # noqa: E402
from nodegraph.engine import Executor, RunSettings  # noqa: E402
from nodegraph.interop import import_file  # noqa: E402
from nodegraph.models.discovery import ModelFolders, file_check  # noqa: E402
from nodegraph.models.manager import ModelManager  # noqa: E402
from nodegraph.packs import create_registry  # noqa: E402

pytestmark = [pytest.mark.filterwarnings("ignore:__array:DeprecationWarning"),
              pytest.mark.filterwarnings("ignore::FutureWarning")]

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "corpus"

#: The model files the corpus workflows name → the tiny family saved under that name.
CHECKPOINTS = {
    "v1-5-pruned-emaonly.ckpt": "sd1", "v1-5-pruned-emaonly.safetensors": "sd1",
    "v1-5-pruned-emaonly-fp16.safetensors": "sd1", "512-inpainting-ema.safetensors": "sd2-inpaint",
    "v2-1_768-ema-pruned.ckpt": "sd2-v", "sd_xl_base_1.0.safetensors": "sdxl-base",
    "sd_xl_refiner_1.0.safetensors": "sdxl-refiner",
}
#: The seeds other test modules use for these families, so the session builds each tiny model once.
SEEDS = {"sd2-v": 1}
LORAS = {"epiNoiseoffset_v2.safetensors": "sd1"}
IMAGES = ("example.png", "yosemite_inpaint_example.png")

#: Tiny runs: every latent 64 px square (hires passes 96), and the step counts scaled by this factor.
SIZE, HIRES_SIZE, STEP_FACTOR = 64, 96, 4 / 25


@pytest.fixture(scope="module")
def models_root(tmp_path_factory, tiny_checkpoints) -> Path:
    from safetensors.torch import load_file

    from nodegraph.models.synthetic import write_lora
    from nodegraph.models.synthetic.writers import save_checkpoint_state

    root = tmp_path_factory.mktemp("comfy-models")
    for name, family in CHECKPOINTS.items():
        target = root / "checkpoints" / name
        if target.suffix == ".ckpt":
            shared = tiny_checkpoints.write(root / "shared" / f"{family}.safetensors", family, SEEDS.get(family, 0))
            save_checkpoint_state(target, load_file(shared), global_step=875000 if family == "sd2-v" else 840000)
        else:
            tiny_checkpoints.write(target, family, SEEDS.get(family, 0))
    for name, family in LORAS.items():
        write_lora(root / "loras" / name, family=family, fmt="kohya", seed=3)
    return root


@pytest.fixture(scope="module")
def registry():
    registry = create_registry(user_packs=False)
    assert not registry.problems
    return registry


@pytest.fixture(scope="module")
def manager(models_root):
    return ModelManager(ModelFolders([models_root]), device="cpu")


@pytest.fixture
def input_images(nodegraph_home):
    """The pictures the img2img and inpaint workflows load, in the data folder's input/ (a transparent hole for the
    inpainting mask)."""
    from PIL import Image

    folder = nodegraph_home / "input"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for name in IMAGES:
        rgba = rng.integers(0, 255, (SIZE, SIZE, 4), dtype=np.uint8)
        rgba[..., 3] = 255
        rgba[16:40, 16:40, 3] = 0
        Image.fromarray(rgba, "RGBA").save(folder / name)
    return folder


def shrink(workflow: Workflow) -> None:
    """Make a corpus graph cheap to run on tiny models without changing its shape: small latents, fewer steps."""
    step_inputs = ("steps", "start_at_step", "end_at_step")
    fed_steps = {link.from_node for link in workflow.links if link.to_input in step_inputs}
    for node in workflow:
        if node.type == "EmptyLatentImage":
            node.inputs.update(width=SIZE, height=SIZE)
        elif node.type == "UpscaleLatent":
            node.inputs.update(width=HIRES_SIZE, height=HIRES_SIZE)
        for name in (*step_inputs, "value"):
            value = node.inputs.get(name)
            if (name != "value" or node.id in fed_steps) and isinstance(value, int) and 0 < value < 10000:
                node.inputs[name] = max(1, round(value * STEP_FACTOR))


def run(workflow: Workflow, registry, manager, output: Path):
    result = Executor(registry).run(workflow, settings=RunSettings(output_dir=output, device="cpu",
                                                                   services={"models": manager}))
    assert result.ok, (result.status, result.message, result.problems)
    return result


def corpus_files() -> list[Path]:
    if not SHARED.is_dir():
        pytest.skip(f"the shared corpus ({SHARED}) is not here: it sits beside the repository on the project's "
                    "machines only")
    return sorted((SHARED / "comfyui").glob("*.json")) + sorted((SHARED / "png").glob("comfy_*.png"))


def test_every_corpus_workflow_validates_and_renders_on_tiny_models(models_root, registry, manager, input_images,
                                                                    tmp_path):
    rendered = []
    for path in corpus_files():
        workflow = import_file(path).workflow
        problems = validate(workflow, registry, file_check=file_check(ModelFolders([models_root])))
        assert problems == [], (path.name, problems)
        shrink(workflow)
        output = tmp_path / path.stem
        run(workflow, registry, manager, output)
        images = sorted(output.rglob("*.png"))
        assert images, path.name
        rendered.append(path.name)
    assert len(rendered) == 14


def native_txt2img() -> Workflow:
    """ComfyUI's default graph (the template a fresh ComfyUI opens), built by hand with our nodes."""
    wf = Workflow()
    wf.add_node("LoadCheckpoint", "ckpt", inputs={"ckpt_name": "v1-5-pruned-emaonly-fp16.safetensors"})
    wf.add_node("EmptyLatentImage", "latent", inputs={"width": SIZE, "height": SIZE, "batch_size": 1})
    wf.add_node("CLIPTextEncode", "pos", inputs={"text": "beautiful scenery nature glass bottle landscape, , purple "
                                                         "galaxy bottle,"})
    wf.add_node("CLIPTextEncode", "neg", inputs={"text": "text, watermark"})
    wf.add_node("UNetSampler", "sampler", inputs={"seed": 156680208700286, "steps": 3, "cfg": 8.0,
                                                  "sampler_name": "euler", "scheduler": "comfyui_normal",
                                                  "denoise": 1.0})
    wf.add_node("VAEDecode", "decode")
    wf.add_node("SaveImage", "save")
    for link in ["ckpt.CLIP pos.clip", "ckpt.CLIP neg.clip", "ckpt.MODEL sampler.model",
                 "pos.CONDITIONING sampler.positive", "neg.CONDITIONING sampler.negative",
                 "latent.LATENT sampler.latent_image", "sampler.LATENT decode.samples", "ckpt.VAE decode.vae",
                 "decode.IMAGE save.images"]:
        source, target = link.split()
        wf.connect(*source.split("."), *target.split("."))
    return wf


def decoded(workflow: Workflow, registry, manager, tmp_path: Path) -> np.ndarray:
    decode = next(node.id for node in workflow if node.type == "VAEDecode")
    result = Executor(registry).run(workflow, targets=[decode], settings=RunSettings(
        output_dir=tmp_path, device="cpu", services={"models": manager}))
    assert result.ok, (result.message, result.problems)
    return result.outputs[decode]["IMAGE"].pixels.numpy()


def test_the_imported_default_graph_renders_the_pixels_of_the_same_graph_built_natively(registry, manager,
                                                                                        tmp_path):
    path = SHARED / "comfyui" / "comfyui_templates__default.ui.json"
    if not path.exists():
        pytest.skip(f"the shared corpus ({SHARED}) is not here")
    imported = import_file(path).workflow
    shrink(imported)
    native = native_txt2img()
    def values(workflow):
        return sorted((n.type, sorted(n.inputs.items())) for n in workflow)

    assert values(imported) == values(native), "not the same graph"
    mine = decoded(imported, registry, manager, tmp_path)
    reference = decoded(native, registry, manager, tmp_path)
    assert np.array_equal(mine, reference)
    native.nodes["sampler"].inputs["seed"] += 1
    moved = decoded(native, registry, manager, tmp_path)
    assert np.abs(moved - reference).max() > 0.01, "a different seed must change the image: the test proves nothing"
