"""Property-based tests: malformed model files thrown at identification and loading.

Seeds are small files in the real on-disk formats (the synthetic writers' LoRA, embeddings, hypernetwork, a tiny
checkpoint-like safetensors, ``torch.save`` zip and legacy pickles, a Lightning-style pickle with old global names,
a diffusers folder). Each example damages one: truncation, byte flips and overwrites, a hostile safetensors header
(length field huge, "negative" or beyond the file; unknown dtypes; negative or huge shapes; offsets out of range or
overlapping; non-object, deeply nested or duplicate-key JSON), a zip checkpoint with a corrupted ``data.pkl`` or
missing records, a diffusers folder with garbage configs.

The contract: ``identify``, ``load_state_dict`` and ``read_embedding`` either succeed or raise a project error
(:class:`ModelError` / :class:`NodegraphError`); anything else fails. A malicious pickle, however mutated, never runs.

``NODEGRAPH_FUZZ_EXAMPLES`` sets the examples per test (default below: a few hundred in all, well under 30 s);
``scripts/fuzz.sh`` runs thousands. The examples are derandomized: the same ones every run.
"""

from __future__ import annotations

import io
import json
import os
import struct
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file, save_file

from nodegraph.core.errors import NodegraphError
from nodegraph.models.embeddings import read_embedding
from nodegraph.models.errors import ModelError
from nodegraph.models.identify import identify
from nodegraph.models.safe_load import load_state_dict

#: Examples per test; the default keeps the whole file at a few hundred examples.
EXAMPLES = int(os.environ.get("NODEGRAPH_FUZZ_EXAMPLES", "0") or 0)


def fuzz(default: int) -> settings:
    return settings(max_examples=EXAMPLES or default, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                           HealthCheck.data_too_large])


#: Embeddings are read (and their vectors checked) only for files up to this size, so each example stays fast.
SMALL_FILE = 64 * 1024


def check_file(path: Path) -> None:
    """Every entry point on `path`: success, or a project error; any other exception fails the example."""
    calls = [identify, load_state_dict]
    if path.is_dir() or path.stat().st_size <= SMALL_FILE:
        calls.append(read_embedding)
    for call in calls:
        try:
            call(path)
        except (ModelError, NodegraphError) as error:
            assert str(error), f"{call.__name__}: an error without a message"


# --- seeds --------------------------------------------------------------------------------------------------------
def _subset_safetensors(source: Path, target: Path, count: int) -> bytes:
    from safetensors import safe_open

    with safe_open(str(source), framework="pt") as handle:
        metadata = handle.metadata()
    tensors = load_file(str(source))
    kept = dict(sorted(tensors.items())[:count])
    save_file(kept, str(target), metadata=metadata)
    return target.read_bytes()


def _build_seeds(folder: Path) -> dict[str, tuple[str, bytes]]:
    from nodegraph.models.synthetic import write_embedding, write_hypernetwork, write_lora
    from nodegraph.models.synthetic.pickles import lightning_checkpoint, save_legacy_pickle

    seeds: dict[str, tuple[str, bytes]] = {}
    for fmt in ("kohya", "peft", "loha"):
        full = write_lora(folder / f"full_{fmt}.safetensors", fmt=fmt, rank=1)
        seeds[f"lora-{fmt}"] = (".safetensors", _subset_safetensors(full, folder / f"lora_{fmt}.safetensors", 9))
    for fmt, suffix in (("a1111-pt", ".pt"), ("safetensors", ".safetensors"), ("diffusers", ".safetensors"),
                        ("sdxl", ".safetensors")):
        path = write_embedding(folder / f"emb_{fmt}{suffix}", fmt=fmt, vectors=1)
        seeds[f"embedding-{fmt}"] = (suffix, path.read_bytes())
    seeds["hypernetwork"] = (".pt", write_hypernetwork(folder / "hn.pt", widths=(8, 16)).read_bytes())
    generator = torch.Generator().manual_seed(0)
    state = {"model.diffusion_model.input_blocks.0.0.weight": torch.randn(4, 4, 3, 3, generator=generator),
             "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight": torch.randn(
                 4, 8, generator=generator),
             "first_stage_model.decoder.conv_in.weight": torch.randn(4, 4, 1, 1, generator=generator).half(),
             "cond_stage_model.transformer.text_model.embeddings.position_ids": torch.arange(4)}
    save_file(state, str(folder / "ckpt.safetensors"), metadata={"modelspec.prediction_type": "epsilon"})
    seeds["checkpoint-safetensors"] = (".safetensors", (folder / "ckpt.safetensors").read_bytes())
    torch.save({"state_dict": state}, folder / "zip.ckpt")
    seeds["checkpoint-zip"] = (".ckpt", (folder / "zip.ckpt").read_bytes())
    torch.save(state, folder / "legacy.ckpt", _use_new_zipfile_serialization=False)
    seeds["checkpoint-legacy-tar"] = (".ckpt", (folder / "legacy.ckpt").read_bytes())
    save_legacy_pickle(lightning_checkpoint(state), folder / "lightning.ckpt")
    seeds["checkpoint-lightning"] = (".ckpt", (folder / "lightning.ckpt").read_bytes())
    return seeds


