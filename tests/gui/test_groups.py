"""Groups: backdrops behind nodes, undoable, kept in workflow.meta["groups"] and saved with the workflow."""

import copy
import json

from PySide6 import QtCore, QtGui

from nodegraph.core.graph import Workflow
from nodegraph.gui.groups import GROUPS_KEY, Group, is_backdrop


def _two_nodes(adapter):
    adapter.add_node("Number", (0, 0), node_id="a")
    adapter.add_node("Scale", (300, 40), node_id="b")
    adapter.connect("a", "VALUE", "b", "value")


def _select(adapter, node_ids):
    adapter.graph.viewer().scene().clearSelection()
    for node_id in node_ids:
        adapter.view_node(node_id).view.setSelected(True)


def _action(window, text):
    return next(a for a in window.findChildren(QtGui.QAction) if a.text().replace("&", "") == text)


def _backdrops(adapter):
    return [n for n in adapter.graph.all_nodes() if is_backdrop(n)]


def test_group_goes_behind_the_selection_and_undo_redo_restore_meta(window):
    adapter = window.adapter
    _two_nodes(adapter)
    before = copy.deepcopy(adapter.workflow.meta)
    core_before = adapter.to_workflow()
    _select(adapter, ["a", "b"])
    _action(window, "Group").trigger()  # Edit ▸ Group (Ctrl+G)
    (backdrop,) = _backdrops(adapter)
    assert backdrop.name() == "Group"
    assert {n.id for n in backdrop.nodes()} == {adapter.view_node("a").id, adapter.view_node("b").id}
    (entry,) = adapter.workflow.meta[GROUPS_KEY]
    assert set(entry) == {"title", "pos", "size", "color"}
    a_rect = adapter.view_node("a").view.sceneBoundingRect()
    assert entry["title"] == "Group" and entry["pos"][0] < a_rect.x() and entry["pos"][1] < a_rect.y()
    assert entry["pos"][0] + entry["size"][0] > adapter.view_node("b").view.sceneBoundingRect().right()
    after = copy.deepcopy(adapter.workflow.meta)
    # the core graph is untouched: no backdrop among its nodes, same links
    assert sorted(adapter.to_workflow().nodes) == ["a", "b"]
    assert adapter.to_workflow().links == core_before.links
    adapter.undo()
    assert _backdrops(adapter) == [] and adapter.workflow.meta == before
    adapter.redo()
    assert len(_backdrops(adapter)) == 1 and adapter.workflow.meta == after
    assert adapter.to_workflow().nodes == core_before.nodes


def test_groups_keep_their_titles_and_rename_is_undoable(window, monkeypatch):
    adapter = window.adapter
    groups = window.edit_actions.groups
    _two_nodes(adapter)
    first = groups.group_nodes([adapter.view_node("a")])
    second = groups.group_nodes([adapter.view_node("b")])
    assert first.name() == second.name() == "Group"  # NodeGraphQt would make the second "Group 1"
    before = copy.deepcopy(adapter.workflow.meta)
    monkeypatch.setattr(groups, "ask_title", lambda current: "Prompts")
    adapter.graph.viewer().node_double_clicked.emit(first.id)  # what a double-click on the backdrop emits
    assert first.name() == "Prompts"
    assert sorted(e["title"] for e in adapter.workflow.meta[GROUPS_KEY]) == ["Group", "Prompts"]
    adapter.undo()
    assert first.name() == "Group" and adapter.workflow.meta == before
    monkeypatch.setattr(groups, "ask_title", lambda current: None)  # cancelled: nothing changes
    adapter.graph.viewer().node_double_clicked.emit(first.id)
    assert adapter.workflow.meta == before and adapter.undo_stack.canRedo()


def test_moving_and_resizing_a_group_are_undoable(window):
    adapter = window.adapter
    _two_nodes(adapter)
    backdrop = window.edit_actions.groups.group_nodes([adapter.view_node("a"), adapter.view_node("b")])
    before = copy.deepcopy(adapter.workflow.meta)
    a_before = list(adapter.workflow.node("a").ui["pos"])
    # a drag of the backdrop moves it with the nodes NodeGraphQt selected on it, as one "move nodes" step
    moved = {}
    for item in [backdrop.view, adapter.view_node("a").view, adapter.view_node("b").view]:
        moved[item] = list(item.xy_pos)
        item.xy_pos = [item.xy_pos[0] + 100, item.xy_pos[1] + 50]
    adapter.graph._on_nodes_moved(moved)
    (entry,) = adapter.workflow.meta[GROUPS_KEY]
    assert entry["pos"] == [before[GROUPS_KEY][0]["pos"][0] + 100, before[GROUPS_KEY][0]["pos"][1] + 50]
    assert adapter.workflow.node("a").ui["pos"] == [a_before[0] + 100, a_before[1] + 50]
    adapter.undo()
    assert adapter.workflow.meta == before and adapter.workflow.node("a").ui["pos"] == a_before
    # the corner handle's release, as NodeGraphQt reports it
    adapter.graph.viewer().node_backdrop_updated.emit(
        backdrop.id, "sizer_mouse_release", {"pos": backdrop.view.xy_pos, "width": 700.0, "height": 500.0})
    assert adapter.workflow.meta[GROUPS_KEY][0]["size"] == [700, 500]
    adapter.undo()
    assert adapter.workflow.meta == before


