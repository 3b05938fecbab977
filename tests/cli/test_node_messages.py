"""What nodes tell the user (``ctx.report``) reaches the terminal: a line per message naming the node it is about,
"warning:" standing out, the progress bar intact on a terminal, and a ``messages`` list per run in ``--json``."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from nodegraph.cli.progress import MessageLog, ProgressPrinter, node_label
from nodegraph.core.graph import NodeInstance, Workflow
from nodegraph.engine.events import NodeMessage, NodeStarted, Progress
from tests.cli.test_cli import nodegraph, write_workflow

#: A test-only node that passes its value on and reports a message about itself or another node.
REPORT_PACK = (
    "from nodegraph.core import Input, Output, PortType, node\n"
    "@node(type='Report', display_name='Report', category='test', description='Pass a value on, saying something.',\n"
    "      inputs=[Input.link('value', PortType.INT), Input.string('about', ''), Input.string('text', 'hello'),\n"
    "              Input.choice('level', ['info', 'warning'])],\n"
    "      outputs=[Output('VALUE', PortType.INT)])\n"
    "def report(ctx, value, about, text, level):\n"
    "    ctx.report(text.replace('{value}', str(value)), level=level, node_id=about or None)\n"
    "    return {'VALUE': value}\n")


@pytest.fixture
def report_pack(tmp_path) -> Path:
    pack = tmp_path / "report_pack.py"
    pack.write_text(REPORT_PACK, encoding="utf-8")
    return pack


@pytest.fixture
def reporting(tmp_path) -> Path:
    """number -> warn (a warning about `number`) -> note (titled, an info about itself) -> scale -> write."""
    return write_workflow(tmp_path / "reporting.json", {
        "number": {"type": "Number", "inputs": {"value": 3}},
        "warn": {"type": "Report", "inputs": {"about": "number", "text": "{value} is\nodd", "level": "warning"}},
        "note": {"type": "Report", "title": "Checker", "inputs": {"text": "all {value} fine", "level": "info"}},
        "scale": {"type": "Scale", "inputs": {"factor": 2}},
        "write": {"type": "WriteText", "inputs": {"filename_prefix": "result"}},
    }, [("number", "VALUE", "warn", "value"), ("warn", "VALUE", "note", "value"), ("note", "VALUE", "scale", "value"),
        ("scale", "VALUE", "write", "value")])


def run(workflow: Path, tmp_path: Path, *packs: Path, extra: tuple[str, ...] = ()):
    options = [item for pack in packs for item in ("--node-pack", str(pack))]
    return nodegraph("run", str(workflow), "--output-dir", str(tmp_path / "out"), *options, *extra,
                     home=tmp_path / "home")


def test_messages_are_lines_naming_the_node_they_are_about(reporting, tmp_path, fake_pack, report_pack):
    done = run(reporting, tmp_path, fake_pack, report_pack)
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    assert "  warning: number (Number): 3 is odd" in lines  # about another node; its line breaks folded
    assert '  info: note ("Checker", Report): all 3 fine' in lines
    started = lines.index("running warn (Report)")  # printed while the reporting node runs
    assert lines[started + 1] == "  warning: number (Number): 3 is odd"
    assert lines[started + 2].startswith("done    warn in ")
    assert done.stdout.strip() == f"write: {tmp_path / 'out' / 'result_00001.txt'}"  # stdout: the files only


def test_json_lists_each_runs_messages_and_quiet_prints_none(reporting, tmp_path, fake_pack, report_pack):
    done = run(reporting, tmp_path, fake_pack, report_pack,
               extra=("--json", "--quiet", "--sweep", "number.value=3,5", "--set", "scale.factor=3"))
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    runs = json.loads(done.stdout)["runs"]
    assert [r["messages"] for r in runs] == [
        [{"node": "number", "level": "warning", "text": "3 is\nodd"},
         {"node": "note", "level": "info", "text": "all 3 fine"}],
        [{"node": "number", "level": "warning", "text": "5 is\nodd"},
         {"node": "note", "level": "info", "text": "all 5 fine"}],
    ]


def test_a_run_without_messages_has_an_empty_list(tmp_path, fake_pack):
    workflow = write_workflow(tmp_path / "plain.json", {
        "number": {"type": "Number", "inputs": {"value": 1}},
        "write": {"type": "WriteText", "inputs": {}},
    }, [("number", "VALUE", "write", "value")])
    done = run(workflow, tmp_path, fake_pack, extra=("--json",))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["runs"][0]["messages"] == []
    assert "info:" not in done.stderr and "warning:" not in done.stderr


def test_messages_of_a_failed_run_are_kept(tmp_path, fake_pack, report_pack):
    workflow = write_workflow(tmp_path / "fail.json", {
        "number": {"type": "Number", "inputs": {"value": 1}},
        "warn": {"type": "Report", "inputs": {"text": "before the failure", "level": "warning"}},
        "fail": {"type": "Fail", "inputs": {"how": "user"}},
        "write": {"type": "WriteText", "inputs": {}},
    }, [("number", "VALUE", "warn", "value"), ("warn", "VALUE", "fail", "value"), ("fail", "VALUE", "write", "value")])
    done = run(workflow, tmp_path, fake_pack, report_pack, extra=("--json",))
    assert done.returncode == 3
    [report] = json.loads(done.stdout)["runs"]
    assert report["status"] == "failed"
    assert report["messages"] == [{"node": "warn", "level": "warning", "text": "before the failure"}]
    assert "  warning: warn (Report): before the failure" in done.stderr.splitlines()


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_on_a_terminal_a_message_ends_the_bar_line_and_the_bar_resumes_below():
    stream = _Terminal()
    printer = ProgressPrinter(stream, width=10)
    printer(NodeStarted("r", "sampler", "KSampler"))
    printer(Progress("r", "sampler", 1, 4))
    printer(NodeMessage("r", "lora", "warning", "style.safetensors: 96/192 layers matched"))
    printer(Progress("r", "sampler", 2, 4))
    rows = stream.getvalue().split("\n")
    assert rows[0] == "running sampler (KSampler)"
    assert rows[1].startswith("\r  [##........] 1/4")
    assert rows[2] == "  warning: lora: style.safetensors: 96/192 layers matched"  # no type known: the id alone
    assert rows[3].startswith("\r  [#####.....] 2/4")


def test_without_a_terminal_every_line_is_whole():
    stream = io.StringIO()
    workflow = Workflow([NodeInstance("lora", "LoraLoader", title="Style"), NodeInstance("sampler", "KSampler")])
    printer = ProgressPrinter(stream, width=10, workflow=workflow)
    printer(NodeStarted("r", "sampler", "KSampler"))
    for step in range(1, 5):
        printer(Progress("r", "sampler", step, 4))
        if step == 2:
            printer(NodeMessage("r", "lora", "info", "style.safetensors: 192/192 layers matched"))
    assert "\r" not in stream.getvalue()
    assert stream.getvalue().splitlines()[3] == '  info: lora ("Style", LoraLoader): style.safetensors: 192/192 ' \
                                                "layers matched"


def test_node_label_and_message_log():
    workflow = Workflow([NodeInstance("lora", "LoraLoader")])
    assert node_label("lora", workflow) == "lora (LoraLoader)"
    assert node_label("ghost", workflow, "Seen") == "ghost (Seen)" and node_label("ghost") == "ghost"
    log = MessageLog()
    log(NodeMessage("a", "lora", "warning", "w"))
    log(NodeStarted("a", "x", "X"))
    assert log.messages("a") == [{"node": "lora", "level": "warning", "text": "w"}] and log.messages("b") == []