class Quiet(dict):
    """A fixture value whose repr stays short in hypothesis' failure reports (the seed files are bytes)."""

    def __repr__(self) -> str:
        return f"<{len(self)} seed files>"


@pytest.fixture(scope="module")
def seeds(tmp_path_factory) -> dict[str, tuple[str, bytes]]:
    return Quiet(_build_seeds(tmp_path_factory.mktemp("fuzz-seeds")))


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz-files")


def _write(workdir: Path, suffix: str, data: bytes) -> Path:
    handle, name = tempfile.mkstemp(suffix=suffix, dir=workdir)
    with os.fdopen(handle, "wb") as file:
        file.write(data)
    return Path(name)


SEED_NAMES = ["lora-kohya", "lora-peft", "lora-loha", "embedding-a1111-pt", "embedding-safetensors",
              "embedding-diffusers", "embedding-sdxl", "hypernetwork", "checkpoint-safetensors", "checkpoint-zip",
              "checkpoint-legacy-tar", "checkpoint-lightning"]


# --- byte-level mutations -----------------------------------------------------------------------------------------
mutation = st.one_of(
    st.tuples(st.just("truncate"), st.floats(0, 1)),
    st.tuples(st.just("flip"), st.floats(0, 1), st.integers(1, 255)),
    st.tuples(st.just("overwrite"), st.floats(0, 1), st.binary(min_size=1, max_size=16)),
    st.tuples(st.just("insert"), st.floats(0, 1), st.binary(min_size=1, max_size=16)),
    st.tuples(st.just("delete"), st.floats(0, 1), st.integers(1, 64)),
)


def mutate(data: bytes, steps: list[tuple[Any, ...]], head_bias: bool) -> bytes:
    """Apply `steps`; with `head_bias` positions fall in the first 4 KiB (headers and pickles live there)."""
    buffer = bytearray(data)
    for step in steps:
        span = min(len(buffer), 4096) if head_bias else len(buffer)
        at = min(int(step[1] * span), max(len(buffer) - 1, 0))
        if step[0] == "truncate":
            del buffer[at:]
        elif not buffer:
            continue
        elif step[0] == "flip":
            buffer[at] ^= step[2]
        elif step[0] == "overwrite":
            buffer[at:at + len(step[2])] = step[2]
        elif step[0] == "insert":
            buffer[at:at] = step[2]
        else:
            del buffer[at:at + step[2]]
    return bytes(buffer)


@fuzz(150)
@given(name=st.sampled_from(SEED_NAMES), steps=st.lists(mutation, min_size=1, max_size=4), head_bias=st.booleans())
def test_mutated_model_files(seeds, workdir, name, steps, head_bias):
    suffix, data = seeds[name]
    path = _write(workdir, suffix, mutate(data, steps, head_bias))
    try:
        check_file(path)
    finally:
        path.unlink()


# --- hostile safetensors headers ----------------------------------------------------------------------------------
DTYPES = ["F32", "F16", "BF16", "I64", "U8", "BOOL", "F8_E4M3", "F64", "f32", "", "Q4_K", "F128", "U64", "I8"]
huge = st.sampled_from([2**31, 2**32, 2**63 - 1, 2**63, 2**64, 2**100, 10**30])
dim = st.one_of(st.integers(0, 8), st.integers(-8, -1), huge, st.floats(allow_nan=True), st.text(max_size=3),
                st.none(), st.booleans())
offset = st.one_of(st.integers(0, 512), st.integers(-2**63, -1), huge, st.floats(), st.text(max_size=3), st.none())
json_leaf = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=8))
json_any = st.recursive(json_leaf, lambda inner: st.lists(inner, max_size=3)
                        | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=12)
