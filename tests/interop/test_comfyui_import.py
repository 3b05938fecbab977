"""ComfyUI workflows (UI and API form, JSON and PNG) imported as nodegraph workflows: the real files of the shared
corpus, and synthetic ones for what the corpus does not show (placeholders, reroutes, modes, newer link objects)."""

from __future__ import annotations

import copy
import json
import random
from pathlib import Path

import pytest

from nodegraph.core.validate import validate
from nodegraph.core.workflow_io import dumps, loads
from nodegraph.interop import InteropError, import_file, import_text
from nodegraph.interop.comfyui_import import import_api, import_ui
from nodegraph.interop.comfyui_nodes import BY_COMFY_TYPE
from nodegraph.packs import create_registry

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "corpus"
COMFY = SHARED / "comfyui"
PNGS = SHARED / "png"


def corpus(pattern: str, folder: Path = COMFY) -> list[Path]:
    """The corpus files matching `pattern`, or a skip when the shared corpus is absent (a fresh clone)."""
    if not folder.is_dir():
        pytest.skip(f"the shared corpus ({folder}) is not here: it sits beside the repository on the project's "
                    "machines only")
    files = sorted(folder.glob(pattern))
    assert files, f"no {pattern} in {folder}"
    return files


def pairs() -> list[tuple[Path, Path]]:
    """(UI form, API form) of the same graphs."""
    return [(ui, ui.with_name(ui.name.replace(".ui.json", ".api.json"))) for ui in corpus("*.ui.json")
            if ui.with_name(ui.name.replace(".ui.json", ".api.json")).exists()]


@pytest.fixture(scope="module")
def registry():
    return create_registry(user_packs=False)


def structural_problems(workflow, registry) -> list:
    """Validation problems other than refused sampler names and missing input images (checked elsewhere)."""
    return [p for p in validate(workflow, registry) if p.code != "invalid_choice" and p.port != "image"]


# --- the real corpus ------------------------------------------------------------------------------------------------
def test_every_corpus_workflow_and_image_imports_and_round_trips(registry):
    files = corpus("*.json") + corpus("comfy_*.png", PNGS)
    for path in files:
        result = import_file(path)
        assert "ComfyUI" in result.source, (path.name, result.source)
        assert loads(dumps(result.workflow)) == result.workflow, path.name
        assert structural_problems(result.workflow, registry) == [], (path.name, result.warnings)
        assert not [w for w in result.warnings if "placeholder" in w], (path.name, result.warnings)


def test_ui_and_api_forms_of_one_graph_give_the_same_nodes_values_and_links():
    checked = 0
    for ui_path, api_path in pairs():
        ui = import_file(ui_path).workflow
        api = import_file(api_path).workflow
        primitives = {n.id for n in ui if n.type.startswith("Primitive")}
        for node in api:
            twin = ui.nodes[node.id]
            assert (twin.type, twin.inputs) == (node.type, node.inputs), (ui_path.name, node.id)
        # In the UI form a PrimitiveNode links into the inputs the API form holds as literals.
        ui_links = {link for link in ui.links if link.from_node not in primitives}
        assert ui_links == set(api.links), ui_path.name
        assert {n.id for n in ui if n.type not in ("Note", "PrimitiveInt", "PrimitiveString")} == set(api.nodes)
        checked += 1
    assert checked == 5


def test_ui_import_keeps_positions_sizes_titles_groups_and_notes():
    path = COMFY / "examples_sdxl__sdxl_simple_example.ui.json"
    corpus(path.name)
    doc = json.loads(path.read_text(encoding="utf-8"))
    workflow = import_file(path).workflow
    for entry in doc["nodes"]:
        node = workflow.nodes[str(entry["id"])]
        assert node.ui["pos"] == pytest.approx(entry["pos"], abs=0.01)
        if "title" in entry:
            assert node.title == entry["title"]
    groups = workflow.meta["groups"]
    assert [(g["title"], g["pos"] + g["size"]) for g in groups] == [
        (g["title"], pytest.approx(g["bounding"], abs=0.01)) for g in doc["groups"]]
    notes = {n.id: n.inputs["text"] for n in workflow if n.type == "Note"}
    assert notes == {str(e["id"]): e["widgets_values"][0] for e in doc["nodes"] if e["type"] == "Note"}
    # The KSampler (Advanced) widgets, by name despite the UI-only control_after_generate value after the seed.
    base = workflow.nodes["10"]
    assert base.type == "UNetSamplerAdvanced"
    assert base.inputs == {"add_noise": "enable", "noise_seed": 721897303308196, "steps": 25, "cfg": 8,
                           "sampler_name": "euler", "scheduler": "comfyui_normal", "start_at_step": 0,
                           "end_at_step": 20, "return_with_leftover_noise": "enable"}
    # The shared "steps" PrimitiveNode feeds both samplers.
    steps = workflow.nodes["45"]
    assert (steps.type, steps.inputs, steps.title) == ("PrimitiveInt", {"value": 25}, "steps")
    assert sorted((link.to_node, link.to_input) for link in workflow.links_from("45")) == [
        ("10", "steps"), ("11", "steps")]


