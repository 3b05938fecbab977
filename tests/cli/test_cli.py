"""The `nodegraph` command, driven through a subprocess as a user would: exit codes, --json, --set, --sweep."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def nodegraph(*args: str, home: Path, **kwargs) -> subprocess.CompletedProcess:
    """Run `python -m nodegraph ARGS` on the source tree with an isolated data folder."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NODEGRAPH_HOME": str(home)}
    return subprocess.run([sys.executable, "-m", "nodegraph", *args], capture_output=True, text=True, env=env,
                          timeout=120, **kwargs)


def write_workflow(path: Path, nodes: dict, links: list[tuple[str, str, str, str]]) -> Path:
    doc = {"format": "nodegraph-workflow", "version": 1, "nodes": nodes,
           "links": [{"from": [a, b], "to": [c, d]} for a, b, c, d in links], "meta": {}}
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


@pytest.fixture
def chain(tmp_path) -> Path:
    """number(3) -> scale(x2) -> write, plus a second literal branch: a sweep over scale.factor can reuse number."""
    return write_workflow(tmp_path / "chain.json", {
        "number": {"type": "Number", "inputs": {"value": 3}},
        "scale": {"type": "Scale", "inputs": {"factor": 2}},
        "write": {"type": "WriteText", "inputs": {"filename_prefix": "result"}},
    }, [("number", "VALUE", "scale", "value"), ("scale", "VALUE", "write", "value")])


def run_json(workflow: Path, tmp_path: Path, fake_pack: Path, *extra: str) -> tuple[subprocess.CompletedProcess, dict]:
    done = nodegraph("run", str(workflow), "--json", "--output-dir", str(tmp_path / "out"), "--node-pack",
                     str(fake_pack), *extra, home=tmp_path / "home")
    return done, (json.loads(done.stdout) if done.returncode in (0, 3, 5) else {})


def test_run_json_shape_and_output_file(chain, tmp_path, fake_pack):
    done, report = run_json(chain, tmp_path, fake_pack)
    assert done.returncode == 0, done.stderr
    assert list(report) == ["runs"] and len(report["runs"]) == 1
    run = report["runs"][0]
    assert {"overrides", "outputs", "executed", "cached", "seconds"} <= set(run)
    assert run["overrides"] == {} and run["cached"] == []
    assert run["executed"] == ["number", "scale", "write"]
    assert set(run["seconds"]) == {"number", "scale", "write"}
    assert all(isinstance(s, float) and s >= 0 for s in run["seconds"].values())
    [file] = run["outputs"]["write"]
    assert Path(file) == tmp_path / "out" / "result_00001.txt"
    assert Path(file).read_text() == "6\n"
    assert "running scale (Scale)" in done.stderr  # progress goes to stderr, JSON alone on stdout


def test_set_overrides_literals_with_their_declared_types(chain, tmp_path, fake_pack):
    done, report = run_json(chain, tmp_path, fake_pack, "--set", "number.value=7", "--set", "scale.factor=3")
    assert done.returncode == 0, done.stderr
    run = report["runs"][0]
    assert run["overrides"] == {"number.value": 7, "scale.factor": 3}
    assert Path(run["outputs"]["write"][0]).read_text() == "21\n"


def test_sweep_runs_once_per_value_and_reuses_the_cache(chain, tmp_path, fake_pack):
    done, report = run_json(chain, tmp_path, fake_pack, "--sweep", "scale.factor=1,2,5")
    assert done.returncode == 0, done.stderr
    runs = report["runs"]
    assert [r["overrides"] for r in runs] == [{"scale.factor": 1}, {"scale.factor": 2}, {"scale.factor": 5}]
    assert runs[0]["executed"] == ["number", "scale", "write"]
    for later in runs[1:]:
        assert later["cached"] == ["number"]
        assert later["executed"] == ["scale", "write"]
    contents = [Path(r["outputs"]["write"][0]).read_text() for r in runs]
    assert contents == ["3\n", "6\n", "15\n"]


def test_two_sweeps_multiply(chain, tmp_path, fake_pack):
    done, report = run_json(chain, tmp_path, fake_pack, "--sweep", "number.value=1,2", "--sweep",
                            "scale.factor=10,20")
    assert done.returncode == 0, done.stderr
    values = [Path(r["outputs"]["write"][0]).read_text().strip() for r in report["runs"]]
    assert values == ["10", "20", "20", "40"]


