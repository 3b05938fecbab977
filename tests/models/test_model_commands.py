"""`nodegraph models` and `nodegraph inspect` through a subprocess, on the tiny real-format files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from nodegraph.models.synthetic import MALICIOUS_MARKER

ROOT = Path(__file__).resolve().parents[2]


def nodegraph(*args, home):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NODEGRAPH_HOME": str(home)}
    return subprocess.run([sys.executable, "-m", "nodegraph", *args], capture_output=True, text=True, env=env,
                          timeout=300)


def test_inspect_json(model_files, tmp_path):
    done = nodegraph("inspect", str(model_files["sdxl-base"]), "--json", home=tmp_path)
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert {k: data[k] for k in ("kind", "variant", "family", "prediction")} == {
        "kind": "checkpoint", "variant": None, "family": "sdxl-base", "prediction": "epsilon"}
    assert data["tensors"] > 100 and data["bytes"] == model_files["sdxl-base"].stat().st_size
    assert "float16" in data["dtypes"]


def test_inspect_text_and_prediction_override(model_files, tmp_path):
    done = nodegraph("inspect", str(model_files["sd2-v"]), "--prediction", "epsilon", home=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "family: sd2\n" in done.stdout and "prediction_source: override" in done.stdout


def test_inspect_refuses_a_malicious_pickle_with_exit_2(model_files, tmp_path):
    done = nodegraph("inspect", str(model_files["malicious"]), home=tmp_path)
    assert done.returncode == 2
    assert "refused" in done.stderr and "Traceback" not in done.stderr
    assert not (model_files.folder / MALICIOUS_MARKER).exists()


def test_models_lists_by_kind_with_family(model_files, tmp_path):
    for key in ("sd1", "malicious", "lora-sd1-kohya", "vae", "emb-a1111-pt", "hypernetwork"):
        model_files[key]
    done = nodegraph("models", "--models-dir", str(model_files.folder), "--json", home=tmp_path)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert set(report) == {"checkpoints", "loras", "vae", "embeddings", "hypernetworks", "upscale_models", "controlnet"}
    checkpoints = {m["name"]: m for m in report["checkpoints"]["models"]}
    assert checkpoints["tiny-sd1.safetensors"]["family"] == "sd1"
    assert "refused" in checkpoints["tiny-malicious.ckpt"]["error"]
    assert not (model_files.folder / MALICIOUS_MARKER).exists()
    lora = {m["name"]: m for m in report["loras"]["models"]}["tiny-lora-sd1.safetensors"]
    assert (lora["kind"], lora["family"]) == ("lora", "sd1")
    assert report["hypernetworks"]["models"][0]["family"] == "sd1"
    text = nodegraph("models", "--models-dir", str(model_files.folder), home=tmp_path)
    assert "tiny-sd1.safetensors  [sd1]" in text.stdout


def test_validate_checks_model_files_against_models_dir(model_files, tmp_path, fake_pack):
    workflow = tmp_path / "wf.json"
    workflow.write_text(json.dumps({"format": "nodegraph-workflow", "version": 1, "nodes": {
        "pick": {"type": "PickModel", "inputs": {"ckpt_name": "missing.safetensors"}},
        "out": {"type": "WriteText"}}, "links": [{"from": ["pick", "NAME"], "to": ["out", "value"]}]}))
    pack = tmp_path / "pick_pack.py"
    pack.write_text(
        "from nodegraph.core import Input, Output, PortType, node\n"
        "@node(type='PickModel', display_name='Pick', category='test', description='d',\n"
        "      inputs=[Input.string('ckpt_name', '', file_kind='checkpoints')], outputs=[Output('NAME', 'STRING')])\n"
        "def pick(ctx, ckpt_name):\n    return {'NAME': ckpt_name}\n")
    args = ("validate", str(workflow), "--node-pack", str(pack), "--node-pack", str(fake_pack), "--models-dir",
            str(model_files.folder))
    done = nodegraph(*args, home=tmp_path)
    assert done.returncode == 2 and "node 'pick', port 'ckpt_name': missing.safetensors: not found" in done.stdout
    model_files["sd1"]
    doc = json.loads(workflow.read_text())
    doc["nodes"]["pick"]["inputs"]["ckpt_name"] = "tiny-sd1.safetensors"
    workflow.write_text(json.dumps(doc))
    assert nodegraph(*args, home=tmp_path).returncode == 0
