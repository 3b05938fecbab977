"""Graph edits (the GUI's undo commands call these) and the topology helpers shared with the executor."""

from __future__ import annotations

import pytest

from nodegraph.core.graph import Link, NodeInstance, Workflow, link_sort_key, natural_key
from nodegraph.core.topology import Unresolvable, find_cycles, resolve_source, topological_order


def chain() -> Workflow:
    wf = Workflow()
    wf.add_node("Number", "a")
    wf.add_node("Add", "b")
    wf.add_node("Add", "c")
    wf.connect("a", "VALUE", "b", "a")
    wf.connect("a", "VALUE", "b", "b")
    wf.connect("b", "SUM", "c", "a")
    return wf


# --- ids ------------------------------------------------------------------------------------------------------------
def test_add_node_generates_readable_unique_ids():
    wf = Workflow()
    ids = [wf.add_node("UNetSampler").id for _ in range(3)]
    assert ids == ["unetsampler", "unetsampler_2", "unetsampler_3"]
    assert wf.add_node("Load.Checkpoint-v2").id == "loadcheckpointv2"
    assert wf.add_node("Ünïcode!").id == "ncode"
    assert wf.add_node("!!!").id == "node"
    assert wf.add_node("???").id == "node_2"
    assert len(set(wf.nodes)) == len(wf) == 7


def test_generated_id_skips_ids_in_use():
    wf = Workflow()
    wf.add_node("Number", "number")
    wf.add_node("Number", "number_2")
    assert wf.add_node("Number").id == "number_3"
    wf.remove_node("number_2")
    assert wf.add_node("Number").id == "number_2"


def test_add_node_returns_the_instance_with_fields():
    wf = Workflow()
    node = wf.add_node("Number", "n", inputs={"value": 3}, title="T", mode="bypass", ui={"pos": [1, 2]})
    assert node is wf.node("n")
    assert node == NodeInstance("n", "Number", {"value": 3}, "T", "bypass", {"pos": [1, 2]})


def test_add_node_refuses_used_id_and_bad_mode():
    wf = Workflow()
    wf.add_node("Number", "n")
    with pytest.raises(ValueError, match="'n' is already used"):
        wf.add_node("Add", "n")
    assert wf.node("n").type == "Number"
    with pytest.raises(ValueError, match="mode must be one of normal, bypass, mute"):
        wf.add_node("Number", "m", mode="disabled")
    assert "m" not in wf


def test_node_lookup_names_the_missing_id():
    with pytest.raises(KeyError, match="no node 'x'"):
        Workflow().node("x")


# --- links ----------------------------------------------------------------------------------------------------------
def test_connect_replaces_the_previous_link_into_the_same_input():
    wf = Workflow()
    for node_id in ("one", "two", "sum"):
        wf.add_node("Add", node_id)
    assert wf.connect("one", "SUM", "sum", "a") == []
    replaced = wf.connect("two", "SUM", "sum", "a")
    assert replaced == [Link("one", "SUM", "sum", "a")]
    assert wf.links == [Link("two", "SUM", "sum", "a")]
    # another input of the same node is independent
    assert wf.connect("one", "SUM", "sum", "b") == []
    assert wf.links_into("sum") == [Link("two", "SUM", "sum", "a"), Link("one", "SUM", "sum", "b")]
    assert wf.links_into("sum", "b") == [Link("one", "SUM", "sum", "b")]
    assert wf.links_from("one") == [Link("one", "SUM", "sum", "b")]


def test_connect_returns_every_link_it_replaces():
    wf = Workflow([NodeInstance("x", "Add"), NodeInstance("y", "Add")],
                  [Link("x", "SUM", "y", "a"), Link("x", "SUM", "y", "a"), Link("x", "SUM", "y", "b")])
    assert wf.connect("x", "SUM", "y", "a") == [Link("x", "SUM", "y", "a")] * 2
    assert sorted(wf.links, key=str) == [Link("x", "SUM", "y", "a"), Link("x", "SUM", "y", "b")]


def test_connect_refuses_missing_nodes():
    wf = Workflow()
    wf.add_node("Add", "a")
    for args in (("nope", "SUM", "a", "a"), ("a", "SUM", "nope", "a")):
        with pytest.raises(KeyError, match="'nope'"):
            wf.connect(*args)
    assert wf.links == []


def test_disconnect_returns_removed_links():
    wf = chain()
    assert wf.disconnect("b", "a") == [Link("a", "VALUE", "b", "a")]
    assert wf.disconnect("b", "a") == []
    assert Link("a", "VALUE", "b", "b") in wf.links and len(wf.links) == 2


def test_remove_node_returns_removed_links():
    wf = chain()
    removed = wf.remove_node("b")
    assert sorted(removed, key=str) == sorted(
        [Link("a", "VALUE", "b", "a"), Link("a", "VALUE", "b", "b"), Link("b", "SUM", "c", "a")], key=str)
    assert wf.links == [] and "b" not in wf and list(wf.nodes) == ["a", "c"]


def test_remove_node_keeps_unrelated_links_and_can_be_undone():
    wf = chain()
    wf.add_node("Add", "d")
    wf.connect("c", "SUM", "d", "a")
    before = wf.copy()
    node = wf.node("a")
    removed = wf.remove_node("a")
    assert wf.links == [Link("b", "SUM", "c", "a"), Link("c", "SUM", "d", "a")]
    # undo: put the node and its links back
    wf.nodes[node.id] = node
    wf.links += removed
    assert wf == before


