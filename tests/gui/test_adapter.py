"""The adapter keeps the core workflow and the canvas in sync, with exact undo/redo."""

from pathlib import Path

import pytest

from nodegraph.core.workflow_io import dumps, load
from nodegraph.gui.adapter import GraphAdapter

STARTER = Path(__file__).resolve().parents[2] / "resources" / "workflows" / "txt2img.json"


@pytest.fixture
def adapter(qtbot, registry):
    return GraphAdapter(registry)


def build_like(adapter, workflow):
    """Rebuild `workflow` through the adapter's editing API, node by node and link by link."""
    for node in workflow:
        adapter.add_node(node.type, tuple(node.ui["pos"]), node_id=node.id, inputs=node.inputs, title=node.title)
    for link in workflow.links:
        assert adapter.connect(link.from_node, link.from_output, link.to_node, link.to_input), link
    adapter.workflow.meta = dict(workflow.meta)


def test_building_txt2img_through_the_adapter_equals_the_starter(adapter):
    starter = load(STARTER)
    build_like(adapter, starter)
    adapter.set_value("sample", "steps", 25)
    adapter.set_value("sample", "steps", 20)
    assert dumps(adapter.workflow) == dumps(starter)
    assert adapter.workflow == starter
    assert set(adapter.workflow.nodes) == set(starter.nodes)


def test_loading_shows_every_node_and_link_and_round_trips(adapter):
    starter = load(STARTER)
    adapter.load(starter.copy())
    assert len(adapter.graph.all_nodes()) == len(starter)
    assert adapter.view_node("positive").get_property("in_text").startswith("a photo of a cat")
    assert adapter.to_workflow() == starter


def test_incompatible_connections_are_refused(adapter):
    adapter.load(load(STARTER))
    before = adapter.to_workflow()
    assert not adapter.connect("ckpt", "MODEL", "decode", "vae")
    assert not adapter.connect("ckpt", "CLIP", "sample", "positive")
    assert adapter.to_workflow() == before
    assert adapter.undo_stack.count() == 0
    view_in = adapter.view_node("decode").inputs()["vae"].view
    view_out = adapter.view_node("ckpt").outputs()["MODEL"].view
    adapter.graph._on_connection_changed([], [[view_out, view_in]])  # a drag on the canvas
    assert adapter.to_workflow() == before


def test_values_an_input_refuses_are_refused(adapter):
    adapter.load(load(STARTER))
    with pytest.raises(ValueError):
        adapter.set_value("ckpt", "prediction", "v_prediction")
    with pytest.raises(ValueError):
        adapter.set_value("sample", "steps", "many")
    assert adapter.undo_stack.count() == 0


def edits(adapter):
    return {
        "add": lambda: adapter.add_node("EmptyLatentImage", (50, 60)),
        "delete": lambda: adapter.remove_nodes(["sample"]),
        "connect": lambda: adapter.connect("latent", "LATENT", "decode", "samples"),
        "disconnect": lambda: adapter.disconnect("save", "images"),
        "move": lambda: adapter.move_node("ckpt", (-40.5, 75)),
        "value": lambda: adapter.set_value("sample", "steps", 33),
        "choice": lambda: adapter.set_value("sample", "sampler_name", "dpmpp_2m"),
        "unset value": lambda: adapter.set_value("ckpt", "prediction", "v"),
        "text": lambda: adapter.set_value("positive", "text", "a dog"),
    }


@pytest.mark.parametrize("kind", list(edits(None)))
def test_undo_and_redo_restore_the_core_graph_exactly(adapter, kind):
    adapter.load(load(STARTER))
    before = adapter.to_workflow()
    edits(adapter)[kind]()
    after = adapter.to_workflow()
    assert after != before
    adapter.undo()
    assert adapter.to_workflow() == before
    adapter.redo()
    assert adapter.to_workflow() == after
    adapter.undo()
    assert adapter.to_workflow() == before
