"""Format migrations (version 0 drafts, newer versions refused) and per-node type version upgrades."""

from __future__ import annotations

import json

import pytest

from nodegraph.core import Input, NodeDef, NodeRegistry, Output, PortType, node, upgrade_node_versions, validate
from nodegraph.core.errors import SchemaError, WorkflowError
from nodegraph.core.graph import Link, Workflow
from nodegraph.core.migrations import CURRENT_VERSION, MIGRATIONS, migrate
from nodegraph.core.workflow_io import dumps, from_document, loads

V0_DRAFT = {
    "format": "nodegraph-workflow",
    "version": 0,
    "nodes": [
        {"id": "ckpt", "type": "LoadCheckpoint", "inputs": {"ckpt_name": "model.safetensors"}, "pos": [10, 20]},
        {"id": "pos", "type": "CLIPTextEncode", "inputs": {"text": "a cat"}, "title": "Positive",
         "bypass": True},
        {"id": "node10", "type": "Number", "inputs": {"value": 3}, "bypass": False, "pos": [0, 0]},
        {"id": "node2", "type": "Number"},
    ],
    "links": [["ckpt", "CLIP", "pos", "clip"], ["node2", "VALUE", "node10", "value"]],
    "meta": {"seed": 7},
    "draft_only": "kept",
}

V1_EQUIVALENT = {
    "format": "nodegraph-workflow",
    "version": 1,
    "nodes": {
        "ckpt": {"type": "LoadCheckpoint", "inputs": {"ckpt_name": "model.safetensors"}, "ui": {"pos": [10, 20]}},
        "pos": {"type": "CLIPTextEncode", "inputs": {"text": "a cat"}, "title": "Positive", "mode": "bypass"},
        "node10": {"type": "Number", "inputs": {"value": 3}, "ui": {"pos": [0, 0]}},
        "node2": {"type": "Number"},
    },
    "links": [
        {"from": ["ckpt", "CLIP"], "to": ["pos", "clip"]},
        {"from": ["node2", "VALUE"], "to": ["node10", "value"]},
    ],
    "meta": {"seed": 7},
    "draft_only": "kept",
}


# --- format versions ------------------------------------------------------------------------------------------------
def test_version_0_draft_migrates_to_equivalent_v1_workflow():
    migrated = loads(json.dumps(V0_DRAFT))
    expected = from_document(V1_EQUIVALENT)
    assert migrated == expected
    assert migrated.node("pos").mode == "bypass" and migrated.node("pos").title == "Positive"
    assert migrated.node("node10").mode == "normal"
    assert migrated.node("ckpt").ui == {"pos": [10, 20]}
    assert migrated.node("node2").ui == {}
    # the draft-only keys are gone from the node, not kept as unknown extras
    assert all(not n.extra for n in migrated)
    assert sorted(migrated.links, key=str) == sorted(
        [Link("ckpt", "CLIP", "pos", "clip"), Link("node2", "VALUE", "node10", "value")], key=str)
    assert migrated.meta == {"seed": 7} and migrated.extra == {"draft_only": "kept"}


def test_migrated_draft_saves_as_current_version():
    text = dumps(loads(json.dumps(V0_DRAFT)))
    doc = json.loads(text)
    assert doc["version"] == CURRENT_VERSION == 1
    assert text == dumps(from_document(V1_EQUIVALENT))


def test_migrate_does_not_modify_its_argument():
    draft = json.loads(json.dumps(V0_DRAFT))
    migrated = migrate(draft)
    assert draft == V0_DRAFT
    assert migrated["version"] == 1 and isinstance(migrated["nodes"], dict)


def test_current_version_document_is_not_migrated():
    doc = json.loads(json.dumps(V1_EQUIVALENT))
    assert migrate(doc) == V1_EQUIVALENT
    assert set(MIGRATIONS) == {0}


def test_empty_version_0_draft():
    wf = from_document({"format": "nodegraph-workflow", "version": 0})
    assert len(wf) == 0 and wf.links == []


