"""nodegraph workflows written as ComfyUI API prompts: the corpus prompts come back as they were, import → export
→ import is stable, and what ComfyUI cannot run is refused by name. Also the `import` and `export` commands."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nodegraph.cli import main
from nodegraph.core.graph import Workflow
from nodegraph.core.workflow_io import load
from nodegraph.interop import InteropError, import_file
from nodegraph.interop.comfyui_export import export_api
from nodegraph.interop.comfyui_import import import_api
from nodegraph.packs import create_registry

COMFY = Path(__file__).resolve().parents[2].parent / "shared" / "corpus" / "comfyui"


def corpus(pattern: str) -> list[Path]:
    if not COMFY.is_dir():
        pytest.skip(f"the shared corpus ({COMFY}) is not here: it sits beside the repository on the project's "
                    "machines only")
    return sorted(COMFY.glob(pattern))


@pytest.fixture(scope="module")
def registry():
    return create_registry(user_packs=False)


def comparable(prompt: dict) -> dict:
    """A prompt without what ComfyUI adds for itself: titles, the cache key ``is_changed``, LoadImage's upload
    button; with VAE Encode (for Inpainting)'s grow_mask_by, which older ComfyUI versions did not have yet."""
    result = {}
    for node_id, entry in prompt.items():
        inputs = {k: v for k, v in entry["inputs"].items() if k != "choose file to upload"}
        if entry["class_type"] == "VAEEncodeForInpaint":
            inputs.setdefault("grow_mask_by", 6)
        result[node_id] = {"class_type": entry["class_type"], "inputs": inputs}
    return result


def test_corpus_prompts_export_back_to_themselves(registry):
    files = corpus("*.api.json")
    for path in files:
        original = json.loads(path.read_text(encoding="utf-8"))
        exported = export_api(import_file(path).workflow, registry)
        assert comparable(exported) == comparable(original), path.name
    assert len(files) == 6


def test_import_export_import_is_stable_for_ui_workflows(registry):
    for path in corpus("*.ui.json"):
        first = import_file(path).workflow
        prompt = export_api(first, registry)
        second = import_api(json.loads(json.dumps(prompt))).workflow
        assert export_api(second, registry) == prompt, path.name
        for node in second:
            before = first.nodes[node.id]
            assert node.type == before.type, path.name
            # Every value comes back; the export adds only our defaults for values the file left out.
            added = {name: value for name, value in node.inputs.items() if name not in before.inputs}
            assert before.inputs.items() <= node.inputs.items(), (path.name, node.id)
            assert added == {name: registry[node.type].input(name).default for name in added}, (path.name, added)


def test_primitives_become_literals_notes_are_left_out_and_titles_kept(registry):
    path = corpus("examples_sdxl__sdxl_simple_example.ui.json")[0]
    prompt = export_api(import_file(path).workflow, registry)
    assert not any(entry["class_type"] in ("Note", "PrimitiveNode", "PrimitiveInt") for entry in prompt.values())
    assert prompt["10"]["inputs"]["steps"] == 25 and prompt["11"]["inputs"]["steps"] == 25
    assert prompt["10"]["inputs"]["end_at_step"] == 20 and prompt["11"]["inputs"]["start_at_step"] == 20
    assert prompt["6"]["inputs"]["text"].startswith("evening sunset")
    assert prompt["10"]["_meta"] == {"title": "KSampler (Advanced) - BASE"}


def test_what_comfyui_cannot_run_blocks_the_export_by_name(registry):
    wf = Workflow()
    wf.add_node("LoadCheckpoint", "ckpt", inputs={"ckpt_name": "m.safetensors"})
    wf.add_node("UNetSampler", "sampler", inputs={"sampler_name": "pndm", "scheduler": "normal"})
    wf.add_node("MyPackNode", "custom")
    wf.add_node("FreeU_V2", "freeu", extra={"comfyui": {"widgets_values": [1.1], "inputs": ["model"]}})
    wf.connect("ckpt", "MODEL", "sampler", "model")
    with pytest.raises(InteropError) as error:
        export_api(wf, registry)
    message = str(error.value)
    for expected in ("ComfyUI has no sampler 'pndm'", "'custom' (MyPackNode): no ComfyUI equivalent",
                     "'freeu' (FreeU_V2): a ComfyUI node imported from a UI-format workflow"):
        assert expected in message, message


def test_bypassed_nodes_are_looked_through_and_uni_pc_variants_keep_their_names(registry):
    prompt = {"1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "m.safetensors"}},
              "2": {"class_type": "LoraLoaderModelOnly", "inputs": {"model": ["1", 0], "lora_name": "l.safetensors",
                                                                    "strength_model": 0.5}},
              "3": {"class_type": "KSampler", "inputs": {"model": ["2", 0], "seed": 1, "steps": 2, "cfg": 1.0,
                                                         "sampler_name": "uni_pc_bh2", "scheduler": "karras",
                                                         "denoise": 1.0}}}
    workflow = import_api(prompt).workflow
    assert workflow.nodes["3"].inputs["sampler_name"] == "uni_pc"  # diffusers' UniPC is the bh2 variant
    assert export_api(workflow, registry) == prompt
    workflow.nodes["2"].mode = "bypass"
    bypassed = export_api(workflow, registry)
    assert "2" not in bypassed and bypassed["3"]["inputs"]["model"] == ["1", 0]


def test_import_and_export_commands(tmp_path, capsys):
    source = corpus("examples_lora__lora.ui.json")[0]
    out = tmp_path / "lora.json"
    assert main(["import", str(source), "-o", str(out)]) == 0
    err = capsys.readouterr().err
    assert f"-> {out}" in err and "ComfyUI workflow (UI format)" in err
    assert "epiNoiseoffset_v2.safetensors: not found" in err  # what still blocks a run is listed
    assert load(out).nodes["10"].type == "LoadLoRA"
    assert main(["import", str(source), "-o", str(out)]) == 2  # never replaces a file unasked
    assert "exists" in capsys.readouterr().err
    api = tmp_path / "lora.api.json"
    assert main(["export", str(out), "--to", "comfyui-api", "-o", str(api)]) == 0
    assert json.loads(api.read_text(encoding="utf-8"))["10"]["class_type"] == "LoraLoader"
    assert main(["import", str(tmp_path / "missing.json")]) == 2
    assert "missing.json: cannot read the file" in capsys.readouterr().err
