"""The desktop integration the Linux installers carry: the workflow file type recognises files the app saves (and
no other JSON), and the menu entry opens them. The installers themselves are built and exercised by
packaging/build.sh and packaging/smoke.sh (run by .ci/run after this suite)."""

from __future__ import annotations

import configparser
import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from nodegraph.core.graph import Workflow
from nodegraph.core.workflow_io import save

ROOT = Path(__file__).resolve().parents[1]
LINUX = ROOT / "packaging" / "linux"
MIME_NS = {"m": "http://www.freedesktop.org/standards/shared-mime-info"}
WORKFLOW_TYPE = "application/x-nodegraph-workflow"


def _saved_workflow(path: Path) -> Path:
    workflow = Workflow()
    workflow.add_node("PrimitiveInt", "n", inputs={"value": 3})
    save(workflow, path)
    return path


def test_the_mime_magic_matches_what_the_app_saves(tmp_path):
    mime = ET.parse(LINUX / "nodegraph-mime.xml").getroot().find("m:mime-type", MIME_NS)
    assert mime.get("type") == WORKFLOW_TYPE
    matches = mime.findall("m:magic/m:match", MIME_NS)
    head = _saved_workflow(tmp_path / "wf.json").read_bytes()
    found = [m for m in matches if 0 <= head.find(m.get("value").encode()) <= int(m.get("offset").split(":")[1])]
    assert found, f"no magic of {[m.get('value') for m in matches]} in {head[:80]!r}"
    assert int(mime.find("m:magic", MIME_NS).get("priority")) >= 80  # trusted over the *.json glob (GLib's rule)
    assert int(mime.find("m:glob", MIME_NS).get("weight")) < 50  # below application/json's: other JSON stays JSON


def test_the_desktop_entry_opens_workflows():
    entry = configparser.ConfigParser(interpolation=None)
    entry.optionxform = str
    entry.read(LINUX / "nodegraph.desktop", encoding="utf-8")
    desktop = entry["Desktop Entry"]
    assert desktop["Exec"] == "nodegraph %f" and desktop["Icon"] == "nodegraph"
    assert desktop["MimeType"].rstrip(";").split(";") == [WORKFLOW_TYPE]  # offered for workflows, not for all JSON
    assert (ROOT / "resources" / "icons" / "nodegraph.svg").is_file()
    if shutil.which("desktop-file-validate"):
        done = subprocess.run(["desktop-file-validate", str(LINUX / "nodegraph.desktop")], capture_output=True,
                              text=True)
        assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.skipif(shutil.which("update-mime-database") is None, reason="shared-mime-info is not installed")
def test_a_desktop_reads_saved_workflows_as_the_workflow_type_and_other_json_as_json(tmp_path):
    """Qt's MIME database (as KDE and Qt file dialogs use it) over the installed type, from a private data folder."""
    packages = tmp_path / "share" / "mime" / "packages"
    packages.mkdir(parents=True)
    shutil.copy(LINUX / "nodegraph-mime.xml", packages / "nodegraph.xml")
    subprocess.run(["update-mime-database", str(tmp_path / "share" / "mime")], check=True, capture_output=True)
    workflow = _saved_workflow(tmp_path / "mine.json")
    other = tmp_path / "other.json"
    other.write_text('{"format": "something else", "nodes": {}}\n')
    code = ("import sys\nfrom PySide6.QtCore import QMimeDatabase\ndb = QMimeDatabase()\n"
            "print(' '.join(db.mimeTypeForFile(f).name() for f in sys.argv[1:]))")
    env = {**os.environ, "XDG_DATA_HOME": str(tmp_path / "share"),
           "XDG_DATA_DIRS": os.environ.get("XDG_DATA_DIRS", "/usr/local/share:/usr/share")}
    done = subprocess.run([sys.executable, "-c", code, str(workflow), str(other)], env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [WORKFLOW_TYPE, "application/json"]


def _build_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("packaging_build", ROOT / "packaging" / "build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_installers_ship_the_torch_the_suite_runs_on_and_pin_its_variant():
    build = _build_module()
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert f"pip install torch=={build.TORCH_VERSION} " in readme  # the quick start's torch is the installers' torch
    assert build.torch_requirement("cpu") == f"torch=={build.TORCH_VERSION}+cpu"  # never a CUDA wheel by accident
    assert build.torch_requirement("cu128") == f"torch=={build.TORCH_VERSION}+cu128"
    assert build.torch_requirement("mps") == f"torch=={build.TORCH_VERSION}"
    assert all(build.VARIANT.fullmatch(v) for v in ("cpu", "cu126", "cu128", "rocm6.4", "mps"))
    assert not any(build.VARIANT.fullmatch(v) for v in ("cuda", "gpu", "cu12", "cpu;rm"))
    assert build.version() == __import__("nodegraph").__version__
