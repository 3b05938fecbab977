"""Shared fixtures: no network for the whole session, an isolated data folder per test, the fake node pack, and tiny
float32 checkpoints built once per session."""

from __future__ import annotations

import shutil
import socket
from pathlib import Path

import pytest

from nodegraph.core.registry import NodeRegistry
from nodegraph.packs import create_registry

TESTS = Path(__file__).resolve().parent
FAKE_PACK = TESTS / "packs" / "fakepack"


class NetworkBlocked(RuntimeError):
    """Raised by any attempt to reach the network during the tests (a hidden hub download, say)."""


@pytest.fixture(autouse=True, scope="session")
def _block_network():
    """Fail loudly on any socket connection other than a local (AF_UNIX) one."""

    def guarded(original):
        def connect(sock, address, *args, **kwargs):
            if sock.family != getattr(socket, "AF_UNIX", None):
                raise NetworkBlocked(f"network access attempted during tests: {address!r}")
            return original(sock, address, *args, **kwargs)

        return connect

    def no_lookup(*args, **kwargs):
        raise NetworkBlocked(f"DNS lookup attempted during tests: {args[:2]!r}")

    patch = pytest.MonkeyPatch()
    patch.setattr(socket.socket, "connect", guarded(socket.socket.connect))
    patch.setattr(socket.socket, "connect_ex", guarded(socket.socket.connect_ex))
    patch.setattr(socket, "getaddrinfo", no_lookup)
    yield
    patch.undo()


@pytest.fixture(autouse=True)
def nodegraph_home(tmp_path, monkeypatch) -> Path:
    """Each test gets its own empty data folder, so no user settings or packs leak in."""
    home = tmp_path / "nodegraph-home"
    monkeypatch.setenv("NODEGRAPH_HOME", str(home))
    return home


@pytest.fixture
def fake_pack() -> Path:
    """The folder of the fake node pack used by engine and CLI tests."""
    return FAKE_PACK


@pytest.fixture
def registry() -> NodeRegistry:
    """The built-in nodes plus the fake pack, checked: a test fails if the pack does not load cleanly."""
    reg = create_registry([FAKE_PACK], user_packs=False)
    assert not reg.problems, reg.problems
    return reg


class TinyCheckpoints:
    """Tiny float32 single-file checkpoints, by (family, seed): each is written once per session by
    ``synthetic.write_checkpoint`` and copied byte for byte wherever a test module wants its own file. Building the
    models takes seconds (SDXL's text encoders keep the real widths and vocabulary); copying the file does not."""

    def __init__(self, folder: Path):
        self.folder = folder
        self._written: dict[tuple[str, int], Path] = {}

    def write(self, path: Path, family: str, seed: int = 0) -> Path:
        """What ``write_checkpoint(path, family, seed, dtype=torch.float32)`` writes: the same bytes at `path`."""
        path = Path(path)
        if path.suffix != ".safetensors":
            raise ValueError(f"{path.name}: only .safetensors checkpoints are shared")
        key = (family, seed)
        if key not in self._written:
            import torch

            from nodegraph.models.offline import ensure_offline

            ensure_offline()
            from nodegraph.models.synthetic import write_checkpoint

            self._written[key] = write_checkpoint(self.folder / f"{family}-seed{seed}.safetensors", family, seed,
                                                  dtype=torch.float32)
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self._written[key], path)
        return path


@pytest.fixture(scope="session")
def tiny_checkpoints(tmp_path_factory):
    """:class:`TinyCheckpoints`; the session's originals are removed at its end (the copies stay where written)."""
    folder = tmp_path_factory.mktemp("tiny-checkpoints")
    yield TinyCheckpoints(folder)
    shutil.rmtree(folder, ignore_errors=True)
