"""Property-based tests of the whole pre-run path with hostile values: load → node upgrades → validation (with the
model-file check) → the pre-run add-on check (`family_problems`).

`test_fuzz.py` mutates the structure of documents built on the test pack; this file takes a real workflow of the
built-in nodes (checkpoint, LoRA, embedding, hypernetwork, upscale model, ControlNet) and puts in the values a
hostile user would: non-string model names, lists and objects where strings belong, integers of hundreds or
thousands of digits for INT and FLOAT inputs, names over 255 bytes, ``~user`` paths, NUL characters, lone
surrogates, values nested thousands deep, strings of 100,000 characters. Through the loader and through the Python
API (values put straight into a loaded workflow, past the loader's checks), the only outcomes allowed are the
project's own errors and problem lists, with messages of bounded length.
"""

from __future__ import annotations

import copy
import json
import struct
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nodegraph.core.errors import NodegraphError, WorkflowError
from nodegraph.core.migrations import upgrade_node_versions
from nodegraph.core.validate import Problem, validate
from nodegraph.core.workflow_io import from_document, loads
from nodegraph.models.discovery import ModelFolders, file_check
from nodegraph.models.preflight import family_problems
from nodegraph.packs import create_registry
from tests.core.test_fuzz import _mutate, fuzz, mostly

ROOT = Path(__file__).resolve().parents[2]
#: Messages quote user values shortened: no problem or error may come near the size of the values thrown in.
MAX_MESSAGE = 2000


@pytest.fixture(scope="module")
def registry():
    return create_registry(user_packs=False)


def _safetensors(path: Path, shapes: dict[str, list[int]]) -> Path:
    """A float32 .safetensors file of zeros with these tensor shapes (written by hand: no torch needed)."""
    header: dict[str, Any] = {}
    offset = 0
    for name, shape in shapes.items():
        size = 4
        for dim in shape:
            size *= dim
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    text = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(text)) + text + bytes(offset))
    return path


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> ModelFolders:
    """Model folders holding an SD 1.x LoRA and an embedding, so that add-ons resolve and the check follows their
    links back to the checkpoint; everything else is not found."""
    root = tmp_path_factory.mktemp("models")
    for kind in ("checkpoints", "loras", "embeddings", "hypernetworks", "upscale_models", "controlnet"):
        (root / "models" / kind).mkdir(parents=True)
    prefix = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k"
    _safetensors(root / "models" / "loras" / "style.safetensors",
                 {f"{prefix}.lokr_w1": [4, 4], f"{prefix}.lokr_w2": [80, 192], f"{prefix}.alpha": []})
    _safetensors(root / "models" / "embeddings" / "neg.safetensors", {"emb_params": [2, 768]})
    return ModelFolders([root], include_home=False)


def _base_doc() -> dict[str, Any]:
    doc = json.loads((ROOT / "resources" / "workflows" / "lora-embedding-vae.json").read_text(encoding="utf-8"))
    doc["nodes"]["lora"]["inputs"]["lora_name"] = "style.safetensors"
    doc["nodes"]["embedding"]["inputs"]["embedding_name"] = "neg.safetensors"
    doc["nodes"].update({
        "hyper": {"type": "LoadHypernetwork", "inputs": {"hypernetwork_name": "h.pt", "strength": 1.0}},
        "upscale": {"type": "LoadUpscaleModel", "inputs": {"model_name": "4x.pth"}},
        "cn": {"type": "LoadControlNet", "inputs": {"control_net_name": "style.safetensors"}},
        "apply": {"type": "ApplyControlNet", "inputs": {"strength": 1.0}},
    })
    doc["links"] += [{"from": ["ckpt", "MODEL"], "to": ["hyper", "model"]},
                     {"from": ["cn", "CONTROL_NET"], "to": ["apply", "control_net"]},
                     {"from": ["positive", "CONDITIONING"], "to": ["apply", "positive"]},
                     {"from": ["negative", "CONDITIONING"], "to": ["apply", "negative"]}]
    return doc


BASE_DOC = _base_doc()
#: where each node keeps its values: file-name inputs, numbers, choices and text
PORTS = {"ckpt": ["ckpt_name"], "lora": ["lora_name", "strength_model", "strength_clip"],
         "embedding": ["embedding_name", "token"], "hyper": ["hypernetwork_name", "strength"],
         "upscale": ["model_name"], "cn": ["control_net_name"], "vae": ["vae_name"],
         "sample": ["seed", "steps", "cfg", "denoise", "sampler_name", "scheduler"],
         "latent": ["width", "height", "batch_size"], "apply": ["strength", "start_percent", "end_percent"],
         "positive": ["text"], "save": ["filename_prefix"]}
MODEL_NAMES = ["style.safetensors", "neg.safetensors", "missing.safetensors", "sub/style.safetensors", "../x",
               "/no/such/file.safetensors", "~no_such_user_xyz/a.safetensors", "~/a.safetensors", "."]


