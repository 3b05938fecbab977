"""Property-based tests: thousands of malformed documents thrown at the loader and the validator.

The contract: `loads()` and `from_document()` raise nothing but a :class:`WorkflowError` with a message; when loading
succeeds, `validate()` returns a list of :class:`Problem` without raising, and the workflow saves and reloads to an
equal workflow with identical bytes.
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, currently_in_test_context, event, given, settings
from hypothesis import strategies as st

from nodegraph.core import Problem, upgrade_node_versions
from nodegraph.core.errors import WorkflowError
from nodegraph.core.registry import NodeRegistry
from nodegraph.core.validate import validate
from nodegraph.core.workflow_io import dumps, from_document, loads
from nodegraph.packs import create_registry

FAKE_PACK = Path(__file__).resolve().parents[1] / "packs" / "fakepack"

CODES = {"unknown_type", "newer_version", "unknown_input", "missing_input", "missing_node", "missing_port",
         "type_mismatch", "multiple_links", "unresolved_link", "cycle", "wrong_type", "out_of_range",
         "invalid_choice", "missing_file", "no_output"}

#: The document fuzz tests' example counts add up to this (here and in test_fuzz_entry_points.py).
DEFAULT_DOCUMENTS = 3_650


def fuzz(max_examples: int) -> settings:
    """Deterministic (the same examples every run, so CI is never flaky), no deadline; the counts below add up to
    3,200 examples, about 10 s on two cores. ``NODEGRAPH_FUZZ_DOCUMENTS=N`` (scripts/fuzz.sh) scales every count so
    that all the document fuzz tests together run about N examples."""
    wanted = int(os.environ.get("NODEGRAPH_FUZZ_DOCUMENTS") or 0)
    if wanted > 0:
        max_examples = max(1, round(max_examples * wanted / DEFAULT_DOCUMENTS))
    return settings(max_examples=max_examples, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def fuzz_registry() -> NodeRegistry:
    reg = create_registry([FAKE_PACK], user_packs=False)
    assert not reg.problems, reg.problems
    return reg


BASE_DOC: dict[str, Any] = {
    "format": "nodegraph-workflow",
    "version": 1,
    "nodes": {
        "n1": {"type": "Number", "inputs": {"value": 3}, "ui": {"pos": [0, 0]}},
        "n2": {"type": "Number", "type_version": 1, "inputs": {"value": 4}},
        "add": {"type": "Add", "title": "Sum", "inputs": {}},
        "scale": {"type": "Scale", "mode": "bypass", "inputs": {"factor": 3}},
        "choose": {"type": "Choose", "inputs": {"word": "beta", "weight": 0.25, "shout": True}},
        "tok": {"type": "MakeToken", "inputs": {}},
        "untok": {"type": "TokenValue", "inputs": {}},
        "muted": {"type": "Number", "mode": "mute", "inputs": {}},
        "ghost": {"type": "NotInstalled", "inputs": {"anything": [1, {"a": None}]}, "custom": "kept"},
        "out": {"type": "Collect", "inputs": {}},
        "write": {"type": "WriteText", "inputs": {"filename_prefix": "x"}},
    },
    "links": [
        {"from": ["n1", "VALUE"], "to": ["add", "a"]},
        {"from": ["n2", "VALUE"], "to": ["add", "b"]},
        {"from": ["add", "SUM"], "to": ["scale", "value"]},
        {"from": ["scale", "VALUE"], "to": ["tok", "value"]},
        {"from": ["tok", "TOKEN"], "to": ["untok", "token"]},
        {"from": ["untok", "VALUE"], "to": ["out", "value"]},
        {"from": ["choose", "WORD"], "to": ["write", "value"]},
        {"from": ["ghost", "OUT"], "to": ["ghost", "in"]},
    ],
    "meta": {"seed": 1},
}

NODE_IDS = sorted(BASE_DOC["nodes"])
TYPE_IDS = ["Number", "Add", "Scale", "Choose", "MakeToken", "TokenValue", "Fail", "Random", "WriteText", "Collect",
            "Slow", "PrimitiveInt", "PrimitiveFloat", "PrimitiveString", "PrimitiveBoolean", "Unknown"]
PORT_NAMES = ["value", "a", "b", "factor", "word", "weight", "shout", "token", "how", "steps", "delay",
              "filename_prefix", "VALUE", "SUM", "WORD", "TOKEN", "INT", "STRING", "in", "OUT"]
NODE_KEYS = ["type", "type_version", "title", "mode", "inputs", "ui", "custom"]
TOP_KEYS = ["format", "version", "nodes", "links", "meta", "extra"]

# --- strategies -----------------------------------------------------------------------------------------------------
def mostly(good: st.SearchStrategy, bad: st.SearchStrategy, odds: int = 6) -> st.SearchStrategy:
    """`good` about `odds` times as often as `bad`: a document of many parts must often get past the loader.

    (`one_of` picks its branches about evenly, and the integers' edges are drawn more often: 1 is no edge.)
    """
    return st.integers(min_value=0, max_value=odds).flatmap(lambda i: bad if i == 1 else good)


scalars = (st.none() | st.booleans() | st.integers() | st.integers(min_value=-(2**70), max_value=2**70)
           | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=12))
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=16,
)
# ids that sort alike ("node1", "node01") or hold digits that are not decimal ("x²") test the canonical sort
NASTY_IDS = ["node1", "node01", "node10", "10", "x²", "①", "ⅷ", "٣", " ", "a.b", "nodes"]
names = (st.sampled_from(NODE_IDS) | st.sampled_from(PORT_NAMES) | st.sampled_from(NASTY_IDS) | st.text(max_size=6)
         | st.just(""))
port_names = st.sampled_from(PORT_NAMES) | st.text(max_size=6)
# (sampled lists and dicts are copied: the mutations below edit what they draw, and must not edit these constants)
wrong_containers = st.sampled_from([[], {}, "", "x", 0, 1, -1, 1.5, True, False, None, ["a", "b"], {"k": "v"}]).map(
    copy.deepcopy)
modes = mostly(st.sampled_from(["normal", "bypass", "mute"]), st.sampled_from(["Normal", "", "off"]) | json_values)
type_versions = mostly(st.sampled_from([None, 1, 2, 3]), st.sampled_from([0, -1, True, 1.0, "1"]) | json_values)
uis = st.dictionaries(st.sampled_from(["pos", "size", "collapsed", "color"]) | st.text(max_size=4), json_values,
                      max_size=3)
titles = mostly(st.none() | st.text(max_size=8), json_values)
valid_endpoint = st.tuples(st.sampled_from(NODE_IDS) | st.text(min_size=1, max_size=4),
                           port_names.filter(bool)).map(list)
endpoint = mostly(valid_endpoint, st.lists(names, min_size=0, max_size=3) | json_values, odds=12)
literal_values = st.sampled_from([0, 1, -1, 1000, 1001, -1001, 2**64, 0.5, 1.5, -0.0, "alpha", "delta", "", True,
                                  False, None, [], {}]).map(copy.deepcopy) | json_values


PLAUSIBLE_OPS = [3, 7, 8, 9, 10, 11, 12, 13, 14, 17]
DESTRUCTIVE_OPS = [0, 1, 2, 4, 5, 6, 15, 16, 18]


@st.composite
def mutated_documents(draw) -> dict[str, Any]:
    doc = copy.deepcopy(BASE_DOC)
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        _mutate(draw, doc)
    return doc


def _mutate(draw, doc: dict[str, Any]) -> None:
    op = draw(mostly(st.sampled_from(PLAUSIBLE_OPS), st.sampled_from(DESTRUCTIVE_OPS), odds=3))
    nodes = doc.get("nodes")
    links = doc.get("links")
    node_ids = list(nodes) if isinstance(nodes, dict) and nodes else None
    entry = nodes[draw(st.sampled_from(node_ids))] if node_ids else None
    if op == 0 and doc:
        doc.pop(draw(st.sampled_from(sorted(doc))), None)  # drop a top-level key
    elif op == 1:
        doc[draw(st.sampled_from(TOP_KEYS) | st.text(max_size=6))] = draw(json_values | wrong_containers)
    elif op == 2:
        doc["version"] = draw(st.sampled_from([0, 1, 2, -1, 1.0, True, "1", None]) | json_values)
    elif op == 3 and node_ids:
        del nodes[draw(st.sampled_from(node_ids))]  # a node vanishes, its links stay
    elif op == 4 and node_ids:
        nodes[draw(st.sampled_from(node_ids))] = draw(json_values | wrong_containers)
    elif op == 5 and isinstance(entry, dict) and entry:
        entry.pop(draw(st.sampled_from(sorted(entry))))
    elif op == 6 and isinstance(entry, dict):
        entry[draw(st.sampled_from(NODE_KEYS) | st.text(max_size=6))] = draw(json_values | wrong_containers)
    elif op == 7 and isinstance(entry, dict):
        entry["mode"] = draw(modes)
    elif op == 8 and isinstance(entry, dict):
        entry["type_version"] = draw(type_versions)
    elif op == 9 and isinstance(entry, dict):
        entry["type"] = draw(st.sampled_from(TYPE_IDS) | st.sampled_from(TYPE_IDS) | st.text(max_size=8)
                             | wrong_containers)
    elif op == 10 and isinstance(entry, dict):
        inputs = entry.get("inputs")
        if isinstance(inputs, dict):
            inputs[draw(port_names)] = draw(literal_values)
        else:
            entry["inputs"] = draw(wrong_containers | json_values)
    elif op == 11 and isinstance(entry, dict):
        entry["ui"] = draw(mostly(uis, wrong_containers))
        entry["title"] = draw(titles)
    elif op == 12 and node_ids:
        old = draw(st.sampled_from(node_ids))
        new = draw(names)
        nodes[new] = nodes.pop(old)  # rename a node without updating its links
    elif op == 13 and isinstance(links, list):
        links.append({"from": draw(endpoint), "to": draw(endpoint)})
    elif op == 14 and isinstance(links, list) and links:
        link = links[draw(st.integers(min_value=0, max_value=len(links) - 1))]
        if isinstance(link, dict):
            link[draw(st.sampled_from(["from", "to"]))] = draw(endpoint)
    elif op == 15 and isinstance(links, list) and links:
        index = draw(st.integers(min_value=0, max_value=len(links) - 1))
        links[index] = draw(json_values | wrong_containers | st.lists(names, min_size=4, max_size=4))
    elif op == 16 and isinstance(links, list) and links:
        link = links[draw(st.integers(min_value=0, max_value=len(links) - 1))]
        if isinstance(link, dict):
            link[draw(st.text(max_size=5))] = draw(json_values)
    elif op == 17 and isinstance(links, list) and links:
        links.append(copy.deepcopy(links[draw(st.integers(min_value=0, max_value=len(links) - 1))]))
    elif op == 18:
        doc["nodes" if draw(st.booleans()) else "links"] = draw(wrong_containers | json_values)


@st.composite
def version_0_documents(draw) -> dict[str, Any]:
    node_entry = st.fixed_dictionaries(
        {"id": mostly(st.text(min_size=1, max_size=6), names),
         "type": mostly(st.sampled_from(TYPE_IDS), json_values)},
        optional={"inputs": st.dictionaries(port_names, literal_values, max_size=3),
                  "pos": json_values, "bypass": mostly(st.booleans(), json_values), "title": titles, "mode": modes},
    )
    four_names = st.lists(st.sampled_from(NODE_IDS) | port_names.filter(bool), min_size=4, max_size=4)
    nodes = draw(mostly(st.lists(mostly(node_entry, json_values, odds=12), max_size=5), json_values))
    links = draw(mostly(st.lists(mostly(four_names, json_values, odds=12), max_size=5), json_values))
    doc = {"format": "nodegraph-workflow", "version": 0, "nodes": nodes, "links": links}
    if draw(st.booleans()):
        doc["meta"] = draw(mostly(st.dictionaries(st.text(max_size=4), json_values, max_size=3), json_values))
    return doc


random_workflow_shapes = st.fixed_dictionaries(
    {"format": st.just("nodegraph-workflow"), "version": st.just(1)},
    optional={
        "nodes": mostly(st.dictionaries(mostly(names.filter(bool), st.just("")), mostly(st.fixed_dictionaries(
            {"type": st.sampled_from(TYPE_IDS)},
            optional={"inputs": st.dictionaries(port_names, literal_values, max_size=4), "mode": modes,
                      "type_version": type_versions, "title": titles, "ui": mostly(uis, json_values),
                      "custom": json_values}), json_values, odds=12), max_size=6), json_values),
        "links": mostly(st.lists(mostly(st.fixed_dictionaries({"from": endpoint, "to": endpoint}), json_values,
                                        odds=12), max_size=6), json_values),
        "meta": mostly(st.dictionaries(st.text(max_size=5), json_values, max_size=3), json_values),
    },
)


def note(what: str) -> None:
    """Count outcomes (see `pytest --hypothesis-show-statistics`): most examples must get past loading."""
    if currently_in_test_context():
        event(what)


# --- the property ---------------------------------------------------------------------------------------------------
def check_document(doc: Any, registry: NodeRegistry) -> None:
    """from_document() either refuses `doc` with a WorkflowError or gives a workflow that validates and round-trips."""
    original = copy.deepcopy(doc)
    try:
        workflow = from_document(doc)
    except WorkflowError as error:
        assert str(error).strip()
        note("refused")
        _same_through_text(doc, None)
        return
    note("loaded")
    assert doc == original  # loading never modifies the caller's document
    _same_through_text(doc, workflow)
    check_workflow(workflow, registry)


def _same_through_text(doc: Any, workflow) -> None:
    """loads(json text) agrees with from_document(parsed value)."""
    try:
        text = json.dumps(doc, ensure_ascii=False)
    except (ValueError, TypeError):
        return
    if workflow is None:
        with pytest.raises(WorkflowError):
            loads(text)
    else:
        assert loads(text) == workflow


def check_workflow(workflow, registry: NodeRegistry) -> None:
    for require_output in (True, False):
        problems = validate(workflow, registry, require_output=require_output)
        assert isinstance(problems, list)
        if require_output:
            note(f"{len(problems)} problems" if len(problems) < 4 else "4+ problems")
        for problem in problems:
            assert isinstance(problem, Problem)
            assert problem.code in CODES and problem.message and str(problem)
            assert problem.node_id is None or isinstance(problem.node_id, str)
            assert problem.port is None or isinstance(problem.port, str)
    text = dumps(workflow)
    assert text.endswith("}\n")
    again = loads(text)
    assert again == workflow
    assert dumps(again) == text
    upgrade_node_versions(again, registry)  # no upgraders in these packs: nothing may change or raise
    assert again == workflow


def check_text(text: str, registry: NodeRegistry) -> None:
    try:
        workflow = loads(text)
    except WorkflowError as error:
        assert str(error).strip()
        note("refused")
        return
    note("loaded")
    check_workflow(workflow, registry)


# --- the tests ------------------------------------------------------------------------------------------------------
@fuzz(1200)
@given(doc=mutated_documents())
def test_mutated_documents(fuzz_registry, doc):
    check_document(doc, fuzz_registry)


@fuzz(500)
@given(doc=random_workflow_shapes)
def test_random_workflow_shapes(fuzz_registry, doc):
    check_document(doc, fuzz_registry)


@fuzz(300)
@given(doc=version_0_documents())
def test_version_0_documents(fuzz_registry, doc):
    check_document(doc, fuzz_registry)


@fuzz(400)
@given(doc=json_values | st.dictionaries(st.sampled_from(TOP_KEYS) | st.text(max_size=5), json_values, max_size=6))
def test_arbitrary_json_values(fuzz_registry, doc):
    check_document(doc, fuzz_registry)


@fuzz(400)
@given(text=st.text(max_size=80) | st.text(alphabet='{}[]":,0123456789.eE+- \ntrufalsn\\', max_size=60))
def test_arbitrary_text(fuzz_registry, text):
    check_text(text, fuzz_registry)


BASE_TEXT = dumps(from_document(BASE_DOC))


@st.composite
def mutated_texts(draw) -> str:
    text = BASE_TEXT
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        start = draw(st.integers(min_value=0, max_value=len(text)))
        end = draw(st.integers(min_value=start, max_value=min(len(text), start + 8)))
        insert = draw(st.sampled_from(["", "", "{", "}", "[", "]", ",", ":", '"', "\\", "0", "-", "1e999", "NaN",
                                       "null", "true", "\n", "\ud800", "é", "9" * 4400, "[" * 70 + "]" * 70])
                        | st.text(max_size=3))
        text = text[:start] + insert + text[end:]
    return text


@fuzz(400)
@given(text=mutated_texts())
def test_mutated_text(fuzz_registry, text):
    check_text(text, fuzz_registry)


def test_base_document_is_valid_apart_from_its_placeholder(fuzz_registry):
    """The starting point of the mutations loads, and its problems are the ones it was built with."""
    workflow = from_document(BASE_DOC)
    found = {(p.code, p.node_id, p.port) for p in validate(workflow, fuzz_registry)}
    assert found == {("unknown_type", "ghost", None), ("cycle", "ghost", None)}
    check_workflow(workflow, fuzz_registry)
