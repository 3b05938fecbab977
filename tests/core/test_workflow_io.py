"""Workflow file format v1: reading, canonical writing, round trips, atomic saving and malformed input."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from nodegraph.core.errors import WorkflowError
from nodegraph.core.graph import Link, NodeInstance, Workflow
from nodegraph.core.validate import validate
from nodegraph.core.workflow_io import dumps, from_document, load, loads, save, to_document

SPEC_EXAMPLE = {
    "format": "nodegraph-workflow",
    "version": 1,
    "nodes": {
        "ckpt": {
            "type": "LoadCheckpoint",
            "inputs": {"ckpt_name": "v1-5-pruned-emaonly.safetensors"},
            "ui": {"pos": [0, 0]},
        },
        "pos": {"type": "CLIPTextEncode", "inputs": {"text": "a photo of a cat"}},
        "sample": {
            "type": "UNetSampler",
            "inputs": {"seed": 42, "steps": 20},
            "title": "Sampler",
            "mode": "normal",
        },
    },
    "links": [{"from": ["ckpt", "CLIP"], "to": ["pos", "clip"]}],
    "meta": {},
}

SPEC_EXAMPLE_CANONICAL = """\
{
  "format": "nodegraph-workflow",
  "version": 1,
  "nodes": {
    "ckpt": {
      "type": "LoadCheckpoint",
      "inputs": {
        "ckpt_name": "v1-5-pruned-emaonly.safetensors"
      },
      "ui": {
        "pos": [0, 0]
      }
    },
    "pos": {
      "type": "CLIPTextEncode",
      "inputs": {
        "text": "a photo of a cat"
      }
    },
    "sample": {
      "type": "UNetSampler",
      "title": "Sampler",
      "inputs": {
        "seed": 42,
        "steps": 20
      }
    }
  },
  "links": [
    {"from": ["ckpt", "CLIP"], "to": ["pos", "clip"]}
  ],
  "meta": {}
}
"""


def rich_workflow() -> Workflow:
    """A workflow using every field of the format, built in a deliberately unsorted order."""
    wf = Workflow(meta={"z": 1, "author": "me", "nested": {"b": [1, {"y": 2, "x": 1}], "a": None}},
                  extra={"zz_future_key": {"k": [1, 2]}})
    wf.add_node("Number", "node10", inputs={"value": 10}, ui={"pos": [100, 50.5], "color": "#ff0000"})
    wf.add_node("Number", "node2", inputs={"value": 2}, title="Two", type_version=1)
    wf.add_node("Add", "node1", mode="bypass", extra={"future": True})
    wf.add_node("Collect", "out", mode="mute")
    wf.add_node("PrimitiveString", "prompt", inputs={"value": "ein Foto einer Katze, 猫の写真 🐱\n\"quoted\"\\"})
    wf.connect("node2", "VALUE", "node1", "a")
    wf.connect("node10", "VALUE", "node1", "b")
    wf.connect("node1", "SUM", "out", "value")
    return wf


# --- the spec example -----------------------------------------------------------------------------------------------
def test_spec_example_loads():
    wf = loads(json.dumps(SPEC_EXAMPLE))
    assert list(wf.nodes) == ["ckpt", "pos", "sample"]
    ckpt, pos, sample = wf.node("ckpt"), wf.node("pos"), wf.node("sample")
    assert ckpt.type == "LoadCheckpoint"
    assert ckpt.inputs == {"ckpt_name": "v1-5-pruned-emaonly.safetensors"}
    assert ckpt.ui == {"pos": [0, 0]}
    assert pos.type == "CLIPTextEncode" and pos.inputs == {"text": "a photo of a cat"} and pos.ui == {}
    assert sample.title == "Sampler" and sample.mode == "normal" and sample.inputs == {"seed": 42, "steps": 20}
    assert ckpt.title is None and ckpt.mode == "normal" and ckpt.type_version is None and ckpt.extra == {}
    assert wf.links == [Link("ckpt", "CLIP", "pos", "clip")]
    assert wf.meta == {} and wf.extra == {}


def test_spec_example_saves_to_canonical_text():
    assert dumps(loads(json.dumps(SPEC_EXAMPLE))) == SPEC_EXAMPLE_CANONICAL


def test_spec_example_file_round_trip(tmp_path):
    path = tmp_path / "example.json"
    path.write_text(json.dumps(SPEC_EXAMPLE, indent=4), encoding="utf-8")
    first = load(path)
    save(first, path)
    assert path.read_text(encoding="utf-8") == SPEC_EXAMPLE_CANONICAL
    assert load(path) == first


# --- round trips and canonical form ---------------------------------------------------------------------------------
def test_load_save_load_gives_equal_workflow(tmp_path):
    wf = rich_workflow()
    path = tmp_path / "wf.json"
    save(wf, path)
    loaded = load(path)
    assert loaded == wf
    save(loaded, tmp_path / "again.json")
    assert load(tmp_path / "again.json") == wf
    # every field survived, not just equality in aggregate
    assert loaded.node("node2").title == "Two" and loaded.node("node2").type_version == 1
    assert loaded.node("node1").mode == "bypass" and loaded.node("node1").extra == {"future": True}
    assert loaded.node("node10").ui == {"pos": [100, 50.5], "color": "#ff0000"}
    assert loaded.meta["nested"] == {"b": [1, {"y": 2, "x": 1}], "a": None}
    assert loaded.extra == {"zz_future_key": {"k": [1, 2]}}


def test_dumps_is_byte_stable():
    wf = rich_workflow()
    text = dumps(wf)
    assert dumps(wf) == text
    assert dumps(loads(text)) == text
    assert dumps(loads(dumps(loads(text)))) == text
    assert dumps(wf.copy()) == text


def test_dumps_does_not_depend_on_insertion_order():
    a = Workflow()
    a.add_node("Number", "x", inputs={"b": 1, "a": 2})
    a.add_node("Collect", "y")
    a.add_node("Add", "z")
    a.connect("x", "VALUE", "y", "value")
    a.connect("x", "VALUE", "z", "a")
    b = Workflow()
    b.add_node("Add", "z")
    b.add_node("Collect", "y")
    b.add_node("Number", "x", inputs={"a": 2, "b": 1})
    b.connect("x", "VALUE", "z", "a")
    b.connect("x", "VALUE", "y", "value")
    assert a == b
    assert dumps(a) == dumps(b)


def test_saved_text_ends_with_exactly_one_newline():
    for wf in (Workflow(), rich_workflow(), loads(json.dumps(SPEC_EXAMPLE))):
        text = dumps(wf)
        assert text.endswith("\n") and not text.endswith("\n\n")
        assert "\r" not in text


def test_saved_file_ends_with_exactly_one_newline(tmp_path):
    path = tmp_path / "wf.json"
    save(rich_workflow(), path)
    raw = path.read_bytes()
    assert raw.endswith(b"}\n") and not raw.endswith(b"\n\n") and b"\r" not in raw


def test_top_level_key_order_is_fixed():
    wf = rich_workflow()
    doc = json.loads(dumps(wf))
    assert list(doc)[:5] == ["format", "version", "nodes", "links", "meta"]
    assert list(doc) == ["format", "version", "nodes", "links", "meta", "zz_future_key"]
    empty = json.loads(dumps(Workflow()))
    assert list(empty) == ["format", "version", "nodes", "links", "meta"]
    assert empty == {"format": "nodegraph-workflow", "version": 1, "nodes": {}, "links": [], "meta": {}}


def test_node_key_order_and_omitted_defaults():
    doc = json.loads(dumps(rich_workflow()))
    assert list(doc["nodes"]["node2"]) == ["type", "type_version", "title", "inputs"]
    assert list(doc["nodes"]["node1"]) == ["type", "mode", "inputs", "future"]
    assert list(doc["nodes"]["node10"]) == ["type", "inputs", "ui"]
    assert list(doc["nodes"]["node10"]["ui"]) == ["color", "pos"]  # nested keys are sorted
    assert list(doc["meta"]) == ["author", "nested", "z"]
    assert list(doc["meta"]["nested"]["b"][1]) == ["x", "y"]


def test_nodes_sorted_naturally():
    wf = Workflow()
    for node_id in ["node10", "b", "node2", "node1", "a10", "a9", "node100"]:
        wf.add_node("Number", node_id)
    doc = json.loads(dumps(wf))
    assert list(doc["nodes"]) == ["a9", "a10", "b", "node1", "node2", "node10", "node100"]


def test_one_link_per_line_sorted_by_target():
    wf = Workflow()
    for node_id in ["n1", "n2", "n10", "sum2", "sum10"]:
        wf.add_node("Add", node_id)
    wf.connect("n1", "SUM", "sum10", "b")
    wf.connect("n10", "SUM", "sum10", "a")
    wf.connect("n2", "SUM", "sum2", "a")
    text = dumps(wf)
    link_lines = [line.strip() for line in text.splitlines() if '"from"' in line]
    assert link_lines == [
        '{"from": ["n2", "SUM"], "to": ["sum2", "a"]},',
        '{"from": ["n10", "SUM"], "to": ["sum10", "a"]},',
        '{"from": ["n1", "SUM"], "to": ["sum10", "b"]}',
    ]
    # nothing but the links (and their brackets) between "links" and "meta"
    lines = text.splitlines()
    start = lines.index('  "links": [')
    assert lines[start + 4] == "  ],"
    assert lines[start + 5].startswith('  "meta"')


def test_unicode_survives(tmp_path):
    prompt = "ein Foto einer Katze — 猫の写真, кошка, 🐱🎨, e\u0301, tab\tand\nnewline"
    wf = Workflow(meta={"title": "Ünïcödé ✓"})
    wf.add_node("PrimitiveString", "prompt_ü", inputs={"value": prompt}, title="Prompt 🌸")
    path = tmp_path / "unicode.json"
    save(wf, path)
    raw = path.read_bytes()
    assert "猫の写真".encode() in raw  # stored as readable UTF-8, not \\u escapes
    assert not raw.startswith(b"\xef\xbb\xbf")
    loaded = load(path)
    assert loaded == wf
    assert loaded.node("prompt_ü").inputs["value"] == prompt
    assert loaded.node("prompt_ü").title == "Prompt 🌸"


def test_load_accepts_a_utf8_bom(tmp_path):
    path = tmp_path / "bom.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(SPEC_EXAMPLE).encode())
    assert load(path) == loads(json.dumps(SPEC_EXAMPLE))


def test_to_document_matches_dumps():
    wf = rich_workflow()
    assert json.loads(dumps(wf)) == to_document(wf)
    assert from_document(to_document(wf)) == wf


def test_from_document_keeps_unknown_keys():
    doc = json.loads(json.dumps(SPEC_EXAMPLE))
    doc["future_top"] = [1, 2, 3]
    doc["nodes"]["ckpt"]["future_node"] = {"x": 1}
    wf = from_document(doc)
    assert wf.extra == {"future_top": [1, 2, 3]}
    assert wf.node("ckpt").extra == {"future_node": {"x": 1}}
    again = json.loads(dumps(wf))
    assert again["future_top"] == [1, 2, 3]
    assert again["nodes"]["ckpt"]["future_node"] == {"x": 1}


# --- atomic save ----------------------------------------------------------------------------------------------------
def test_save_is_atomic_when_replace_fails(tmp_path, monkeypatch):
    path = tmp_path / "wf.json"
    save(loads(json.dumps(SPEC_EXAMPLE)), path)
    before = path.read_bytes()
    calls = []

    def failing_replace(src, dst):
        calls.append((Path(src), Path(dst)))
        assert Path(src).read_text(encoding="utf-8") == dumps(rich_workflow())  # fully written before the swap
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="No space left"):
        save(rich_workflow(), path)
    assert calls and calls[0][1] == path and calls[0][0].parent == tmp_path
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["wf.json"]


def test_save_is_atomic_when_writing_fails(tmp_path, monkeypatch):
    path = tmp_path / "wf.json"
    path.write_text("old content\n", encoding="utf-8")

    def failing_fsync(fd):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(OSError):
        save(rich_workflow(), path)
    assert path.read_text(encoding="utf-8") == "old content\n"
    assert [p.name for p in tmp_path.iterdir()] == ["wf.json"]


def test_save_uses_replace_and_creates_parent_folders(tmp_path, monkeypatch):
    path = tmp_path / "deep" / "er" / "wf.json"
    replaced = []
    real_replace = os.replace

    def spy(src, dst):
        replaced.append((Path(src).name, Path(dst)))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    save(rich_workflow(), path)
    assert len(replaced) == 1 and replaced[0][1] == path and replaced[0][0] != "wf.json"
    assert load(path) == rich_workflow()
    assert [p.name for p in path.parent.iterdir()] == ["wf.json"]


# --- reading errors -------------------------------------------------------------------------------------------------
def test_malformed_json_names_line_and_column():
    text = '{\n  "format": "nodegraph-workflow",\n  "version": 1,\n    ,\n}'
    with pytest.raises(WorkflowError) as info:
        loads(text)
    assert info.value.where == "line 4, column 5"
    assert "line 4, column 5" in str(info.value) and "malformed JSON" in str(info.value)


def test_malformed_json_missing_colon():
    text = '{\n  "format": "nodegraph-workflow",\n  "version" 1\n}'
    with pytest.raises(WorkflowError, match=r"line 3, column 13"):
        loads(text)


def test_truncated_file_is_a_workflow_error():
    text = dumps(rich_workflow())
    with pytest.raises(WorkflowError, match=r"line \d+, column \d+"):
        loads(text[: len(text) // 2])


def test_load_names_the_file(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text("{\n  nope\n}", encoding="utf-8")
    with pytest.raises(WorkflowError) as info:
        load(path)
    assert str(path) in str(info.value) and "line 2, column 3" in str(info.value)


def test_load_of_missing_and_non_utf8_files(tmp_path):
    with pytest.raises(WorkflowError, match="cannot read the file"):
        load(tmp_path / "absent.json")
    bad = tmp_path / "latin1.json"
    bad.write_bytes('{"format": "nodegraph-workflow", "meta": {"a": "café"}}'.encode("latin-1"))
    with pytest.raises(WorkflowError, match="not UTF-8"):
        load(bad)


def test_duplicate_keys_are_refused():
    text = '{"format": "nodegraph-workflow", "version": 1, "nodes": {"a": {"type": "X"}, "a": {"type": "Y"}}}'
    with pytest.raises(WorkflowError, match="'a' appears twice"):
        loads(text)
    text = '{"format": "nodegraph-workflow", "version": 1, "version": 1}'
    with pytest.raises(WorkflowError, match="appears twice"):
        loads(text)


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_are_refused(constant):
    text = '{"format": "nodegraph-workflow", "version": 1, "nodes": {"a": {"type": "X", "inputs": {"v": %s}}}}'
    with pytest.raises(WorkflowError, match="not valid JSON"):
        loads(text % constant)


@pytest.mark.parametrize(
    ("doc", "fragment"),
    [
        ([], "must hold a JSON object"),
        ("text", "must hold a JSON object"),
        ({}, "the 'format' key must be"),
        ({"format": "other", "version": 1}, "unknown format 'other'"),
        ({"nodes": [], "links": []}, "ComfyUI workflow (UI format)"),
        ({"3": {"class_type": "KSampler", "inputs": {}}}, "ComfyUI workflow (API format)"),
        ({"format": "nodegraph-workflow"}, "integer format version"),
        ({"format": "nodegraph-workflow", "version": 1, "nodes": []}, "an object of nodes"),
        ({"format": "nodegraph-workflow", "version": 1, "links": {}}, "a list"),
        ({"format": "nodegraph-workflow", "version": 1, "meta": []}, "an object"),
        ({"format": "nodegraph-workflow", "version": 1, "nodes": {"": {"type": "X"}}}, "must not be empty"),
        ({"format": "nodegraph-workflow", "version": 1, "nodes": {"a": 3}}, "nodes.a: expected an object"),
        ({"format": "nodegraph-workflow", "version": 1, "nodes": {"a": {}}}, "nodes.a: expected a non-empty"),
        ({"format": "nodegraph-workflow", "version": 1, "nodes": {"a": {"type": ""}}}, "non-empty string 'type'"),
        ({"format": "nodegraph-workflow", "version": 1, "nodes": {"a": {"type": "X", "inputs": []}}},
         "nodes.a.inputs"),
        ({"format": "nodegraph-workflow", "version": 1, "nodes": {"a": {"type": "X", "title": 3}}}, "nodes.a.title"),
        ({"format": "nodegraph-workflow", "version": 1, "nodes": {"a": {"type": "X", "mode": "off"}}},
         "nodes.a.mode: expected one of normal, bypass, mute, got 'off'"),
        ({"format": "nodegraph-workflow", "version": 1, "nodes": {"a": {"type": "X", "ui": [0, 0]}}}, "nodes.a.ui"),
        ({"format": "nodegraph-workflow", "version": 1, "nodes": {"a": {"type": "X", "type_version": 0}}},
         "nodes.a.type_version"),
        ({"format": "nodegraph-workflow", "version": 1, "nodes": {"a": {"type": "X", "type_version": True}}},
         "nodes.a.type_version"),
        ({"format": "nodegraph-workflow", "version": 1, "nodes": {"a": {"type": "X", "type_version": "2"}}},
         "nodes.a.type_version"),
        ({"format": "nodegraph-workflow", "version": 1, "links": [["a", "X", "b", "y"]]}, "links[0]: expected"),
        ({"format": "nodegraph-workflow", "version": 1, "links": [{"from": ["a", "X"]}]}, "links[0].to"),
        ({"format": "nodegraph-workflow", "version": 1, "links": [{"from": ["a"], "to": ["b", "y"]}]},
         "links[0].from"),
        ({"format": "nodegraph-workflow", "version": 1, "links": [{"from": ["a", ""], "to": ["b", "y"]}]},
         "links[0].from"),
        ({"format": "nodegraph-workflow", "version": 1, "links": [{"from": ["a", 1], "to": ["b", "y"]}]},
         "links[0].from"),
        ({"format": "nodegraph-workflow", "version": 1,
          "links": [{"from": ["a", "X"], "to": ["b", "y"], "via": 1}]}, "links[0]: unknown key 'via'"),
    ],
)
def test_structural_errors_name_the_place(doc, fragment):
    with pytest.raises(WorkflowError) as info:
        from_document(doc)
    assert fragment in str(info.value)
    with pytest.raises(WorkflowError):
        loads(json.dumps(doc))


def test_workflow_constructor_refuses_duplicate_ids():
    with pytest.raises(ValueError, match="duplicate node id 'a'"):
        Workflow([NodeInstance("a", "X"), NodeInstance("a", "Y")])


# --- loaded documents that cannot be saved (bugs: see the messages) -------------------------------------------------
def _doc_with_input(raw_value: str) -> str:
    return '{"format": "nodegraph-workflow", "version": 1, "nodes": {"a": {"type": "Number", "inputs": {"value": ' \
        + raw_value + "}}}}"


def _loads_refuses_or_round_trips(text: str) -> None:
    """What every loaded document must allow: either loads() refuses it, or it saves and reloads unchanged."""
    try:
        wf = loads(text)
    except WorkflowError as error:
        assert str(error)
        return
    again = dumps(wf)
    assert loads(again) == wf
    assert dumps(loads(again)) == again


def test_overflowing_float_literal_is_refused_or_round_trips():
    # json.loads turns 1e400 into inf without calling parse_constant, so loads() accepts a value dumps() cannot write
    _loads_refuses_or_round_trips(_doc_with_input("1e400"))
    _loads_refuses_or_round_trips(_doc_with_input("-1e400"))


def test_huge_integer_literal_is_a_workflow_error():
    # Python refuses int() of more than 4300 digits with a ValueError, which loads() lets escape
    _loads_refuses_or_round_trips(_doc_with_input("9" * 5000))


def test_deeply_nested_literal_is_refused_or_round_trips():
    # json.loads accepts ~990 levels, but dumps() recurses in Python (_sorted/_format) and overflows far earlier
    depth = 700
    _loads_refuses_or_round_trips(_doc_with_input("[" * depth + "]" * depth))


def test_natural_sort_of_ids_with_non_decimal_digits():
    # natural_key() uses str.isdigit(), which is True for '²' and '①', then int() of them raises ValueError
    for node_id in ("²", "x1²", "①"):
        wf = Workflow()
        wf.add_node("Number", node_id)
        wf.add_node("Number", "n1")
        wf.connect("n1", "VALUE", node_id, "value")
        text = dumps(wf)
        assert loads(text) == wf
        assert set(json.loads(text)["nodes"]) == {node_id, "n1"}


def test_equal_workflows_save_to_the_same_bytes_even_with_natural_key_ties():
    # "node1" and "node01" have the same natural sort key, so their order in the file follows insertion order
    a, b = Workflow(), Workflow()
    for wf, order in ((a, ["node1", "node01"]), (b, ["node01", "node1"])):
        for node_id in order:
            wf.add_node("Number", node_id)
    assert a == b
    assert dumps(a) == dumps(b)


def test_lone_surrogate_in_a_loaded_file_can_be_saved(tmp_path):
    # JSON "\ud800" escapes load as a lone surrogate; dumps() writes it raw and the UTF-8 file write then fails
    wf = loads(_doc_with_input('"\\ud800"'))
    path = tmp_path / "s.json"
    save(wf, path)
    assert load(path) == wf


def test_validate_accepts_what_loads_returns(registry):
    wf = loads(json.dumps(SPEC_EXAMPLE))
    codes = {(p.code, p.node_id) for p in validate(wf, registry)}
    assert not any(code == "unknown_type" for code, _ in codes)  # the spec's node types are built in
    assert ("missing_input", "sample") in codes and ("no_output", None) in codes
