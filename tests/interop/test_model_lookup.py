"""Finding the model an AUTOMATIC1111 infotext means by hash and name: the hash rules (checked here with hashlib
directly), hash-over-name precedence, and the per-file hash cache."""

from __future__ import annotations

import hashlib
import json
import os
import struct
from pathlib import Path

import pytest

from nodegraph.interop import model_lookup
from nodegraph.interop.model_lookup import HashCache, cache_path, find_model, name_key
from nodegraph.models.discovery import ModelFolders


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def blob(seed: int, size: int = 0x110000 + 4096) -> bytes:
    """`size` bytes that differ per seed (larger than 0x110000, so the old hash window is inside the file)."""
    return hashlib.sha256(str(seed).encode()).digest() * (size // 32) + bytes(size % 32)


def old_hash(data: bytes) -> str:
    """AUTOMATIC1111's old 8-hex model hash: SHA-256 of the 0x10000 bytes at offset 0x100000."""
    return hashlib.sha256(data[0x100000:0x110000]).hexdigest()[:8]


def safetensors(metadata: dict | None = None, payload: bytes = b"\x01\x02\x03\x04" * 64) -> tuple[bytes, bytes]:
    """A small valid safetensors file and the bytes after its header."""
    header = {"w": {"dtype": "F32", "shape": [len(payload) // 4], "data_offsets": [0, len(payload)]}}
    if metadata:
        header["__metadata__"] = metadata
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + payload, payload


@pytest.fixture
def root(tmp_path) -> Path:
    return tmp_path / "webui"


@pytest.fixture
def folders(root) -> ModelFolders:
    return ModelFolders([root], include_home=False)


@pytest.fixture
def digests(monkeypatch) -> list[tuple]:
    """Every file read for hashing, as (file name, start, length)."""
    calls: list[tuple] = []
    original = model_lookup._digest

    def counting(path, start=0, length=None):
        calls.append((Path(path).name, start, length))
        return original(path, start, length)

    monkeypatch.setattr(model_lookup, "_digest", counting)
    return calls


def test_old_8_hex_hash_reads_only_its_window_and_finds_a_renamed_file(root, folders, digests):
    data = blob(1)
    write(root / "models" / "Stable-diffusion" / "renamed.safetensors", data)
    match = find_model(folders, "checkpoints", "original", old_hash(data))
    assert (match.name, match.how) == ("renamed.safetensors", "hash")
    assert "found by its hash" in match.warning and "renamed.safetensors" in match.warning
    assert digests == [("renamed.safetensors", 0x100000, 0x10000)]


def test_10_hex_hash_is_the_start_of_the_full_sha256(root, folders):
    data = blob(2)
    write(root / "models" / "Stable-diffusion" / "sub" / "model.ckpt", data)
    match = find_model(folders, "checkpoints", None, hashlib.sha256(data).hexdigest()[:10].upper())
    assert (match.name, match.how, match.warning) == ("sub/model.ckpt", "hash", None)


def test_a_hash_match_beats_a_name_match(root, folders):
    wanted, impostor = blob(3), blob(4)
    write(root / "models" / "Stable-diffusion" / "wanted.safetensors", impostor)
    write(root / "models" / "Stable-diffusion" / "zz_copy.safetensors", wanted)
    for digest in (old_hash(wanted), hashlib.sha256(wanted).hexdigest()[:10]):
        assert find_model(folders, "checkpoints", "wanted", digest).name == "zz_copy.safetensors"


def test_name_match_with_another_hash_is_used_with_a_warning(root, folders):
    write(root / "models" / "Stable-diffusion" / "Anime_V3.safetensors", blob(5))
    match = find_model(folders, "checkpoints", "anime_v3", "0123456789", label="Model")
    assert (match.name, match.how) == ("Anime_V3.safetensors", "name")
    assert "hash differs from 0123456789" in match.warning


def test_nothing_matches_gives_a_warning(root, folders):
    write(root / "models" / "Stable-diffusion" / "other.safetensors", blob(6))
    match = find_model(folders, "checkpoints", "missing", "abcdef0123", label="Model")
    assert match.name is None and match.how == ""
    assert "'missing'" in match.warning and "not found in your model folders" in match.warning


def test_a_name_match_without_a_hash_reads_no_file(root, folders, digests):
    write(root / "models" / "Stable-diffusion" / "sdxl" / "Juggernaut.safetensors", blob(7))
    assert find_model(folders, "checkpoints", "juggernaut").name == "sdxl/Juggernaut.safetensors"
    assert find_model(folders, "checkpoints", "sdxl_juggernaut").name == "sdxl/Juggernaut.safetensors"
    assert digests == []


def test_name_key_drops_folder_suffix_and_case():
    assert name_key("sub\\Foo.SafeTensors") == name_key("sub/foo.safetensors") == "foo"
    assert name_key("foo.v2") == "foo.v2"


def test_hashes_are_cached_per_file_version(root, folders, digests):
    data = blob(8)
    path = write(root / "models" / "Stable-diffusion" / "a.safetensors", data)
    digest = hashlib.sha256(data).hexdigest()[:10]
    assert find_model(folders, "checkpoints", "a", digest).how == "hash"
    assert len(digests) == 1
    stored = json.loads(cache_path().read_text(encoding="utf-8"))
    entry = stored[str(path.resolve())]
    assert entry["sha256"] == hashlib.sha256(data).hexdigest()
    assert (entry["size"], entry["mtime_ns"]) == (path.stat().st_size, path.stat().st_mtime_ns)

    assert find_model(folders, "checkpoints", "a", digest).how == "hash"  # a fresh HashCache reads the file
    assert len(digests) == 1

    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))  # touched: hashed again
    assert find_model(folders, "checkpoints", "a", digest).how == "hash"
    assert len(digests) == 2

    write(path, data + b"more")  # edited: hashed again, and no longer matches
    assert find_model(folders, "checkpoints", "a", digest).how == "name"
    assert len(digests) == 3


def test_one_cache_object_saves_once_and_a_broken_cache_file_is_ignored(tmp_path):
    store = tmp_path / "cache" / "hashes.json"
    write(store, b"{not json")
    path = write(tmp_path / "f.bin", b"x" * 100)
    cache = HashCache(store)
    assert cache.hash(path, "sha256") == hashlib.sha256(b"x" * 100).hexdigest()
    cache.save()
    assert str(path.resolve()) in json.loads(store.read_text(encoding="utf-8"))


def test_lora_hash_is_the_addnet_hash_or_the_metadata_hash(root, folders):
    data, payload = safetensors()
    write(root / "models" / "Lora" / "style.safetensors", data)
    addnet = hashlib.sha256(payload).hexdigest()[:12]
    assert addnet != hashlib.sha256(data).hexdigest()[:12]
    assert find_model(folders, "loras", "alias-from-metadata", addnet).name == "style.safetensors"

    tagged, _ = safetensors({"sshs_model_hash": "ABCDEF" + "0" * 58})
    write(root / "models" / "Lora" / "tagged.safetensors", tagged)
    assert find_model(folders, "loras", "x", "abcdef000000").name == "tagged.safetensors"

    write(root / "models" / "Lora" / "old.pt", b"pt-bytes")
    assert find_model(folders, "loras", "y", hashlib.sha256(b"pt-bytes").hexdigest()[:12]).name == "old.pt"


def test_embedding_and_vae_hashes_are_sha256_prefixes(root, folders):
    write(root / "embeddings" / "EasyNegative.safetensors", b"embedding")
    write(root / "models" / "VAE" / "kl-f8.safetensors", b"vae")
    assert find_model(folders, "embeddings", "easynegative",
                      hashlib.sha256(b"embedding").hexdigest()[:12]).how == "hash"
    assert find_model(folders, "vae", "kl-f8.safetensors", hashlib.sha256(b"vae").hexdigest()[:10]).how == "hash"


def test_an_unknown_kind_or_a_non_hex_hash_is_harmless(root, folders, digests):
    assert find_model(folders, "controlnet", "x").name is None
    write(root / "models" / "Stable-diffusion" / "m.safetensors", blob(9))
    match = find_model(folders, "checkpoints", "m", "not-hex!")
    assert match.name == "m.safetensors" and digests == []


def test_hashing_stops_at_the_imports_budget_and_says_so(root, folders, digests, tmp_path):
    """A folder of large files and a hash nothing matches: past the budget no more files are read, and the warning
    says some were not hashed; hashes already cached still count."""
    data = blob(9)
    for index in range(3):
        write(root / "models" / "Stable-diffusion" / f"big{index}.safetensors", blob(10 + index))
    write(root / "models" / "Stable-diffusion" / "wanted.safetensors", data)
    cache = HashCache(tmp_path / "hashes.json", budget=len(data) + 10)
    match = find_model(folders, "checkpoints", "wanted", "0123456789", cache=cache)
    assert (match.name, match.how) == ("wanted.safetensors", "name")
    assert len(digests) == 1 and cache.skipped == 3
    assert "3 large file(s) were not hashed" in match.warning
    cache.save()
    again = HashCache(tmp_path / "hashes.json", budget=0)  # nothing new may be read; the cached hash still matches
    found = find_model(folders, "checkpoints", None, hashlib.sha256(data).hexdigest()[:10], cache=again)
    assert (found.name, found.how) == ("wanted.safetensors", "hash") and len(digests) == 1