def test_invalid_workflow_exits_2_naming_node_and_port(tmp_path, fake_pack):
    workflow = write_workflow(tmp_path / "bad.json", {
        "number": {"type": "Number", "inputs": {"value": 5000}},
        "write": {"type": "WriteText", "inputs": {}},
    }, [("number", "VALUE", "write", "value")])
    done, _ = run_json(workflow, tmp_path, fake_pack)
    assert done.returncode == 2
    assert "node 'number', port 'value'" in done.stderr and "maximum 1000" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("option, message", [
    (["--set", "ghost.value=1"], "no node 'ghost'"),
    (["--set", "number.nope=1"], "has no input 'nope'"),
    (["--set", "number.value=abc"], "'abc' is not a valid INT"),
    (["--set", "number.value"], "expected NODE.INPUT=VALUE"),
    (["--sweep", "scale.factor=1,,2"], "comma-separated"),
    (["--device", "tpu"], "--device 'tpu'"),
])
def test_usage_errors_exit_2_with_one_line(chain, tmp_path, fake_pack, option, message):
    done, _ = run_json(chain, tmp_path, fake_pack, *option)
    assert done.returncode == 2
    assert message in done.stderr
    assert "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_out_of_memory_exits_5_with_one_clear_line(tmp_path, fake_pack):
    workflow = write_workflow(tmp_path / "oom.json", {
        "number": {"type": "Number", "inputs": {"value": 1}},
        "fail": {"type": "Fail", "inputs": {"how": "memory"}},
        "write": {"type": "WriteText", "inputs": {}},
    }, [("number", "VALUE", "fail", "value"), ("fail", "VALUE", "write", "value")])
    done, report = run_json(workflow, tmp_path, fake_pack)
    assert done.returncode == 5, done.stderr
    assert "node 'fail' failed: out of memory" in done.stderr and "Traceback" not in done.stderr
    assert report["runs"][0]["status"] == "failed"


def test_failing_node_exits_3_and_debug_shows_the_traceback(tmp_path, fake_pack):
    workflow = write_workflow(tmp_path / "fail.json", {
        "number": {"type": "Number", "inputs": {"value": 1}},
        "fail": {"type": "Fail", "inputs": {"how": "bug"}},
        "write": {"type": "WriteText", "inputs": {}},
    }, [("number", "VALUE", "fail", "value"), ("fail", "VALUE", "write", "value")])
    done, report = run_json(workflow, tmp_path, fake_pack)
    assert done.returncode == 3
    assert "node 'fail' failed: ZeroDivisionError: division by zero" in done.stderr
    assert "Traceback" not in done.stderr
    assert report["runs"][0]["status"] == "failed" and report["runs"][0]["executed"] == ["number"]
    debug, _ = run_json(workflow, tmp_path, fake_pack, "--debug")
    assert debug.returncode == 3 and "Traceback" in debug.stderr


def test_malformed_json_gives_line_and_column(tmp_path, fake_pack):
    path = tmp_path / "broken.json"
    path.write_text('{\n  "format": "nodegraph-workflow",\n  "version": 1,\n  "nodes": {,\n}\n')
    for command in ("run", "validate"):
        done = nodegraph(command, str(path), home=tmp_path / "home")
        assert done.returncode == 2
        assert "line 4, column 13" in done.stdout + done.stderr
        assert "Traceback" not in done.stderr


def test_missing_file_is_one_clear_line(tmp_path):
    done = nodegraph("run", str(tmp_path / "nope.json"), home=tmp_path / "home")
    assert done.returncode == 2 and "cannot read the file" in done.stderr and "Traceback" not in done.stderr


def test_validate_lists_every_problem_by_node_and_port(tmp_path, fake_pack):
    workflow = write_workflow(tmp_path / "broken.json", {
        "number": {"type": "Number", "inputs": {"value": "three"}},
        "choose": {"type": "Choose", "inputs": {"word": "delta"}},
        "mystery": {"type": "FromAMissingPack", "inputs": {"x": 1}},
        "write": {"type": "WriteText", "inputs": {}},
    }, [("choose", "WORD", "write", "value"), ("number", "VALUE", "write", "value")])
    done = nodegraph("validate", str(workflow), "--node-pack", str(fake_pack), home=tmp_path / "home")
    assert done.returncode == 2
    lines = done.stdout.strip().splitlines()
    expected = [
        "node 'number', port 'value': expected an integer, got a string",
        "node 'choose', port 'word': 'delta' is not one of: alpha, beta, gamma",
        "node 'mystery': unknown node type 'FromAMissingPack'",
        "node 'write', port 'value': more than one link feeds this input",
    ]
    for text in expected:
        assert any(text in line for line in lines), (text, lines)
    assert len(lines) == len(expected)