def test_comfyui_png_prefers_the_ui_workflow_and_falls_back_to_the_api_prompt(tmp_path):
    from PIL import Image, PngImagePlugin

    source = corpus("comfy_lora_lora.png", PNGS)[0]
    with Image.open(source) as image:
        texts = dict(image.text)
    ui = import_file(source)
    assert ui.source == "image with a ComfyUI workflow (UI format)"
    assert ui.workflow.nodes["10"].type == "LoadLoRA"
    info = PngImagePlugin.PngInfo()
    info.add_text("workflow", "{not json")
    info.add_text("prompt", texts["prompt"])
    broken = tmp_path / "broken-ui.png"
    Image.new("RGB", (8, 8)).save(broken, pnginfo=info)
    fallback = import_file(broken)
    assert fallback.source == "image with a ComfyUI workflow (API format)"
    assert "could not be read" in fallback.warnings[0]
    assert fallback.workflow.nodes["10"].inputs == ui.workflow.nodes["10"].inputs


# --- what the corpus does not show ------------------------------------------------------------------------------------
def ui_doc(nodes, links, **extra):
    return {"last_node_id": 99, "last_link_id": 99, "nodes": nodes, "links": links, "version": 0.4, **extra}


def ksampler(node_id, inputs, widgets=(5, "randomize", 20, 7.5, "euler", "karras", 1.0), **extra):
    return {"id": node_id, "type": "KSampler", "pos": [0, 0], "inputs": inputs,
            "outputs": [{"name": "LATENT", "type": "LATENT", "links": []}], "widgets_values": list(widgets), **extra}


def test_an_unknown_type_becomes_a_placeholder_kept_verbatim_and_named_by_validation(registry):
    nodes = [
        {"id": 1, "type": "CheckpointLoaderSimple", "pos": [0, 0], "widgets_values": ["a.safetensors"],
         "outputs": [{"name": "MODEL", "type": "MODEL", "links": [1]}, {"name": "CLIP", "type": "CLIP", "links": []},
                     {"name": "VAE", "type": "VAE", "links": []}]},
        {"id": 2, "type": "FreeU_V2", "pos": [300, 0], "widgets_values": [1.3, 1.4, 0.9, 0.2],
         "inputs": [{"name": "model", "type": "MODEL", "link": 1}],
         "outputs": [{"name": "MODEL", "type": "MODEL", "links": [2]}]},
        ksampler(3, [{"name": "model", "type": "MODEL", "link": 2}]),
    ]
    links = [[1, 1, 0, 2, 0, "MODEL"], [2, 2, 0, 3, 0, "MODEL"]]
    result = import_ui(ui_doc(nodes, links))
    placeholder = result.workflow.nodes["2"]
    assert placeholder.type == "FreeU_V2"
    assert placeholder.extra["comfyui"]["widgets_values"] == [1.3, 1.4, 0.9, 0.2]
    assert {str(link) for link in result.workflow.links} == {"1.MODEL -> 2.model", "2.MODEL -> 3.model"}
    assert any("'FreeU_V2' has no nodegraph equivalent" in w for w in result.warnings)
    reloaded = loads(dumps(result.workflow))
    assert reloaded.nodes["2"].extra == placeholder.extra
    unknown = [p for p in validate(reloaded, registry) if p.code == "unknown_type"]
    assert [(p.node_id, "ComfyUI node type 'FreeU_V2'" in p.message) for p in unknown] == [("2", True)]