def test_remove_missing_node_raises():
    wf = chain()
    with pytest.raises(KeyError, match="no node 'zz'"):
        wf.remove_node("zz")
    assert len(wf) == 3 and len(wf.links) == 3


# --- modes and inputs -----------------------------------------------------------------------------------------------
def test_set_mode():
    wf = chain()
    for mode in ("bypass", "mute", "normal"):
        wf.set_mode("b", mode)
        assert wf.node("b").mode == mode


@pytest.mark.parametrize("mode", ["off", "Normal", "", None, "muted"])
def test_set_mode_refuses_unknown_modes(mode):
    wf = chain()
    with pytest.raises(ValueError, match="mode must be one of"):
        wf.set_mode("b", mode)
    assert wf.node("b").mode == "normal"


def test_set_mode_on_missing_node():
    with pytest.raises(KeyError):
        Workflow().set_mode("x", "mute")


def test_set_input():
    wf = chain()
    wf.set_input("a", "value", 7)
    assert wf.node("a").inputs == {"value": 7}
    with pytest.raises(KeyError):
        wf.set_input("missing", "value", 1)


# --- equality and copies --------------------------------------------------------------------------------------------
def test_copy_is_deep():
    wf = chain()
    wf.node("a").inputs["value"] = [1, 2]
    wf.meta["m"] = {"k": 1}
    dup = wf.copy()
    assert dup == wf and dup is not wf
    dup.node("a").inputs["value"].append(3)
    dup.meta["m"]["k"] = 2
    dup.connect("a", "VALUE", "c", "b")
    assert wf.node("a").inputs["value"] == [1, 2] and wf.meta["m"] == {"k": 1} and len(wf.links) == 3
    assert dup != wf


def test_equality_ignores_link_order_but_not_content():
    a = chain()
    b = chain()
    b.links.reverse()
    assert a == b
    b.links[0] = Link("a", "VALUE", "c", "b")
    assert a != b
    assert a != "not a workflow"
    c = chain()
    c.node("a").title = "t"
    assert a != c
    d = chain()
    d.meta["x"] = 1
    assert a != d


def test_natural_key_and_link_sort_key():
    ids = ["node10", "node2", "node1", "a", "b2c10", "b2c9", "10", "9"]
    assert sorted(ids, key=natural_key) == ["9", "10", "a", "b2c9", "b2c10", "node1", "node2", "node10"]
    links = [Link("x", "O", "n10", "a"), Link("y", "O", "n2", "b"), Link("x", "O", "n2", "a")]
    assert sorted(links, key=link_sort_key) == [links[2], links[1], links[0]]
    assert str(links[0]) == "x.O -> n10.a"


# --- topology -------------------------------------------------------------------------------------------------------
def test_find_cycles():
    edges = {"a": ["b"], "b": ["c"], "c": ["a"], "d": ["d"], "e": ["a"], "f": []}
    cycles = find_cycles(list(edges), edges)
    assert sorted(cycles) == [["a", "b", "c", "a"], ["d", "d"]]
    assert find_cycles(["x", "y"], {"x": ["y"], "y": []}) == []


def test_find_cycles_on_a_long_chain_does_not_overflow():
    n = 5000
    nodes = [f"n{i}" for i in range(n)]
    edges = {nodes[i]: [nodes[i + 1]] for i in range(n - 1)}
    edges[nodes[-1]] = [nodes[0]]
    cycles = find_cycles(nodes, edges)
    assert len(cycles) == 1 and len(cycles[0]) == n + 1 and cycles[0][0] == cycles[0][-1] == "n0"


def test_topological_order_is_stable():
    deps = {"c": ["a"], "b": ["a"], "a": [], "d": ["b", "c"]}
    assert topological_order(["d", "c", "b", "a"], deps) == ["a", "c", "b", "d"]
    assert topological_order(["b", "a"], {"a": ["zz"], "b": []}) == ["b", "a"]  # unknown deps are ignored
    with pytest.raises(ValueError, match="cycle"):
        topological_order(["a", "b"], {"a": ["b"], "b": ["a"]})


def test_resolve_source_through_bypass(registry):
    wf = Workflow()
    wf.add_node("Number", "num")
    wf.add_node("Scale", "s1", mode="bypass")
    wf.add_node("Scale", "s2", mode="bypass")
    wf.add_node("Collect", "out")
    wf.connect("num", "VALUE", "s1", "value")
    wf.connect("s1", "VALUE", "s2", "value")
    wf.connect("s2", "VALUE", "out", "value")
    assert resolve_source(wf, registry, wf.links_into("out")[0]) == ("num", "VALUE")
    wf.set_mode("num", "mute")
    with pytest.raises(Unresolvable, match="muted"):
        resolve_source(wf, registry, wf.links_into("out")[0])


def test_resolve_source_bypass_cycle(registry):
    wf = Workflow()
    wf.add_node("Scale", "s1", mode="bypass")
    wf.add_node("Scale", "s2", mode="bypass")
    wf.connect("s1", "VALUE", "s2", "value")
    wf.connect("s2", "VALUE", "s1", "value")
    with pytest.raises(Unresolvable, match="cycle"):
        resolve_source(wf, registry, wf.links_into("s1")[0])
