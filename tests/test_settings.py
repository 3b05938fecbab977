"""The app settings file: round trip, defaults, damaged files, recent files."""

from __future__ import annotations

import json
from pathlib import Path

from nodegraph.settings import MAX_RECENT_FILES, SETTINGS_FILE, AppSettings, config_dir


def test_settings_live_in_nodegraph_home_and_default_when_there_is_no_file(nodegraph_home):
    assert config_dir() == nodegraph_home
    settings = AppSettings.load()
    assert settings == AppSettings() and settings.problem is None
    assert settings.output_folder() == nodegraph_home / "output"
    assert not (nodegraph_home / SETTINGS_FILE).exists()  # loading never writes


def test_save_then_load_round_trips_every_field(nodegraph_home, tmp_path):
    settings = AppSettings(model_roots=[str(tmp_path / "webui"), "~/ComfyUI"], output_dir=str(tmp_path / "out"),
                           device="cuda:1", precision="bf16", previews=False, autosave_seconds=15,
                           recent_files=[str(tmp_path / "a.json")], first_start_done=True)
    path = settings.save()
    assert path == nodegraph_home / SETTINGS_FILE
    assert AppSettings.load() == settings
    assert json.loads(path.read_text(encoding="utf-8"))["device"] == "cuda:1"
    assert [p.name for p in nodegraph_home.iterdir()] == [SETTINGS_FILE]  # no temporary file left behind
    assert settings.model_root_paths() == [tmp_path / "webui", Path("~/ComfyUI").expanduser()]
    assert settings.output_folder() == tmp_path / "out"


def test_a_damaged_file_gives_defaults_and_says_why(nodegraph_home):
    nodegraph_home.mkdir()
    (nodegraph_home / SETTINGS_FILE).write_text("{not json", encoding="utf-8")
    settings = AppSettings.load()
    assert settings == AppSettings() and "could not read" in settings.problem
    (nodegraph_home / SETTINGS_FILE).write_text("[1, 2]", encoding="utf-8")
    assert "not a JSON object" in AppSettings.load().problem


def test_invalid_values_fall_back_one_by_one(nodegraph_home):
    nodegraph_home.mkdir()
    (nodegraph_home / SETTINGS_FILE).write_text(json.dumps({
        "device": "tpu", "precision": "fp8", "autosave_seconds": 5, "previews": "yes", "model_roots": ["/models"],
        "output_dir": "", "unknown_key": 1}), encoding="utf-8")
    settings = AppSettings.load()
    assert settings.model_roots == ["/models"]  # the valid value is kept
    assert (settings.device, settings.precision, settings.autosave_seconds, settings.previews,
            settings.output_dir) == ("auto", "auto", 60, True, None)
    for name in ("device", "precision", "autosave_seconds", "previews", "output_dir"):
        assert name in settings.problem


def test_recent_files_newest_first_once_each_and_bounded(tmp_path):
    settings = AppSettings()
    for index in range(MAX_RECENT_FILES + 3):
        settings.add_recent(tmp_path / f"w{index}.json")
    settings.add_recent(tmp_path / "w5.json")
    assert len(settings.recent_files) == MAX_RECENT_FILES
    assert settings.recent_files[:3] == [str(tmp_path / name) for name in ("w5.json", "w12.json", "w11.json")]
    assert settings.recent_files.count(str(tmp_path / "w5.json")) == 1
    assert str(tmp_path / "w0.json") not in settings.recent_files  # the oldest fell off
