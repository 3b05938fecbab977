"""Validation against the registry: one test per problem code, plus placeholders for unknown node types."""

from __future__ import annotations

import json

import pytest

from nodegraph.core import Input, NodeDef, Output, PortType, Problem, validate
from nodegraph.core.graph import Link, Workflow
from nodegraph.core.workflow_io import dumps, from_document, loads


def doc(nodes: dict, links: list | None = None) -> Workflow:
    """A workflow from a v1 document; links as (from_node, from_output, to_node, to_input) tuples."""
    return from_document({
        "format": "nodegraph-workflow", "version": 1, "nodes": nodes,
        "links": [{"from": [a, b], "to": [c, d]} for a, b, c, d in links or []],
    })


def found(workflow: Workflow, registry, **kwargs) -> set[tuple[str, str | None, str | None]]:
    problems = validate(workflow, registry, **kwargs)
    assert all(isinstance(p, Problem) for p in problems)
    return {(p.code, p.node_id, p.port) for p in problems}


def only(workflow: Workflow, registry, code: str) -> list[Problem]:
    return [p for p in validate(workflow, registry) if p.code == code]


def number_to_collect(value=1) -> Workflow:
    wf = Workflow()
    wf.add_node("Number", "num", inputs={"value": value})
    wf.add_node("Collect", "out")
    wf.connect("num", "VALUE", "out", "value")
    return wf


# --- a valid workflow -----------------------------------------------------------------------------------------------
def test_valid_workflow_has_no_problems(registry):
    wf = Workflow()
    wf.add_node("Number", "n1", inputs={"value": 3})
    wf.add_node("Number", "n2")  # default value
    wf.add_node("Add", "add")
    wf.add_node("Scale", "scale", inputs={"factor": 100})
    wf.add_node("MakeToken", "tok")
    wf.add_node("TokenValue", "untok")
    wf.add_node("Choose", "choose", inputs={"word": "gamma", "weight": 1, "shout": True})
    wf.add_node("WriteText", "write", inputs={"filename_prefix": "x"})
    wf.add_node("Collect", "out")
    wf.add_node("PrimitiveInt", "big", inputs={"value": 2**64 - 1})
    wf.connect("n1", "VALUE", "add", "a")
    wf.connect("n2", "VALUE", "add", "b")
    wf.connect("add", "SUM", "scale", "value")
    wf.connect("scale", "VALUE", "tok", "value")
    wf.connect("tok", "TOKEN", "untok", "token")
    wf.connect("untok", "VALUE", "out", "value")
    wf.connect("choose", "WORD", "write", "value")
    assert validate(wf, registry) == []


def test_optional_link_input_may_stay_empty(registry):
    wf = number_to_collect()
    wf.add_node("Add", "add")
    wf.connect("num", "VALUE", "add", "a")
    assert validate(wf, registry) == []
    wf.set_input("add", "b", None)  # an explicit null for an optional input is fine too
    assert validate(wf, registry) == []


def test_link_overrides_a_bad_literal(registry):
    wf = number_to_collect()
    wf.add_node("Number", "src")
    wf.add_node("Scale", "scale", inputs={"value": "kept literal"})
    wf.connect("src", "VALUE", "scale", "value")
    assert validate(wf, registry) == []


# --- one test per code ----------------------------------------------------------------------------------------------
def test_unknown_type(registry):
    wf = number_to_collect()
    wf.add_node("NoSuchNode", "ghost", inputs={"x": 1})
    problems = only(wf, registry, "unknown_type")
    assert [(p.node_id, p.port) for p in problems] == [("ghost", None)]
    assert "NoSuchNode" in problems[0].message
    # nothing else is reported for the placeholder's inputs
    assert found(wf, registry) == {("unknown_type", "ghost", None)}


def test_newer_version(registry):
    wf = number_to_collect()
    wf.node("num").type_version = 2
    assert found(wf, registry) == {("newer_version", "num", None)}
    wf.node("num").type_version = 1
    assert validate(wf, registry) == []


def test_unknown_input(registry):
    wf = number_to_collect()
    wf.set_input("num", "valu", 3)
    problems = only(wf, registry, "unknown_input")
    assert [(p.node_id, p.port) for p in problems] == [("num", "valu")]
    assert "'valu'" in problems[0].message


def test_missing_input_for_unlinked_link_input(registry):
    wf = number_to_collect()
    wf.add_node("TokenValue", "untok")
    assert found(wf, registry) == {("missing_input", "untok", "token")}
    assert "needs a link" in only(wf, registry, "missing_input")[0].message