def test_validate_ok_exits_0(chain, tmp_path, fake_pack):
    done = nodegraph("validate", str(chain), "--node-pack", str(fake_pack), home=tmp_path / "home")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "ok (3 nodes, 2 links)" in done.stdout


def test_nodes_json_lists_inputs_outputs_defaults_and_choices(tmp_path, fake_pack):
    done = nodegraph("nodes", "--json", "--node-pack", str(fake_pack), home=tmp_path / "home")
    assert done.returncode == 0, done.stderr
    nodes = {node["type"]: node for node in json.loads(done.stdout)}
    assert {"PrimitiveInt", "Number", "Choose", "WriteText"} <= set(nodes)
    choose = nodes["Choose"]
    assert choose["pack"] == "fakepack" and choose["category"] == "test"
    assert choose["inputs"][0] == {"name": "word", "type": "CHOICE", "optional": False, "default": "alpha",
                                   "choices": ["alpha", "beta", "gamma"]}
    assert choose["outputs"] == [{"name": "WORD", "type": "STRING"}]
    assert nodes["Number"]["inputs"][0]["min"] == -1000 and nodes["WriteText"]["output_node"] is True
    text = nodegraph("nodes", "--node-pack", str(fake_pack), home=tmp_path / "home")
    assert "Choose (Choose, v1)" in text.stdout and "word: CHOICE = \"alpha\" one of alpha, beta, gamma" in text.stdout


def test_a_broken_node_pack_is_reported_not_fatal(tmp_path, fake_pack):
    pack = tmp_path / "broken_pack.py"
    pack.write_text("import does_not_exist\n")
    done = nodegraph("nodes", "--node-pack", str(pack), home=tmp_path / "home")
    assert done.returncode == 0
    assert "warning: node pack broken_pack: broken_pack.py failed to import: ModuleNotFoundError" in done.stderr


def test_quiet_prints_nothing_on_stderr(chain, tmp_path, fake_pack):
    done, _ = run_json(chain, tmp_path, fake_pack, "--quiet")
    assert done.returncode == 0 and done.stderr == ""


def test_plain_run_prints_written_files(chain, tmp_path, fake_pack):
    done = nodegraph("run", str(chain), "--quiet", "--output-dir", str(tmp_path / "o"), "--node-pack",
                     str(fake_pack), home=tmp_path / "home")
    assert done.returncode == 0
    assert done.stdout.strip() == f"write: {tmp_path / 'o' / 'result_00001.txt'}"


def test_default_output_dir_is_in_the_data_folder(chain, tmp_path, fake_pack):
    home = tmp_path / "home"
    done = nodegraph("run", str(chain), "--quiet", "--node-pack", str(fake_pack), home=home)
    assert done.returncode == 0, done.stderr
    assert (home / "output" / "result_00001.txt").read_text() == "6\n"


@pytest.mark.skipif(os.name == "nt", reason="SIGINT delivery differs on Windows")
def test_ctrl_c_cancels_the_run_with_exit_130(tmp_path, fake_pack):
    workflow = write_workflow(tmp_path / "slow.json", {
        "number": {"type": "Number", "inputs": {"value": 1}},
        "slow": {"type": "Slow", "inputs": {"steps": 10000, "delay": 0.01}},
        "write": {"type": "WriteText", "inputs": {}},
    }, [("number", "VALUE", "slow", "value"), ("slow", "VALUE", "write", "value")])
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NODEGRAPH_HOME": str(tmp_path / "home")}
    process = subprocess.Popen([sys.executable, "-m", "nodegraph", "run", str(workflow), "--node-pack",
                                str(fake_pack), "--output-dir", str(tmp_path / "out")],
                               stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
    try:
        for line in process.stderr:
            if "running slow" in line:
                break
        time.sleep(0.2)
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=30)
    finally:
        process.kill()
    assert process.returncode == 130
    assert "cancelled" in stderr and "Traceback" not in stderr
    assert not (tmp_path / "out").exists()


