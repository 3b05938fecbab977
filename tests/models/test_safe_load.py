"""Safe loading: safetensors headers checked before use, pickles only through the weights-only allowlist."""

from __future__ import annotations

import argparse
import json
import os
import pickle
import struct

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from nodegraph.models.errors import CorruptModelError, UnsafeModelError
from nodegraph.models.safe_load import load_pickle, load_state_dict, read_safetensors_header


class _Payload:
    """Pickles to a call that would create a marker file if it were ever unpickled unsafely."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("zip_format", [True, False])
def test_malicious_pickle_is_refused_and_never_runs(tmp_path, zip_format):
    marker = tmp_path / "PWNED"
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {"w": torch.ones(2)}, "x": _Payload(marker)}, path,
               _use_new_zipfile_serialization=zip_format)
    with pytest.raises(UnsafeModelError, match="posix.system|nt.system"):
        load_pickle(path)
    assert not marker.exists()


def test_plain_pickle_is_refused(tmp_path):
    marker = tmp_path / "PWNED"
    path = tmp_path / "evil.pt"
    path.write_bytes(pickle.dumps({"x": _Payload(marker)}))
    with pytest.raises(UnsafeModelError):
        load_pickle(path)
    assert not marker.exists()


def test_real_checkpoint_globals_are_allowed(tmp_path):
    path = tmp_path / "ok.ckpt"
    params = torch.nn.ParameterDict({"a": torch.nn.Parameter(torch.ones(1))})
    torch.save({"state_dict": {"w": torch.arange(3.0)}, "global_step": np.int64(7), "lr": np.float64(1e-4),
                "dtype": np.dtype("float32"), "params": params}, path)
    data = load_pickle(path)
    assert torch.equal(data["state_dict"]["w"], torch.arange(3.0)) and int(data["global_step"]) == 7


def test_unknown_global_is_named(tmp_path):
    path = tmp_path / "other.ckpt"
    torch.save({"state_dict": {"w": torch.ones(1)}, "hyper_parameters": argparse.Namespace(lr=0.1)}, path)
    with pytest.raises(UnsafeModelError, match=r"refused: .*\(argparse.Namespace\)"):
        load_pickle(path)


def test_truncated_and_oversized_safetensors(tmp_path):
    path = tmp_path / "m.safetensors"
    save_file({"w": torch.ones(256)}, path)
    assert read_safetensors_header(path).tensors["w"].shape == (256,)
    truncated = tmp_path / "t.safetensors"
    truncated.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(CorruptModelError, match="truncated"):
        load_state_dict(truncated)
    oversized = tmp_path / "o.safetensors"
    oversized.write_bytes(struct.pack("<Q", 10**12) + b"{}")
    with pytest.raises(CorruptModelError, match="oversized"):
        load_state_dict(oversized)
    garbage = tmp_path / "g.safetensors"
    header = b"not json"
    garbage.write_bytes(struct.pack("<Q", len(header)) + header)
    with pytest.raises(CorruptModelError, match="not valid JSON"):
        load_state_dict(garbage)
    lying = tmp_path / "l.safetensors"
    header = json.dumps({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 8]}}).encode()
    lying.write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * 16)
    with pytest.raises(CorruptModelError, match="inconsistent offsets"):
        load_state_dict(lying)


def test_truncated_pickle_is_a_clear_error(tmp_path):
    path = tmp_path / "m.ckpt"
    torch.save({"state_dict": {"w": torch.ones(4096)}}, path)
    path.write_bytes(path.read_bytes()[:2000])
    with pytest.raises(CorruptModelError):
        load_pickle(path)


def test_safetensors_load_round_trip(tmp_path):
    path = tmp_path / "m.safetensors"
    tensors = {"a": torch.randn(3, 4), "b": torch.arange(5, dtype=torch.int64)}
    save_file(tensors, path)
    loaded = load_state_dict(path)
    assert set(loaded) == {"a", "b"} and all(torch.equal(loaded[k], tensors[k]) for k in tensors)