entry = st.one_of(
    st.fixed_dictionaries({"dtype": st.sampled_from(DTYPES), "shape": st.lists(dim, max_size=4),
                           "data_offsets": st.lists(offset, min_size=2, max_size=2)}),
    st.fixed_dictionaries({"dtype": st.one_of(st.sampled_from(DTYPES), json_any),
                           "shape": st.one_of(st.lists(dim, max_size=4), json_any),
                           "data_offsets": st.one_of(st.lists(offset, max_size=3), json_any)}),
    json_any,
)
header_object = st.dictionaries(st.text(max_size=12), entry, max_size=5)
metadata = st.one_of(st.none(), st.dictionaries(st.text(max_size=6), json_any, max_size=3), json_any)


def _valid_entries(data: st.DataObject) -> tuple[dict[str, Any], int]:
    """A header whose entries are consistent, tensor after tensor, plus the data size it needs."""
    entries: dict[str, Any] = {}
    position = 0
    for index in range(data.draw(st.integers(0, 4))):
        dtype = data.draw(st.sampled_from(["F32", "F16", "U8", "I64", "BOOL", "BF16"]))
        shape = data.draw(st.lists(st.integers(0, 4), max_size=3))
        count = 1
        for size in shape:
            count *= size
        nbytes = count * {"F32": 4, "F16": 2, "U8": 1, "I64": 8, "BOOL": 1, "BF16": 2}[dtype]
        name = data.draw(st.sampled_from(["emb_params", "clip_l", f"lora_unet_x{index}.lora_down.weight",
                                          f"model.diffusion_model.t{index}", f"t{index}"]))
        entries[name] = {"dtype": dtype, "shape": shape, "data_offsets": [position, position + nbytes]}
        position += nbytes
    return entries, position


@fuzz(150)
@given(data=st.data())
def test_hostile_safetensors_headers(workdir, data):
    kind = data.draw(st.sampled_from(["valid", "tweaked", "random", "non-object", "nested", "duplicate", "bytes"]))
    data_bytes = 0
    if kind in ("valid", "tweaked"):
        header, data_bytes = _valid_entries(data)
        if kind == "tweaked" and header:
            name = data.draw(st.sampled_from(sorted(header)))
            field = data.draw(st.sampled_from(["dtype", "shape", "data_offsets", "overlap"]))
            if field == "dtype":
                header[name]["dtype"] = data.draw(st.sampled_from(DTYPES))
            elif field == "shape":
                header[name]["shape"] = data.draw(st.lists(dim, max_size=4))
            elif field == "data_offsets":
                header[name]["data_offsets"] = data.draw(st.lists(offset, min_size=2, max_size=2))
            elif len(header) > 1:
                first, second = list(header)[:2]
                header[second]["data_offsets"] = list(header[first]["data_offsets"])
        if data.draw(st.booleans()):
            header["__metadata__"] = data.draw(metadata)
        text = json.dumps(header)
    elif kind == "random":
        raw = data.draw(header_object)
        if data.draw(st.booleans()):
            raw["__metadata__"] = data.draw(metadata)
        text = json.dumps(raw)
    elif kind == "non-object":
        text = json.dumps(data.draw(json_any))
    elif kind == "nested":
        depth = data.draw(st.sampled_from([100, 1000, 5000, 100_000]))
        opener = data.draw(st.sampled_from(["[", '{"a":']))
        inner = "[" * depth + "]" * depth
        text = '{"t": ' + (inner if opener == "[" else '{"a":' * depth + "1" + "}" * depth) + "}"
    elif kind == "duplicate":
        first, _ = _valid_entries(data)
        body = ", ".join(f"{json.dumps(k)}: {json.dumps(v)}" for k, v in first.items())
        dup = json.dumps({"dtype": "F32", "shape": [1], "data_offsets": [0, 4]})
        text = "{" + (body + ", " if body else "") + f'"x": {dup}, "x": {dup}' + "}"
        data_bytes = 4
    else:
        text = data.draw(st.binary(max_size=64)).decode("latin-1")
    raw_header = text.encode("utf-8", "surrogatepass") if kind != "bytes" else text.encode("latin-1")
    if data.draw(st.booleans()):
        raw_header += b" " * data.draw(st.integers(0, 7))  # safetensors pads headers to 8 bytes
    length_kind = data.draw(st.sampled_from(["exact", "exact", "exact", "huge", "negative", "beyond", "short",
                                             "zero"]))
    length = {"exact": len(raw_header), "huge": data.draw(huge.filter(lambda n: n < 2**64)),
              "negative": 2**64 - data.draw(st.integers(1, 2**20)), "beyond": len(raw_header) + 1 + data_bytes,
              "short": max(len(raw_header) - 1, 0), "zero": 0}[length_kind]
    payload = bytes(data.draw(st.sampled_from([data_bytes, max(data_bytes - 1, 0), data_bytes + 3])))
    path = _write(workdir, ".safetensors", struct.pack("<Q", length) + raw_header + payload)
    try:
        check_file(path)
    finally:
        path.unlink()


