"""`nodegraph validate`, `nodegraph models` and `nodegraph inspect` on hostile workflows and damaged model folders:
exit 2 with problems naming node and port (or a one-line error), never 1 with "internal error"."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from nodegraph.cli import main


@pytest.fixture
def home(tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("NODEGRAPH_HOME", str(home))
    return home


@pytest.fixture
def models(tmp_path):
    root = tmp_path / "install"
    for kind in ("checkpoints", "loras", "embeddings"):
        (root / "models" / kind).mkdir(parents=True)
    return root


def _workflow(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "w.json"
    path.write_text(text, encoding="utf-8")
    return path


def _lora_chain(ckpt_name, lora_name, strength) -> str:
    nodes = {"ck": {"type": "LoadCheckpoint", "inputs": {"ckpt_name": ckpt_name}},
             "lo": {"type": "LoadLoRA", "inputs": {"lora_name": lora_name, "strength_model": strength}}}
    links = [{"from": ["ck", "MODEL"], "to": ["lo", "model"]}, {"from": ["ck", "CLIP"], "to": ["lo", "clip"]}]
    return json.dumps({"format": "nodegraph-workflow", "version": 1, "nodes": nodes, "links": links})


HOSTILE = {
    "int name": _lora_chain(5, 5, 1.0),
    "list names": _lora_chain(["a"], {"b": 1}, 1.0),
    "long names": _lora_chain("a" * 300 + ".safetensors", "é" * 300, 1.0),
    "long absolute name": _lora_chain("/" + "a" * 300, "/tmp/" + "b" * 3000, 1.0),
    "unknown home": _lora_chain("~no_such_user_xyz/a.safetensors", "~no_such_user_xyz/b", 1.0),
    "400 digits": _lora_chain("a.safetensors", "b.safetensors", 0).replace('"strength_model": 0', '"strength_model": '
                                                                            + "9" * 400),
    "deep": _lora_chain("a", "b", 1.0).replace("1.0", "[" * 10_000 + "]" * 10_000),
    "huge value": _lora_chain("a", "x" * 10_000_000, 1.0),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_validate_a_hostile_workflow_exits_2(tmp_path, home, models, capsys, name):
    workflow = _workflow(tmp_path, HOSTILE[name])
    assert main(["validate", str(workflow), "--models-dir", str(models)]) == 2
    out, err = capsys.readouterr()
    assert "internal error" not in out + err
    assert max(len(line) for line in (out + err).splitlines()) < 600


def test_models_lists_past_dangling_symlinks_and_loops(home, models, capsys):
    loras = models / "models" / "loras"
    (loras / "style.safetensors").write_bytes(b"not really a model")
    os.symlink(loras / "gone.safetensors", loras / "dangling.safetensors")
    os.symlink("loop.safetensors", loras / "loop.safetensors")
    assert main(["models", "--models-dir", str(models), "--json"]) == 0
    out, err = capsys.readouterr()
    assert "internal error" not in err
    assert "dangling" not in out and "loop.safetensors" not in out and "style.safetensors" in out


@pytest.mark.parametrize("config", ["[]", '{"cross_attention_dim": [768, 1024]}', "\"x\""])
def test_inspect_a_diffusers_folder_with_a_bad_config(tmp_path, home, capsys, config):
    folder = tmp_path / "pipe"
    (folder / "unet").mkdir(parents=True)
    (folder / "model_index.json").write_text("{}")
    (folder / "unet" / "config.json").write_text(config)
    code = main(["inspect", str(folder)])
    out, err = capsys.readouterr()
    assert "internal error" not in err
    assert code in (0, 2)