@pytest.mark.parametrize(
    ("draft", "where"),
    [
        ({"nodes": {"a": {}}}, "nodes"),
        ({"nodes": [{"type": "X"}]}, "nodes[0]"),
        ({"nodes": [{"id": 3, "type": "X"}]}, "nodes[0]"),
        ({"nodes": ["a"]}, "nodes[0]"),
        ({"nodes": [{"id": "a", "type": "X"}, {"id": "a", "type": "Y"}]}, "nodes[1]"),
        ({"links": {"a": 1}}, "links"),
        ({"links": [["a", "X", "b"]]}, "links[0]"),
        ({"links": [{"from": ["a", "X"], "to": ["b", "y"]}]}, "links[0]"),
    ],
)
def test_malformed_version_0_drafts_are_workflow_errors(draft, where):
    doc = {"format": "nodegraph-workflow", "version": 0, **draft}
    with pytest.raises(WorkflowError) as info:
        from_document(doc)
    assert info.value.where == where


def test_version_0_link_with_non_string_parts_is_refused():
    doc = {"format": "nodegraph-workflow", "version": 0, "nodes": [{"id": "a", "type": "X"}],
           "links": [["a", 1, "a", "x"]]}
    with pytest.raises(WorkflowError, match=r"links\[0\]"):
        from_document(doc)


def test_newer_format_version_is_refused():
    doc = json.loads(json.dumps(V1_EQUIVALENT))
    doc["version"] = 2
    with pytest.raises(WorkflowError) as info:
        loads(json.dumps(doc))
    message = str(info.value)
    assert "saved by a newer nodegraph" in message
    assert "format version 2" in message and "update nodegraph" in message
    assert info.value.where == "version"


@pytest.mark.parametrize("version", ["1", 1.0, True, None, [1], {"v": 1}])
def test_non_integer_version_is_refused(version):
    doc = json.loads(json.dumps(V1_EQUIVALENT))
    doc["version"] = version
    with pytest.raises(WorkflowError, match="integer format version"):
        from_document(doc)


def test_missing_version_is_refused():
    doc = json.loads(json.dumps(V1_EQUIVALENT))
    del doc["version"]
    with pytest.raises(WorkflowError, match="integer format version"):
        from_document(doc)


def test_negative_version_is_refused():
    doc = json.loads(json.dumps(V1_EQUIVALENT))
    doc["version"] = -1
    with pytest.raises(WorkflowError, match="not a version nodegraph ever wrote"):
        from_document(doc)


# --- node type versions ---------------------------------------------------------------------------------------------
def _rename_strength(inputs):
    if "strength" in inputs:
        inputs["amount"] = inputs.pop("strength")
    return inputs


@node(type="Blur", display_name="Blur", category="test", description="v2: 'strength' became 'amount'.",
      inputs=[Input.link("value", PortType.INT), Input.int("amount", 1, min=0, max=10)],
      outputs=[Output("VALUE", PortType.INT)], version=2, upgrades={1: _rename_strength})
def blur(ctx, value, amount):
    return {"VALUE": value}


def versioned_registry() -> NodeRegistry:
    reg = NodeRegistry()
    reg.register(blur)
    return reg


def test_upgrade_node_versions_renames_input_and_stamps_version():
    wf = loads(json.dumps({
        "format": "nodegraph-workflow", "version": 1,
        "nodes": {
            "old": {"type": "Blur", "type_version": 1, "inputs": {"strength": 4}},
            "current": {"type": "Blur", "type_version": 2, "inputs": {"amount": 5}},
            "unversioned": {"type": "Blur", "inputs": {"amount": 6}},
            "unknown": {"type": "Mystery", "type_version": 1, "inputs": {"strength": 1}},
        },
    }))
    reg = versioned_registry()
    assert sorted(upgrade_node_versions(wf, reg)) == ["old"]
    assert wf.node("old").inputs == {"amount": 4}
    assert wf.node("old").type_version == 2
    assert wf.node("current").inputs == {"amount": 5} and wf.node("current").type_version == 2
    assert wf.node("unversioned").inputs == {"amount": 6} and wf.node("unversioned").type_version is None
    assert wf.node("unknown").inputs == {"strength": 1} and wf.node("unknown").type_version == 1
    assert json.loads(dumps(wf))["nodes"]["old"] == {"type": "Blur", "type_version": 2, "inputs": {"amount": 4}}
    # a second pass finds nothing left to do
    assert upgrade_node_versions(wf, reg) == []