def _nested(levels: int) -> Any:
    value: Any = "x"
    for _ in range(levels):
        value = [value]
    return value


huge_ints = st.sampled_from([10**400, -(10**400), 2**1024, 10**999, -(10**999), 2**1023, 10**308, 2**63, -(2**64)])
long_names = st.sampled_from(["a" * 300 + ".safetensors", "é" * 150, "sub/" + "b" * 256, "/tmp/" + "c" * 300,
                              "d/" * 2100 + "e", "x" * 100_000])
odd_names = st.sampled_from(["", "a\0b", "\ud800.safetensors", "\udcff", " ", "\n", "style.safetensors\0"])
deep = st.sampled_from([30, 63, 64, 65, 200]).map(_nested)
containers = st.sampled_from([[], {}, ["style.safetensors"], {"name": "style.safetensors"}, [1, [2]], {"": None}]
                             ).map(copy.deepcopy)
scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(
    max_size=8)
hostile_values = (huge_ints | long_names | odd_names | deep | containers | scalars | st.sampled_from(MODEL_NAMES))
#: values the loader never lets through, put into a loaded workflow through the Python API
api_only_values = st.sampled_from([10**5000, -(10**5000), float("nan"), float("inf"), (1, 2), {1: "x"},
                                   b"bytes", Path("style.safetensors")]) | st.sampled_from([1_000, 10_000]).map(_nested)


@st.composite
def hostile_documents(draw) -> dict[str, Any]:
    doc = copy.deepcopy(BASE_DOC)
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        if draw(mostly(st.just(True), st.just(False), odds=4)):
            node_id = draw(st.sampled_from(sorted(PORTS)))
            nodes = doc.get("nodes")
            entry = nodes.get(node_id) if isinstance(nodes, dict) else None
            if isinstance(entry, dict) and isinstance(entry.get("inputs"), dict):
                entry["inputs"][draw(st.sampled_from(PORTS[node_id]))] = draw(hostile_values)
        else:
            _mutate(draw, doc)  # the structural mutations of test_fuzz: lost nodes, bad links, wrong containers
    return doc


def _check_problems(problems: Any) -> None:
    assert isinstance(problems, list)
    for problem in problems:
        assert isinstance(problem, Problem) and problem.message
        assert len(str(problem)) < MAX_MESSAGE, str(problem)[:300]


def _check_error(error: NodegraphError) -> None:
    assert str(error).strip() and len(str(error)) < MAX_MESSAGE, str(error)[:300]


def check_pipeline(workflow, registry, folders) -> None:
    """Node upgrades, validation with the file check, and the pre-run check: problems or the project's errors."""
    try:
        upgrade_node_versions(workflow, registry)
    except WorkflowError as error:
        _check_error(error)
        return
    _check_problems(validate(workflow, registry, file_check=file_check(folders)))
    _check_problems(family_problems(workflow, registry, folders))


def check_document(doc: dict[str, Any], registry, folders) -> Any:
    try:
        workflow = from_document(doc)
    except WorkflowError as error:
        _check_error(error)
        workflow = None
    try:
        text = json.dumps(doc, ensure_ascii=False)
    except (ValueError, RecursionError):  # the test's own serialising: some values have no JSON text
        text = None
    if text is not None:
        try:
            from_text = loads(text)
        except WorkflowError as error:
            _check_error(error)
            from_text = None
        assert (from_text is None) == (workflow is None)
    if workflow is not None:
        check_pipeline(workflow, registry, folders)
    return workflow


@fuzz(300)
@given(doc=hostile_documents())
def test_hostile_documents(registry, folders, doc):
    check_document(doc, registry, folders)


@fuzz(150)
@given(doc=hostile_documents(), node_id=st.sampled_from(sorted(PORTS)), data=st.data())
def test_hostile_values_through_the_python_api(registry, folders, doc, node_id, data):
    workflow = check_document(doc, registry, folders)
    if workflow is None or node_id not in workflow.nodes:
        return
    port = data.draw(st.sampled_from(PORTS[node_id]))
    workflow.nodes[node_id].inputs[port] = data.draw(api_only_values | hostile_values)
    check_pipeline(workflow, registry, folders)


def test_the_base_document_reaches_the_family_check(registry, folders):
    """The starting point loads, and its add-ons resolve, so mutations of it exercise the whole pre-run check."""
    workflow = from_document(BASE_DOC)
    assert folders.resolve("loras", "style.safetensors") and folders.resolve("embeddings", "neg.safetensors")
    problems = validate(workflow, registry, file_check=file_check(folders)) + family_problems(workflow, registry,
                                                                                              folders)
    assert {p.node_id for p in problems} >= {"ckpt", "cn"}