def test_missing_input_for_unlinked_literal_typed_link_input(registry):
    # Scale.value is declared with Input.link but has type INT, so a literal could fill it: "needs a value"
    wf = number_to_collect()
    wf.add_node("Scale", "scale")
    assert found(wf, registry) == {("missing_input", "scale", "value")}


def test_missing_input_for_literal_without_default(registry):
    def run(ctx, count):
        return {"VALUE": count}

    registry.register(NodeDef(type="NoDefault", run=run, display_name="No default",
                              inputs=(Input.int("count", None),), outputs=(Output("VALUE", PortType.INT),)))
    wf = number_to_collect()
    wf.add_node("NoDefault", "nd")
    assert found(wf, registry) == {("missing_input", "nd", "count")}
    assert "value" in only(wf, registry, "missing_input")[0].message
    wf.set_input("nd", "count", 4)
    assert validate(wf, registry) == []


def test_missing_input_not_reported_for_muted_or_bypassed_nodes(registry):
    wf = number_to_collect()
    wf.add_node("Scale", "muted", mode="mute")
    wf.add_node("Scale", "bypassed", mode="bypass")
    assert validate(wf, registry) == []


def test_explicit_null_for_required_literal(registry):
    wf = number_to_collect(value=None)
    assert found(wf, registry) == {("missing_input", "num", "value"), ("wrong_type", "num", "value")}


def test_missing_node_link_from_missing_node(registry):
    wf = doc({"out": {"type": "Collect"}}, [("gone", "VALUE", "out", "value")])
    problems = only(wf, registry, "missing_node")
    assert [(p.node_id, p.port) for p in problems] == [("out", "value")]
    assert "'gone'" in problems[0].message
    assert found(wf, registry) == {("missing_node", "out", "value")}  # not also a missing_input


def test_missing_node_link_to_missing_node(registry):
    wf = number_to_collect()
    wf.links.append(Link("num", "VALUE", "gone", "value"))
    assert found(wf, registry) == {("missing_node", "num", "VALUE")}
    assert "'gone'" in only(wf, registry, "missing_node")[0].message


def test_missing_port_bad_output_name(registry):
    wf = doc({"num": {"type": "Number"}, "out": {"type": "Collect"}}, [("num", "VALU", "out", "value")])
    problems = only(wf, registry, "missing_port")
    assert [(p.node_id, p.port) for p in problems] == [("out", "value")]
    assert "'VALU'" in problems[0].message


def test_missing_port_bad_input_name(registry):
    wf = doc({"num": {"type": "Number"}, "out": {"type": "Collect"}},
             [("num", "VALUE", "out", "value"), ("num", "VALUE", "out", "valeu")])
    problems = only(wf, registry, "missing_port")
    assert [(p.node_id, p.port) for p in problems] == [("out", "valeu")]
    assert "'valeu'" in problems[0].message


def test_type_mismatch(registry):
    wf = number_to_collect()
    wf.add_node("Choose", "choose")
    wf.add_node("Scale", "scale")
    wf.connect("choose", "WORD", "scale", "value")  # STRING into INT
    problems = only(wf, registry, "type_mismatch")
    assert [(p.node_id, p.port) for p in problems] == [("scale", "value")]
    assert "INT" in problems[0].message and "STRING" in problems[0].message


def test_custom_port_type_mismatch(registry):
    wf = number_to_collect()
    wf.add_node("TokenValue", "untok")
    wf.connect("num", "VALUE", "untok", "token")  # INT into TOKEN
    assert ("type_mismatch", "untok", "token") in found(wf, registry)


def test_any_input_accepts_every_type(registry):
    wf = Workflow()
    wf.add_node("Choose", "choose")
    wf.add_node("Collect", "out")
    wf.connect("choose", "WORD", "out", "value")
    assert validate(wf, registry) == []


def test_multiple_links(registry):
    wf = doc({"a": {"type": "Number"}, "b": {"type": "Number"}, "out": {"type": "Collect"}},
             [("a", "VALUE", "out", "value"), ("b", "VALUE", "out", "value")])
    problems = only(wf, registry, "multiple_links")
    assert [(p.node_id, p.port) for p in problems] == [("out", "value")]


