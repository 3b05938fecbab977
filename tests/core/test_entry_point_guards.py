"""Hostile values at the core entry points (loading, migration, validation) end as a WorkflowError or a Problem,
never as an internal error, and messages quote user values shortened."""

from __future__ import annotations

from pathlib import Path

import pytest

from nodegraph.core.errors import WorkflowError
from nodegraph.core.graph import NodeInstance, Workflow
from nodegraph.core.migrations import migrate
from nodegraph.core.validate import Problem, shorten, validate
from nodegraph.core.workflow_io import from_document, loads
from nodegraph.packs import create_registry

FAKE_PACK = Path(__file__).resolve().parents[1] / "packs" / "fakepack"


@pytest.fixture(scope="module")
def registry():
    return create_registry([FAKE_PACK], user_packs=False)


def _deep(levels: int) -> list:
    value: list = []
    for _ in range(levels):
        value = [value]
    return value


def _doc(inputs: dict, node_type: str = "Choose") -> dict:
    return {"format": "nodegraph-workflow", "version": 1, "nodes": {"n": {"type": node_type, "inputs": inputs}}}


def test_shorten_bounds_every_kind_of_value():
    assert shorten("abc") == "'abc'"
    long_text = shorten("x" * 10_000_000, 80)
    assert len(long_text) <= 120 and "10000000 characters" in long_text
    assert len(shorten(10**5000, 80)) <= 80  # beyond int's str() limit: no ValueError
    assert len(shorten(_deep(10_000), 80)) <= 80  # no RecursionError
    assert len(shorten({"k" * 500: ["v" * 500] * 500}, 80)) <= 80


def test_a_float_input_given_a_400_digit_integer_is_out_of_range(registry):
    workflow = from_document(_doc({"weight": 10**400}))
    problems = [p for p in validate(workflow, registry) if p.port == "weight"]
    assert [p.code for p in problems] == ["out_of_range"]
    assert len(problems[0].message) < 200


def test_an_int_input_given_a_5000_digit_integer_through_the_api(registry):
    workflow = Workflow([NodeInstance("n", "Number", {"value": 10**5000})])
    problems = [p for p in validate(workflow, registry) if p.port == "value"]
    assert [p.code for p in problems] == ["out_of_range"] and len(str(problems[0])) < 200


def test_a_huge_string_is_quoted_shortened_in_problems(registry):
    workflow = from_document(_doc({"word": "w" * 10_000_000, "w" * 1_000_000: 1}, node_type="Choose"))
    problems = validate(workflow, registry)
    assert {p.code for p in problems} >= {"invalid_choice", "unknown_input"}
    assert all(len(str(p)) < 400 for p in problems), [len(str(p)) for p in problems]


def test_a_huge_unknown_type_and_node_id_are_shortened(registry):
    workflow = from_document({"format": "nodegraph-workflow", "version": 1,
                              "nodes": {"i" * 1_000_000: {"type": "T" * 1_000_000}}})
    problems = validate(workflow, registry, require_output=False)
    assert [p.code for p in problems] == ["unknown_type"] and len(str(problems[0])) < 400


@pytest.mark.parametrize("where", ["format", "mode", "key"])
def test_loading_errors_quote_huge_values_shortened(where):
    doc = _doc({})
    if where == "format":
        doc["format"] = "x" * 10_000_000
    elif where == "mode":
        doc["nodes"]["n"]["mode"] = "m" * 10_000_000
    else:
        doc["nodes"]["n"]["inputs"] = {"k" * 1_000_000: {3: 1}}
    with pytest.raises(WorkflowError) as caught:
        from_document(doc)
    assert len(str(caught.value)) < 400


def test_deep_nesting_through_the_python_api_is_a_workflow_error():
    for doc in (_doc({"word": _deep(10_000)}), {**_doc({}), "format": _deep(10_000)},
                {**_doc({}), "meta": {"m": _deep(10_000)}}):
        with pytest.raises(WorkflowError):
            from_document(doc)
    with pytest.raises(WorkflowError):
        loads('{"format": "nodegraph-workflow", "version": 1, "nodes": {"n": {"type": "Choose", "inputs": {"word": '
              + "[" * 10_000 + "]" * 10_000 + "}}}}")


def test_a_huge_version_through_the_python_api_is_a_workflow_error():
    with pytest.raises(WorkflowError) as caught:
        migrate({"format": "nodegraph-workflow", "version": 10**5000})
    assert len(str(caught.value)) < 400
    with pytest.raises(WorkflowError):
        migrate({"format": "nodegraph-workflow", "version": -(10**5000)})


def test_a_huge_type_version_is_reported_shortened(registry):
    workflow = Workflow([NodeInstance("n", "Number", {"value": 1}, type_version=10**5000)])
    problems = validate(workflow, registry, require_output=False)
    assert [p.code for p in problems] == ["newer_version"] and len(str(problems[0])) < 400


def test_problem_str_shortens_node_and_port():
    assert len(str(Problem("cycle", "x", "n" * 100_000, "p" * 100_000))) < 300
