"""Every refusal of a pickled model file says what the file is and why, in plain words, never torch's text."""

from __future__ import annotations

import os
import pickle

import pytest
import torch

from nodegraph.models.errors import CorruptModelError, ModelError, UnsafeModelError
from nodegraph.models.safe_load import load_pickle

TORCH_TEXT = ("weights_only", "Unsupported operand", "WeightsUnpickler", "legacy .tar", "miniz", "arbitrary code")
STATE = {"a": torch.ones(3), "b": torch.zeros(2, 2)}


class _Payload:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _refusal(path, kind=ModelError) -> str:
    with pytest.raises(kind) as caught:
        load_pickle(path)
    message = str(caught.value)
    assert not any(text in message for text in TORCH_TEXT), message
    return message


@pytest.mark.parametrize(("content", "words"), [(b"\0" * 4096, "zero-filled"), (b"", "empty"),
                                                (b"version https://git-lfs.github.com/spec/v1\n", "Git LFS pointer"),
                                                (b"<!DOCTYPE html><html>404</html>", "text file")])
def test_not_a_checkpoint_is_said_plainly(tmp_path, content, words):
    path = tmp_path / "model.ckpt"
    path.write_bytes(content)
    message = _refusal(path, CorruptModelError)
    assert "not a PyTorch checkpoint" in message and words in message


@pytest.mark.parametrize("zip_format", [True, False])
def test_truncated_checkpoint_is_said_plainly(tmp_path, zip_format):
    path = tmp_path / "model.ckpt"
    torch.save({"state_dict": {"w": torch.ones(4096)}}, path, _use_new_zipfile_serialization=zip_format)
    path.write_bytes(path.read_bytes()[:2000])
    assert "truncated" in _refusal(path, CorruptModelError)


def test_random_bytes_are_not_a_checkpoint(tmp_path):
    path = tmp_path / "model.ckpt"
    path.write_bytes(b"\x80\x07" + os.urandom(4094))  # starts like a pickle of an impossible protocol
    assert "not a PyTorch checkpoint" in _refusal(path, CorruptModelError)
    path.write_bytes(b"GIF89a" + os.urandom(4090))
    assert "neither a zip archive nor a pickle" in _refusal(path, CorruptModelError)


@pytest.mark.parametrize("zip_format", [True, False])
@pytest.mark.parametrize("protocol", [2, 3])
def test_default_protocols_load(tmp_path, protocol, zip_format):
    path = tmp_path / "model.pt"
    torch.save(STATE, path, pickle_protocol=protocol, _use_new_zipfile_serialization=zip_format)
    assert torch.equal(load_pickle(path)["a"], torch.ones(3))


@pytest.mark.parametrize("zip_format", [True, False])
@pytest.mark.parametrize("protocol", [4, 5])
@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_protocol_4_and_5_are_refused_in_plain_words(tmp_path, protocol, zip_format):
    """torch's weights-only unpickler (the only one used) reads no protocol-4/5 opcode (FRAME, MEMOIZE, …)."""
    path = tmp_path / "model.pt"
    torch.save(STATE, path, pickle_protocol=protocol, _use_new_zipfile_serialization=zip_format)
    with pytest.raises(pickle.UnpicklingError):  # what torch itself does, so the refusal is not ours to lift
        torch.load(path, weights_only=True)
    message = _refusal(path, UnsafeModelError)
    assert f"protocol {protocol}" in message and "feature model files never use" in message
    assert "could run" not in message  # torch's own tensor globals are not reported as code


@pytest.mark.parametrize("zip_format", [True, False])
@pytest.mark.parametrize("protocol", [4, 5])
def test_malicious_protocol_4_and_5_name_the_code_and_never_run(tmp_path, protocol, zip_format):
    marker = tmp_path / "PWNED"
    path = tmp_path / "evil.ckpt"
    torch.save({"w": torch.ones(2), "x": _Payload(marker)}, path, pickle_protocol=protocol,
               _use_new_zipfile_serialization=zip_format)
    message = _refusal(path, UnsafeModelError)
    assert "posix.system" in message or "nt.system" in message
    assert not marker.exists()


def test_plain_python_pickle_of_protocol_5_is_refused(tmp_path):
    marker = tmp_path / "PWNED"
    path = tmp_path / "evil.pt"
    path.write_bytes(pickle.dumps({"x": _Payload(marker)}, protocol=5))
    assert "system" in _refusal(path, UnsafeModelError)
    assert not marker.exists()