def test_multiple_links_reported_once_for_three_links(registry):
    wf = doc({"a": {"type": "Number"}, "out": {"type": "Collect"}}, [("a", "VALUE", "out", "value")] * 3)
    assert len(only(wf, registry, "multiple_links")) == 1


def test_unresolved_link_from_muted_node(registry):
    wf = number_to_collect()
    wf.add_node("Number", "muted", mode="mute")
    wf.add_node("Scale", "scale")
    wf.connect("muted", "VALUE", "scale", "value")
    problems = only(wf, registry, "unresolved_link")
    assert [(p.node_id, p.port) for p in problems] == [("scale", "value")]
    assert "muted" in problems[0].message


def test_link_from_muted_node_into_optional_input_is_fine(registry):
    wf = number_to_collect()
    wf.add_node("Number", "muted", mode="mute")
    wf.add_node("Add", "add")
    wf.connect("num", "VALUE", "add", "a")
    wf.connect("muted", "VALUE", "add", "b")
    assert validate(wf, registry) == []


def test_unresolved_link_from_bypassed_node_without_matching_input(registry):
    wf = Workflow()
    wf.add_node("Number", "num", mode="bypass")  # its only INT input is a literal, not a link
    wf.add_node("Collect", "out")
    wf.connect("num", "VALUE", "out", "value")
    problems = only(wf, registry, "unresolved_link")
    assert [(p.node_id, p.port) for p in problems] == [("out", "value")]
    assert "bypassed" in problems[0].message


def test_bypassed_node_passes_its_input_through(registry):
    wf = Workflow()
    wf.add_node("Number", "num")
    wf.add_node("Scale", "scale", mode="bypass")
    wf.add_node("Collect", "out")
    wf.connect("num", "VALUE", "scale", "value")
    wf.connect("scale", "VALUE", "out", "value")
    assert validate(wf, registry) == []
    wf.add_node("MakeToken", "tok", mode="bypass")  # TOKEN output, only an INT input: nothing to pass through
    wf.add_node("TokenValue", "untok")
    wf.connect("scale", "VALUE", "tok", "value")
    wf.connect("tok", "TOKEN", "untok", "token")
    assert found(wf, registry) == {("unresolved_link", "untok", "token")}


def test_cycle(registry):
    wf = Workflow()
    wf.add_node("Add", "a")
    wf.add_node("Add", "b")
    wf.add_node("Collect", "out")
    wf.connect("a", "SUM", "b", "a")
    wf.connect("b", "SUM", "a", "a")
    wf.connect("b", "SUM", "out", "value")
    problems = only(wf, registry, "cycle")
    assert len(problems) == 1
    assert problems[0].node_id == "a" and problems[0].port is None
    assert "a -> b -> a" in problems[0].message
    assert found(wf, registry) == {("cycle", "a", None)}


def test_cycle_of_three_and_self_loop(registry):
    wf = Workflow()
    for node_id in ("x", "y", "z", "self", "out"):
        wf.add_node("Add" if node_id != "out" else "Collect", node_id)
    wf.connect("x", "SUM", "y", "a")
    wf.connect("y", "SUM", "z", "a")
    wf.connect("z", "SUM", "x", "a")
    wf.connect("self", "SUM", "self", "a")
    wf.connect("z", "SUM", "out", "value")
    messages = sorted(p.message for p in only(wf, registry, "cycle"))
    assert len(messages) == 2
    assert any("x -> y -> z -> x" in m for m in messages)
    assert any("self -> self" in m for m in messages)


@pytest.mark.parametrize(
    ("node_type", "port", "value"),
    [
        ("Number", "value", "5"),
        ("Number", "value", True),
        ("Number", "value", 1.5),
        ("Number", "value", [1]),
        ("Number", "value", {"v": 1}),
        ("Choose", "weight", "0.5"),
        ("Choose", "weight", False),
        ("Choose", "shout", 1),
        ("Choose", "shout", "true"),
        ("Choose", "word", 1),
        ("WriteText", "filename_prefix", 12),
        ("TokenValue", "token", 3),
        ("WriteText", "value", "text"),
        ("Add", "a", "literal"),
        ("MakeToken", "value", None),
    ],
)
def test_wrong_type(registry, node_type, port, value):
    wf = number_to_collect()
    wf.add_node(node_type, "node", inputs={port: value})
    problems = [p for p in validate(wf, registry) if p.node_id == "node" and p.port == port]
    assert "wrong_type" in {p.code for p in problems}