# --- the app's settings fill in what the options leave open ---------------------------------------------------------
DEVICE_PACK = (
    "from nodegraph.core import Input, Output, node\n"
    "@node(type='WriteDevice', display_name='Write Device', category='test', description='Write the run device.',\n"
    "      inputs=[], output_node=True)\n"
    "def write_device(ctx):\n"
    "    ctx.output_dir.mkdir(parents=True, exist_ok=True)\n"
    "    path = ctx.output_dir / 'device.txt'\n"
    "    path.write_text(ctx.device, encoding='utf-8')\n"
    "    ctx.add_file(path)\n"
    "    return {}\n"
    "@node(type='PickModel', display_name='Pick', category='test', description='Name a checkpoint.',\n"
    "      inputs=[Input.string('ckpt_name', '', file_kind='checkpoints')], outputs=[Output('NAME', 'STRING')])\n"
    "def pick(ctx, ckpt_name):\n"
    "    return {'NAME': ckpt_name}\n")


def write_settings(home: Path, **values) -> None:
    home.mkdir(parents=True, exist_ok=True)
    (home / "settings.json").write_text(json.dumps(values), encoding="utf-8")


def test_output_folder_and_device_come_from_the_settings_unless_given(tmp_path):
    pack = tmp_path / "device_pack.py"
    pack.write_text(DEVICE_PACK, encoding="utf-8")
    workflow = write_workflow(tmp_path / "device.json", {"dev": {"type": "WriteDevice", "inputs": {}}}, [])
    home = tmp_path / "home"
    write_settings(home, output_dir=str(tmp_path / "from-settings"), device="cpu")
    done = nodegraph("run", str(workflow), "--quiet", "--node-pack", str(pack), home=home)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "from-settings" / "device.txt").read_text(encoding="utf-8") == "cpu"
    assert not (home / "output").exists()
    done = nodegraph("run", str(workflow), "--quiet", "--node-pack", str(pack), "--device", "mps", "--output-dir",
                     str(tmp_path / "given"), home=home)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "given" / "device.txt").read_text(encoding="utf-8") == "mps"  # the options win


def test_a_model_folder_added_in_the_app_is_searched_after_models_dir(tmp_path, fake_pack):
    pack = tmp_path / "pick_pack.py"
    pack.write_text(DEVICE_PACK, encoding="utf-8")
    root = tmp_path / "webui"  # laid out as an AUTOMATIC1111 install
    (root / "models" / "Stable-diffusion").mkdir(parents=True)
    (root / "models" / "Stable-diffusion" / "mine.safetensors").write_bytes(b"not really a model")
    workflow = write_workflow(tmp_path / "pick.json", {
        "pick": {"type": "PickModel", "inputs": {"ckpt_name": "mine.safetensors"}},
        "write": {"type": "WriteText", "inputs": {}}}, [("pick", "NAME", "write", "value")])
    home = tmp_path / "home"
    packs = ("--node-pack", str(pack), "--node-pack", str(fake_pack))
    before = nodegraph("validate", str(workflow), *packs, home=home)
    assert before.returncode == 2 and "node 'pick', port 'ckpt_name': mine.safetensors: not found" in before.stdout
    write_settings(home, model_roots=[str(root)])
    assert nodegraph("validate", str(workflow), *packs, home=home).returncode == 0
    ran = nodegraph("run", str(workflow), "--quiet", "--output-dir", str(tmp_path / "out"), *packs, home=home)
    assert ran.returncode == 0, ran.stderr
    assert (tmp_path / "out" / "out_00001.txt").read_text(encoding="utf-8") == "mine.safetensors\n"
    given = tmp_path / "comfy" / "models" / "checkpoints"
    given.mkdir(parents=True)
    listed = nodegraph("models", "--json", "--models-dir", str(tmp_path / "comfy"), home=home)
    assert listed.returncode == 0, listed.stderr
    checkpoints = json.loads(listed.stdout)["checkpoints"]
    assert checkpoints["folders"] == [str(given), str(root / "models" / "Stable-diffusion")]
    assert [m["name"] for m in checkpoints["models"]] == ["mine.safetensors"]


def test_a_damaged_settings_file_is_a_warning_not_a_failure(chain, tmp_path, fake_pack):
    home = tmp_path / "home"
    home.mkdir()
    (home / "settings.json").write_text("{broken", encoding="utf-8")
    done = nodegraph("run", str(chain), "--quiet", "--node-pack", str(fake_pack), home=home)
    assert done.returncode == 0, done.stderr
    assert "nodegraph: warning: could not read" in done.stderr and "Traceback" not in done.stderr
    assert (home / "output" / "result_00001.txt").read_text() == "6\n"