# --- zip checkpoints with damaged records -------------------------------------------------------------------------
@fuzz(100)
@given(name=st.sampled_from(["checkpoint-zip", "embedding-a1111-pt", "hypernetwork", "checkpoint-lightning"]),
       action=st.sampled_from(["mutate-pkl", "drop", "rename", "replace-pkl", "empty-record", "extra"]),
       steps=st.lists(mutation, min_size=1, max_size=3), choice=st.integers(0, 100),
       pickled=st.binary(max_size=64))
def test_damaged_zip_checkpoints(seeds, workdir, name, action, steps, choice, pickled):
    suffix, data = seeds[name]
    source = zipfile.ZipFile(io.BytesIO(data))
    records = [(info, source.read(info)) for info in source.infolist()]
    index = choice % len(records)
    pkl = next((i for i, (info, _) in enumerate(records) if info.filename.endswith("data.pkl")), index)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as target:
        for i, (info, body) in enumerate(records):
            arcname = info.filename
            if action == "mutate-pkl" and i == pkl:
                body = mutate(body, steps, head_bias=False)
            elif action == "replace-pkl" and i == pkl:
                body = pickled
            elif action == "drop" and i == index:
                continue
            elif action == "rename" and i == index:
                arcname = arcname.rsplit("/", 1)[0] + "/renamed" + str(choice)
            elif action == "empty-record" and i == index:
                body = b""
            target.writestr(arcname, body)
        if action == "extra":
            target.writestr(records[0][0].filename.split("/")[0] + "/data/999", pickled)
    path = _write(workdir, suffix, out.getvalue())
    try:
        check_file(path)
    finally:
        path.unlink()


# --- diffusers folders with garbage configs -----------------------------------------------------------------------
CONFIGS = ["model_index.json", "unet/config.json", "scheduler/scheduler_config.json", "config.json"]


@fuzz(60)
@given(targets=st.lists(st.sampled_from(CONFIGS), min_size=1, max_size=3, unique=True),
       garbage=st.one_of(st.binary(max_size=48), json_any.map(lambda v: json.dumps(v).encode()),
                         st.dictionaries(st.sampled_from(["_class_name", "cross_attention_dim", "in_channels",
                                                          "prediction_type"]), json_any | st.just("ControlNetModel"),
                                         max_size=4).map(lambda v: json.dumps(v).encode()),
                         st.sampled_from([b"[" * 100_000, b'{"a":' * 50_000, b"\xff\xfe{}", b"{}"])))
def test_diffusers_folders_with_garbage_configs(workdir, targets, garbage):
    from nodegraph.models.synthetic import write_diffusers_config

    folder = Path(tempfile.mkdtemp(dir=workdir))
    write_diffusers_config(folder, "sd1")
    for target in targets:
        file = folder / target
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_bytes(garbage)
    if "config.json" in targets:  # a ControlNet folder has no model_index.json
        (folder / "model_index.json").unlink(missing_ok=True)
    for call in (identify, load_state_dict, read_embedding):
        try:
            call(folder)
        except (ModelError, NodegraphError) as error:
            assert str(error)


# --- a malicious pickle never runs --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def malicious(tmp_path_factory) -> dict[str, Any]:
    from nodegraph.models.synthetic import write_malicious_pickle

    folder = tmp_path_factory.mktemp("fuzz-malicious")
    marker = folder / "PWNED"
    path = write_malicious_pickle(folder / "evil.ckpt", marker)
    return Quiet(data=path.read_bytes(), marker=marker)


@fuzz(60)
@given(steps=st.lists(mutation, max_size=3), suffix=st.sampled_from([".ckpt", ".pt", ".bin"]))
def test_mutated_malicious_pickle_never_runs(workdir, malicious, steps, suffix):
    data, marker = malicious["data"], malicious["marker"]
    path = _write(workdir, suffix, mutate(data, steps, head_bias=False))
    try:
        check_file(path)
        assert not marker.exists(), "the malicious pickle's code ran"
    finally:
        path.unlink()
        marker.unlink(missing_ok=True)