def test_literal_for_link_only_input_message(registry):
    wf = number_to_collect()
    wf.add_node("TokenValue", "untok", inputs={"token": "abc"})
    problems = only(wf, registry, "wrong_type")
    assert [(p.node_id, p.port) for p in problems] == [("untok", "token")]
    assert "takes a TOKEN link" in problems[0].message
    assert found(wf, registry) == {("wrong_type", "untok", "token")}


def test_wrong_type_message_describes_the_value(registry):
    for value, described in (("5", "a string"), (True, "a boolean"), (1.5, "a number")):
        wf = number_to_collect(value)
        problems = only(wf, registry, "wrong_type")
        assert [(p.node_id, p.port) for p in problems] == [("num", "value")]
        assert "an integer" in problems[0].message and described in problems[0].message


def test_integer_is_accepted_for_float(registry):
    wf = number_to_collect()
    wf.add_node("Choose", "choose", inputs={"weight": 1})
    assert validate(wf, registry) == []


@pytest.mark.parametrize(("value", "word"), [(1001, "maximum"), (-1001, "minimum")])
def test_out_of_range_int(registry, value, word):
    wf = number_to_collect(value)
    problems = only(wf, registry, "out_of_range")
    assert [(p.node_id, p.port) for p in problems] == [("num", "value")]
    assert word in problems[0].message and str(value) in problems[0].message


@pytest.mark.parametrize("value", [1000, -1000])
def test_range_limits_are_inclusive(registry, value):
    assert validate(number_to_collect(value), registry) == []


@pytest.mark.parametrize(("value", "word"), [(1.5, "maximum"), (-0.01, "minimum")])
def test_out_of_range_float(registry, value, word):
    wf = number_to_collect()
    wf.add_node("Choose", "choose", inputs={"weight": value})
    problems = only(wf, registry, "out_of_range")
    assert [(p.node_id, p.port) for p in problems] == [("choose", "weight")]
    assert word in problems[0].message


def test_invalid_choice(registry):
    wf = number_to_collect()
    wf.add_node("Choose", "choose", inputs={"word": "delta"})
    problems = only(wf, registry, "invalid_choice")
    assert [(p.node_id, p.port) for p in problems] == [("choose", "word")]
    assert "'delta'" in problems[0].message and "alpha" in problems[0].message


def test_invalid_choice_is_case_sensitive(registry):
    wf = number_to_collect()
    wf.add_node("Choose", "choose", inputs={"word": "Alpha"})
    assert found(wf, registry) == {("invalid_choice", "choose", "word")}


def test_no_output(registry):
    wf = Workflow()
    wf.add_node("Number", "num")
    problems = validate(wf, registry)
    assert [(p.code, p.node_id, p.port) for p in problems] == [("no_output", None, None)]
    assert validate(wf, registry, require_output=False) == []


def test_no_output_when_output_node_is_muted_or_bypassed(registry):
    for mode in ("mute", "bypass"):
        wf = number_to_collect()
        wf.set_mode("out", mode)
        assert ("no_output", None, None) in found(wf, registry)


def test_empty_workflow_has_only_no_output(registry):
    assert found(Workflow(), registry) == {("no_output", None, None)}
    assert validate(Workflow(), registry, require_output=False) == []


def test_missing_file_uses_file_check(registry):
    def run(ctx, ckpt_name):
        return {}

    registry.register(NodeDef(type="LoadFile", run=run, display_name="Load file", output_node=True,
                              inputs=(Input.string("ckpt_name", "", file_kind="checkpoints"),)))
    wf = Workflow()
    wf.add_node("LoadFile", "load", inputs={"ckpt_name": "absent.safetensors"})
    seen = []

    def file_check(spec, value):
        seen.append((spec.name, spec.file_kind, value))
        return None if value == "present.safetensors" else f"no file {value!r}"

    assert found(wf, registry, file_check=file_check) == {("missing_file", "load", "ckpt_name")}
    assert seen == [("ckpt_name", "checkpoints", "absent.safetensors")]
    wf.set_input("load", "ckpt_name", "present.safetensors")
    assert validate(wf, registry, file_check=file_check) == []
    assert validate(Workflow([wf.node("load")]), registry) == []  # no file_check: not checked