def test_reroutes_collapse_modes_map_and_link_objects_are_read():
    nodes = [
        {"id": 1, "type": "EmptyLatentImage", "pos": [0, 0], "widgets_values": [64, 64, 1], "mode": 4,
         "outputs": [{"name": "LATENT", "type": "LATENT", "links": [1]}]},
        {"id": 2, "type": "Reroute", "pos": [100, 0], "inputs": [{"name": "", "type": "*", "link": 1}],
         "outputs": [{"name": "", "type": "LATENT", "links": [2]}]},
        {"id": 3, "type": "Reroute", "pos": [150, 0], "inputs": [{"name": "", "type": "*", "link": 2}],
         "outputs": [{"name": "", "type": "LATENT", "links": [3]}]},
        ksampler(4, [{"name": "latent_image", "type": "LATENT", "link": 3}], mode=2),
    ]
    links = [{"id": 1, "origin_id": 1, "origin_slot": 0, "target_id": 2, "target_slot": 0, "type": "LATENT"},
             {"id": 2, "origin_id": 2, "origin_slot": 0, "target_id": 3, "target_slot": 0, "type": "LATENT"},
             {"id": 3, "origin_id": 3, "origin_slot": 0, "target_id": 4, "target_slot": 0, "type": "LATENT"}]
    workflow = import_ui(ui_doc(nodes, links)).workflow
    assert set(workflow.nodes) == {"1", "4"}
    assert [str(link) for link in workflow.links] == ["1.LATENT -> 4.latent_image"]
    assert (workflow.nodes["1"].mode, workflow.nodes["4"].mode) == ("bypass", "mute")
    # ComfyUI's karras: the schedule that follows ComfyUI's formula (plain karras is diffusers').
    assert workflow.nodes["4"].inputs == {"seed": 5, "steps": 20, "cfg": 7.5, "sampler_name": "euler",
                                          "scheduler": "comfyui_karras", "denoise": 1.0}


def test_widget_values_by_name_and_an_unmarked_control_value_are_read():
    nodes = [{"id": 1, "type": "KSampler", "pos": [0, 0], "widgets_values": {"seed": 3, "steps": 9, "cfg": 2.0,
                                                                            "sampler_name": "dpmpp_2m_sde_gpu"}},
             {"id": 2, "type": "PrimitiveInt", "pos": [0, 0], "widgets_values": [42, "increment"]},
             {"id": 3, "type": "EmptyLatentImage", "pos": [0, 0], "widgets_values": [64, 64, 1, "extra"]}]
    result = import_ui(ui_doc(nodes, []))
    assert result.workflow.nodes["1"].inputs == {"seed": 3, "steps": 9, "cfg": 2.0, "sampler_name": "dpmpp_2m_sde"}
    assert result.workflow.nodes["2"].inputs == {"value": 42}
    assert any("node 3 (EmptyLatentImage)" in w and "'extra'" in w for w in result.warnings)


def test_an_api_prompt_gets_a_left_to_right_layout_and_placeholders_keep_their_inputs():
    prompt = {"1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "m.safetensors"}},
              "2": {"class_type": "CLIPTextEncode", "inputs": {"text": "a cat", "clip": ["1", 1]}},
              "3": {"class_type": "ConditioningZeroOut", "inputs": {"conditioning": ["2", 0]},
                    "_meta": {"title": "zero"}}}
    result = import_text(json.dumps({"prompt": prompt, "client_id": "x"}))
    workflow = result.workflow
    assert workflow.nodes["1"].ui["pos"][0] < workflow.nodes["2"].ui["pos"][0] < workflow.nodes["3"].ui["pos"][0]
    assert [str(link) for link in workflow.links] == ["1.CLIP -> 2.clip", "2.CONDITIONING -> 3.conditioning"]
    assert workflow.nodes["3"].type == "ConditioningZeroOut" and workflow.nodes["3"].title == "zero"


def test_every_mapped_type_names_inputs_and_outputs_our_node_type_has(registry):
    for mapping in BY_COMFY_TYPE.values():
        node_def = registry.get(mapping.our_type)
        if node_def is None and mapping.our_type == "UNetSamplerAdvanced":
            continue  # arrives with the advanced sampler
        assert node_def is not None, mapping.our_type
        for name in mapping.widgets:
            assert not name or node_def.input(mapping.our_input(name)) is not None, (mapping.comfy_type, name)
        assert [node_def.output(name) is not None for name in mapping.outputs] == [True] * len(mapping.outputs)


def test_files_that_are_not_workflows_are_refused_with_one_clear_message(tmp_path):
    cases = {"list.json": "[1, 2]", "other.json": '{"a": 1}', "broken.json": '{"nodes": [', "empty.txt": "",
             "image.png": None}
    for name, text in cases.items():
        path = tmp_path / name
        if text is None:
            from PIL import Image

            Image.new("RGB", (4, 4)).save(path)
        else:
            path.write_text(text, encoding="utf-8")
        with pytest.raises(InteropError) as error:
            import_file(path)
        assert str(error.value).startswith(str(path)), str(error.value)
        assert "\n" not in str(error.value)