def test_ungroup_and_delete(window):
    adapter = window.adapter
    _two_nodes(adapter)
    _select(adapter, ["a", "b"])
    window.edit_actions.groups.group_selected()
    grouped = copy.deepcopy(adapter.workflow.meta)
    (backdrop,) = _backdrops(adapter)
    adapter.graph.viewer().scene().clearSelection()
    backdrop.view.setSelected(True)
    _action(window, "Ungroup").trigger()  # the group goes, its nodes stay
    assert _backdrops(adapter) == [] and GROUPS_KEY not in adapter.workflow.meta
    assert sorted(adapter.workflow.nodes) == ["a", "b"]
    adapter.undo()
    assert adapter.workflow.meta == grouped
    (backdrop,) = _backdrops(adapter)
    _select(adapter, ["a"])
    backdrop.view.setSelected(True)
    window.edit_actions.delete()  # Delete removes the selected nodes and groups: one step
    assert _backdrops(adapter) == [] and sorted(adapter.workflow.nodes) == ["b"]
    adapter.undo()
    assert adapter.workflow.meta == grouped and sorted(adapter.workflow.nodes) == ["a", "b"]
    assert len(adapter.workflow.links) == 1


def test_groups_survive_save_and_open(window, tmp_path):
    adapter = window.adapter
    _two_nodes(adapter)
    groups = window.edit_actions.groups
    groups.group_nodes([adapter.view_node("a"), adapter.view_node("b")])
    groups.rename(groups.group_nodes([adapter.view_node("b")]), "Inner")
    saved_meta = copy.deepcopy(adapter.workflow.meta)
    path = tmp_path / "grouped.json"
    assert window.save_as(path)
    on_disk = json.loads(path.read_text(encoding="utf-8"))
    assert on_disk["meta"][GROUPS_KEY] == saved_meta[GROUPS_KEY]
    assert sorted(on_disk["nodes"]) == ["a", "b"]  # backdrops are not core nodes
    window.new_workflow()
    assert _backdrops(adapter) == []
    assert window.open_file(path)
    shown = sorted((groups.group_of(b) for b in _backdrops(adapter)), key=Group.sort_key)
    assert shown == sorted((Group.from_meta(e) for e in saved_meta[GROUPS_KEY]), key=Group.sort_key)
    assert {b.name() for b in _backdrops(adapter)} == {"Group", "Inner"}
    assert adapter.workflow.meta == saved_meta and not window.modified
    assert sorted(adapter.to_workflow().nodes) == ["a", "b"]
    # the loaded groups are live: an edit after opening is undoable back to the file's meta
    groups.rename(next(b for b in _backdrops(adapter) if b.name() == "Inner"), "Renamed")
    assert "Renamed" in {e["title"] for e in adapter.workflow.meta[GROUPS_KEY]}
    adapter.undo()
    assert adapter.workflow.meta == saved_meta


def test_meta_in_file_order_and_unusable_entries_are_kept(window):
    adapter = window.adapter
    odd = {"note": "no position"}
    small = {"title": "small", "pos": [0, 0], "size": [200, 150], "color": [10, 20, 30]}
    big = {"title": "big", "pos": [-50, -50], "size": [900, 700], "color": [200, 100, 0]}
    workflow = Workflow(meta={GROUPS_KEY: [small, odd, big], "seed": 3})
    adapter.load(workflow)
    assert sorted(b.name() for b in _backdrops(adapter)) == ["big", "small"]
    _two_nodes(adapter)  # edits that do not touch groups leave meta exactly as it was
    assert adapter.workflow.meta == {GROUPS_KEY: [small, odd, big], "seed": 3}
    window.edit_actions.groups.group_nodes([adapter.view_node("a")])
    entries = adapter.workflow.meta[GROUPS_KEY]
    assert odd in entries and len(entries) == 4 and adapter.workflow.meta["seed"] == 3
    assert [e["title"] for e in entries if e is not odd][0] == "big"  # larger groups first: drawn underneath


def test_copy_paste_does_not_copy_groups(window):
    adapter = window.adapter
    _two_nodes(adapter)
    _select(adapter, ["a", "b"])
    window.edit_actions.groups.group_selected()
    _select(adapter, ["a", "b"])
    assert len(window.edit_actions.duplicate()) == 2
    assert len(_backdrops(adapter)) == 1 and len(adapter.workflow.meta[GROUPS_KEY]) == 1


def test_dragging_a_group_moves_its_nodes_in_one_undo_step(window, qtbot):
    adapter = window.adapter
    _two_nodes(adapter)
    backdrop = window.edit_actions.groups.group_nodes([adapter.view_node("a"), adapter.view_node("b")])
    window.show()
    qtbot.waitExposed(window)
    viewer = adapter.graph.viewer()
    viewer.centerOn(backdrop.view.sceneBoundingRect().center())
    before = copy.deepcopy(adapter.workflow.meta)
    a_before = list(adapter.workflow.node("a").ui["pos"])
    x, y = backdrop.view.xy_pos
    grab = viewer.mapFromScene(QtCore.QPointF(x + 60, y + 10))  # the title bar
    viewport = viewer.viewport()
    qtbot.mousePress(viewport, QtCore.Qt.MouseButton.LeftButton, pos=grab)
    for step in range(1, 6):
        qtbot.mouseMove(viewport, grab + QtCore.QPoint(20 * step, 10 * step))
    qtbot.mouseRelease(viewport, QtCore.Qt.MouseButton.LeftButton, pos=grab + QtCore.QPoint(100, 50))
    (entry,) = adapter.workflow.meta[GROUPS_KEY]
    moved = [entry["pos"][0] - before[GROUPS_KEY][0]["pos"][0], entry["pos"][1] - before[GROUPS_KEY][0]["pos"][1]]
    assert moved[0] > 50 and moved[1] > 20
    a_now = adapter.workflow.node("a").ui["pos"]
    assert [a_now[0] - a_before[0], a_now[1] - a_before[1]] == moved  # the nodes went with it
    adapter.undo()
    assert adapter.workflow.meta == before and adapter.workflow.node("a").ui["pos"] == a_before