# --- several at once ------------------------------------------------------------------------------------------------
def test_validation_collects_every_problem(registry):
    wf = doc(
        {
            "ghost": {"type": "Nope"},
            "num": {"type": "Number", "inputs": {"value": 5000, "extra_input": 1}},
            "choose": {"type": "Choose", "inputs": {"word": "zeta", "weight": "heavy"}},
            "scale": {"type": "Scale"},
            "add": {"type": "Add"},
            "a": {"type": "Add"},
            "b": {"type": "Add"},
        },
        [("choose", "WORD", "add", "a"), ("a", "SUM", "b", "a"), ("b", "SUM", "a", "a"),
         ("num", "VALUE", "add", "b"), ("missing", "X", "add", "b")],
    )
    got = found(wf, registry)
    assert got >= {
        ("unknown_type", "ghost", None),
        ("out_of_range", "num", "value"),
        ("unknown_input", "num", "extra_input"),
        ("invalid_choice", "choose", "word"),
        ("wrong_type", "choose", "weight"),
        ("missing_input", "scale", "value"),
        ("type_mismatch", "add", "a"),
        ("cycle", "a", None),
        ("missing_node", "add", "b"),
        ("no_output", None, None),
    }


def test_validate_does_not_modify_the_workflow(registry):
    wf = doc({"num": {"type": "Number", "inputs": {"value": "x"}}, "ghost": {"type": "Nope", "inputs": {"k": 1}}},
             [("num", "VALUE", "ghost", "in"), ("ghost", "OUT", "num", "value")])
    before = dumps(wf)
    validate(wf, registry)
    assert dumps(wf) == before


def test_problem_str_names_node_and_port():
    assert str(Problem("wrong_type", "expected an integer", "num", "value")) == \
        "node 'num', port 'value': expected an integer"
    assert str(Problem("no_output", "nothing to run")) == "nothing to run"


# --- placeholders ---------------------------------------------------------------------------------------------------
PLACEHOLDER_DOC = {
    "format": "nodegraph-workflow",
    "version": 1,
    "nodes": {
        "num": {"type": "Number", "inputs": {"value": 3}},
        "fancy": {
            "type": "FancyUpscaler",
            "type_version": 4,
            "title": "My upscaler",
            "mode": "bypass",
            "inputs": {"scale": 2.5, "model": "4x.pth", "options": {"tile": [512, 512], "fast": True}},
            "ui": {"pos": [300, -20.5], "size": [200, 100], "collapsed": True, "color": "#123456"},
            "pack_data": {"anything": ["kept", 1, None]},
        },
        "out": {"type": "Collect"},
    },
    "links": [
        {"from": ["num", "VALUE"], "to": ["fancy", "image"]},
        {"from": ["fancy", "IMAGE"], "to": ["out", "value"]},
    ],
    "meta": {},
}


def test_placeholder_survives_load_save_load(tmp_path):
    from nodegraph.core.workflow_io import load, save

    first = loads(json.dumps(PLACEHOLDER_DOC))
    path = tmp_path / "placeholder.json"
    save(first, path)
    second = load(path)
    assert second == first
    fancy = second.node("fancy")
    source = PLACEHOLDER_DOC["nodes"]["fancy"]
    assert fancy.type == "FancyUpscaler" and fancy.type_version == 4
    assert fancy.title == "My upscaler" and fancy.mode == "bypass"
    assert fancy.inputs == source["inputs"] and fancy.ui == source["ui"]
    assert fancy.extra == {"pack_data": {"anything": ["kept", 1, None]}}
    assert sorted(second.links, key=str) == [Link("fancy", "IMAGE", "out", "value"),
                                             Link("num", "VALUE", "fancy", "image")]
    assert json.loads(path.read_text(encoding="utf-8"))["nodes"]["fancy"] == source


def test_placeholder_is_reported_as_unknown_type(registry):
    wf = loads(json.dumps(PLACEHOLDER_DOC))
    problems = validate(wf, registry)
    unknown = [p for p in problems if p.code == "unknown_type"]
    assert [(p.node_id, p.port) for p in unknown] == [("fancy", None)]
    assert "FancyUpscaler" in unknown[0].message
    # links into and out of the placeholder are not reported as missing ports
    assert not [p for p in problems if p.code in ("missing_port", "type_mismatch", "unknown_input")]


def test_placeholder_survives_validation_and_graph_edits(registry):
    wf = loads(json.dumps(PLACEHOLDER_DOC))
    validate(wf, registry)
    wf.add_node("Number", "another")
    wf.remove_node("another")
    assert json.loads(dumps(wf))["nodes"]["fancy"] == PLACEHOLDER_DOC["nodes"]["fancy"]