def test_old_inputs_are_unknown_until_upgraded():
    wf = Workflow()
    wf.add_node("Blur", "b", inputs={"strength": 4}, type_version=1)
    reg = versioned_registry()
    before = {(p.code, p.node_id, p.port) for p in validate(wf, reg, require_output=False)}
    assert ("unknown_input", "b", "strength") in before
    upgrade_node_versions(wf, reg)
    after = {(p.code, p.node_id, p.port) for p in validate(wf, reg, require_output=False)}
    assert ("unknown_input", "b", "strength") not in after
    assert ("missing_input", "b", "value") in after


def test_upgraders_chain_across_versions():
    calls = []

    def v1(inputs):
        calls.append(1)
        return {"b": inputs.pop("a")}

    def v2(inputs):
        calls.append(2)
        return {"c": inputs["b"] * 10}

    def run(ctx, c):
        return {}

    reg = NodeRegistry()
    reg.register(NodeDef(type="Chain", run=run, version=3, display_name="Chain", inputs=(Input.int("c", 0),),
                         upgrades={1: v1, 2: v2}))
    wf = Workflow()
    wf.add_node("Chain", "from1", inputs={"a": 2}, type_version=1)
    wf.add_node("Chain", "from2", inputs={"b": 3}, type_version=2)
    upgrade_node_versions(wf, reg)
    assert wf.node("from1").inputs == {"c": 20} and wf.node("from1").type_version == 3
    assert wf.node("from2").inputs == {"c": 30} and wf.node("from2").type_version == 3
    assert calls == [1, 2, 2]


def test_failing_upgrader_is_a_workflow_error_naming_the_node():
    def broken(inputs):
        raise KeyError("strength")

    def run(ctx, amount):
        return {}

    reg = NodeRegistry()
    reg.register(NodeDef(type="Broken", run=run, version=2, display_name="Broken",
                         inputs=(Input.int("amount", 0),), upgrades={1: broken}))
    wf = Workflow()
    wf.add_node("Broken", "b", inputs={}, type_version=1)
    with pytest.raises(WorkflowError) as info:
        upgrade_node_versions(wf, reg)
    assert info.value.where == "nodes.b" and "cannot upgrade from version 1" in str(info.value)


def test_newer_node_version_is_a_validation_problem():
    wf = Workflow()
    wf.add_node("Blur", "future", inputs={"amount": 1}, type_version=3)
    reg = versioned_registry()
    assert upgrade_node_versions(wf, reg) == []
    assert wf.node("future").type_version == 3
    problems = [p for p in validate(wf, reg, require_output=False) if p.code == "newer_version"]
    assert len(problems) == 1
    assert problems[0].node_id == "future" and problems[0].port is None
    assert "version 3" in problems[0].message and "version 2" in problems[0].message


def test_upgrade_must_lead_to_the_current_version():
    def run(ctx):
        return {}

    reg = NodeRegistry()
    with pytest.raises(SchemaError, match="upgrade from version 2"):
        reg.register(NodeDef(type="Odd", run=run, version=2, display_name="Odd", upgrades={2: dict}))
    with pytest.raises(SchemaError, match="upgrade from version 0"):
        reg.register(NodeDef(type="Odd", run=run, version=2, display_name="Odd", upgrades={0: dict}))
