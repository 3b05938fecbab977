"""Atomic saves: permissions and symlinks are kept, the folder is fsynced, killed saves leave no temporary files."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nodegraph.core import workflow_io
from nodegraph.core.graph import Workflow
from nodegraph.core.workflow_io import remove_stale_temp_files, save, write_text_atomic
from nodegraph.settings import AppSettings

ROOT = Path(__file__).resolve().parents[2]
posix_only = pytest.mark.skipif(os.name != "posix", reason="POSIX permissions, symlinks and signals")


def temp_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def make_old(path: Path, seconds: float = 3600) -> None:
    past = time.time() - seconds
    os.utime(path, (past, past))


@posix_only
def test_save_keeps_the_permission_bits_of_the_file_it_replaces(tmp_path):
    target = tmp_path / "flow.json"
    target.write_text("{}", encoding="utf-8")
    for mode in (0o644, 0o640, 0o600):
        target.chmod(mode)
        save(Workflow(), target)
        assert stat.S_IMODE(target.stat().st_mode) == mode
    assert workflow_io.loads(target.read_text(encoding="utf-8")) is not None


@posix_only
def test_a_new_file_gets_the_default_permissions_of_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        write_text_atomic(tmp_path / "new.json", "{}\n")
        os.umask(0o027)
        write_text_atomic(tmp_path / "private.json", "{}\n")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "new.json").stat().st_mode) == 0o644  # not mkstemp's 0600
    assert stat.S_IMODE((tmp_path / "private.json").stat().st_mode) == 0o640


@posix_only
def test_saving_through_a_symlink_updates_its_target_and_keeps_the_link(tmp_path):
    real_dir = tmp_path / "real"
    real_dir.mkdir()
    target = real_dir / "flow.json"
    target.write_text("old\n", encoding="utf-8")
    target.chmod(0o644)
    link_dir = tmp_path / "links"
    link_dir.mkdir()
    link = link_dir / "flow.json"
    link.symlink_to(target)
    write_text_atomic(link, "new\n")
    assert link.is_symlink() and Path(os.readlink(link)) == target
    assert target.read_text(encoding="utf-8") == "new\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert temp_files(link_dir) == [] and temp_files(real_dir) == []


@posix_only
def test_the_folder_is_fsynced_after_the_rename(tmp_path, monkeypatch):
    synced = []
    real_fsync, real_replace = os.fsync, os.replace
    renamed = []

    def spy_fsync(fd):
        synced.append((stat.S_ISDIR(os.fstat(fd).st_mode), bool(renamed)))
        real_fsync(fd)

    def spy_replace(src, dst):
        real_replace(src, dst)
        renamed.append(dst)

    monkeypatch.setattr(os, "fsync", spy_fsync)
    monkeypatch.setattr(os, "replace", spy_replace)
    write_text_atomic(tmp_path / "flow.json", "{}\n")
    assert (False, False) in synced  # the file's data before the rename
    assert (True, True) in synced  # the folder's entry after it


def test_stale_temp_files_are_removed_but_fresh_and_foreign_ones_are_kept(tmp_path):
    stale = tmp_path / ".flow.json.ab12cd34.tmp"
    fresh = tmp_path / ".flow.json.ef56ab78.tmp"
    foreign = tmp_path / "notes.tmp"  # not our pattern
    for path in (stale, fresh, foreign):
        path.write_text("partial", encoding="utf-8")
    make_old(stale)
    make_old(foreign)
    removed = remove_stale_temp_files(tmp_path, older_than_s=60)
    assert removed == [stale]
    assert not stale.exists() and fresh.exists() and foreign.exists()
    assert remove_stale_temp_files(tmp_path / "missing") == []


def test_saving_a_workflow_removes_its_own_stale_temp_files_only(tmp_path):
    mine = tmp_path / ".flow.json.ab12cd34.tmp"
    other = tmp_path / ".other.json.ab12cd34.tmp"
    for path in (mine, other):
        path.write_text("partial", encoding="utf-8")
        make_old(path)
    save(Workflow(), tmp_path / "flow.json")
    assert not mine.exists() and other.exists()


def test_loading_the_settings_removes_stale_temp_files(tmp_path):
    AppSettings().save(tmp_path)
    leftover = tmp_path / ".settings.json.x1y2z3w4.tmp"
    leftover.write_text("{", encoding="utf-8")
    make_old(leftover)
    AppSettings.load(tmp_path)
    assert temp_files(tmp_path) == []


KILLED_SAVER = """
import os, sys
from pathlib import Path
from nodegraph.core import workflow_io

real_fsync = os.fsync
def stop_mid_save(fd):
    real_fsync(fd)
    sys.stdout.write("writing\\n")
    sys.stdout.flush()
    sys.stdin.read()  # wait here, the temporary file written, until killed

os.fsync = stop_mid_save
workflow_io.write_text_atomic(Path(sys.argv[1]), "new\\n" * 1000)
"""


@posix_only
def test_saves_killed_mid_write_leave_no_temp_files_after_the_cleanup(tmp_path):
    target = tmp_path / "settings.json"
    target.write_text("old\n", encoding="utf-8")
    for _ in range(3):
        child = subprocess.Popen([sys.executable, "-c", KILLED_SAVER, str(target)], cwd=ROOT, text=True,
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        try:
            assert child.stdout.readline() == "writing\n"
            os.kill(child.pid, signal.SIGKILL)
        finally:
            child.wait(timeout=10)
            child.stdin.close()
            child.stdout.close()
    assert target.read_text(encoding="utf-8") == "old\n"  # the kill never harmed the file
    leftovers = [tmp_path / name for name in temp_files(tmp_path)]
    assert len(leftovers) == 3
    assert remove_stale_temp_files(tmp_path, older_than_s=60) == []  # fresh: maybe a save still running
    for path in leftovers:
        make_old(path)
    assert sorted(remove_stale_temp_files(tmp_path, older_than_s=60)) == sorted(leftovers)
    assert temp_files(tmp_path) == []