def test_mangled_corpus_workflows_import_or_are_refused_never_crash():
    documents = [json.loads(p.read_text(encoding="utf-8")) for p in corpus("*.json")]
    rng = random.Random(7)
    junk = [None, -1, 1e300, "", "x", [], {}, [1, 2], {"0": "a"}, True, 10**30]
    for trial in range(600):
        doc = copy.deepcopy(rng.choice(documents))
        for _ in range(rng.randint(1, 4)):
            _mangle(doc, rng, junk)
        try:
            result = import_text(json.dumps(doc))
        except InteropError:
            continue
        assert loads(dumps(result.workflow)) == result.workflow, trial


def _mangle(value, rng, junk):
    """Replace one value somewhere inside `value` with junk."""
    while True:
        if isinstance(value, dict) and value:
            key = rng.choice(list(value))
            if rng.random() < 0.3 or not isinstance(value[key], (dict, list)):
                value[key] = copy.deepcopy(rng.choice(junk))
                return
            value = value[key]
        elif isinstance(value, list) and value:
            index = rng.randrange(len(value))
            if rng.random() < 0.3 or not isinstance(value[index], (dict, list)):
                value[index] = copy.deepcopy(rng.choice(junk))
                return
            value = value[index]
        else:
            return


def test_every_comfyui_sampler_and_scheduler_name_runs_here_or_is_refused_by_name(registry):
    from nodegraph.interop.comfyui_nodes import COMFY_SAMPLERS, COMFY_SCHEDULERS

    refused = []
    for sampler in COMFY_SAMPLERS:
        for scheduler in COMFY_SCHEDULERS:
            prompt = {"1": {"class_type": "KSampler", "inputs": {"seed": 1, "steps": 2, "cfg": 1.0,
                                                                 "sampler_name": sampler, "scheduler": scheduler,
                                                                 "denoise": 1.0}}}
            node = import_api(prompt).workflow.nodes["1"]
            problems = {p.port: p.message for p in validate(import_api(prompt).workflow, registry)
                        if p.port in ("sampler_name", "scheduler")}
            for port, name in (("sampler_name", sampler), ("scheduler", scheduler)):
                if port in problems:
                    assert str(node.inputs[port]) in problems[port], (sampler, scheduler, problems)
                    refused.append(name)
    assert "euler" not in refused and "normal" not in refused and "dpm_fast" in refused


def test_a_ksampler_with_denoise_keeps_comfyuis_meaning_on_the_advanced_sampler():
    """ComfyUI's KSampler at denoise 0.87 and 20 steps runs the last 20 steps of an int(20 / 0.87) = 22-step schedule
    (the UNet Sampler would run the last 17 of 20): the import is the advanced sampler from step 2 of 22, noise added
    there, and the export gives the KSampler back."""
    from nodegraph.interop.comfyui_export import export_api

    path = corpus("examples_img2img__img2img_workflow.api.json")[0]
    original = json.loads(path.read_text(encoding="utf-8"))
    workflow = import_file(path).workflow
    sampler = workflow.nodes["3"]
    assert sampler.type == "UNetSamplerAdvanced"
    assert sampler.inputs == {"add_noise": "enable", "noise_seed": 280823642470253, "steps": 22, "cfg": 8.0,
                              "sampler_name": "dpmpp_2m", "scheduler": "comfyui_normal", "start_at_step": 2,
                              "end_at_step": 10000, "return_with_leftover_noise": "disable"}
    exported = export_api(workflow, create_registry(user_packs=False))["3"]
    assert exported == {"class_type": "KSampler", "inputs": original["3"]["inputs"]}
    sampler.inputs["start_at_step"] = 3  # edited since: exported as what it now is
    assert export_api(workflow, create_registry(user_packs=False))["3"]["class_type"] == "KSamplerAdvanced"


def test_the_bundled_example_imports_the_same_in_both_forms_and_validates(registry):
    """Runs in a fresh clone too: ComfyUI's LoRA example (tests/data/comfyui, with its licence), UI and API form."""
    folder = Path(__file__).resolve().parents[1] / "data" / "comfyui"
    ui = import_file(folder / "examples_lora__lora.ui.json").workflow
    api = import_file(folder / "examples_lora__lora.api.json").workflow
    assert {n.id: (n.type, n.inputs) for n in ui} == {n.id: (n.type, n.inputs) for n in api}
    assert set(ui.links) == set(api.links) and len(ui.links) == 11
    assert ui.nodes["10"].inputs == {"lora_name": "epiNoiseoffset_v2.safetensors", "strength_model": 1,
                                     "strength_clip": 1}
    assert validate(ui, registry) == []
    assert ui.nodes["10"].ui["pos"] != api.nodes["10"].ui["pos"]  # the UI form's own; the API form laid out
