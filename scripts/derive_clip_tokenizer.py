"""Derive the CLIP tokenizer files (``vocab.json``, ``merges.txt``) from OpenAI's BPE merge list.

Neither transformers nor diffusers ships a CLIP vocabulary, and nodegraph never downloads one from a model hub. The
vocabulary is instead derived, deterministically, from the file OpenAI published with CLIP:
``bpe_simple_vocab_16e6.txt.gz`` (MIT licence, © 2021 OpenAI). A copy of it sits inside the ``open_clip_torch``
wheel on PyPI (``open_clip/bpe_simple_vocab_16e6.txt.gz``), so it can be fetched with an ordinary package client::

    pip download --no-deps open_clip_torch -d /tmp/oc
    python scripts/derive_clip_tokenizer.py /tmp/oc/open_clip_torch-*.whl

The argument is the wheel or the bare ``.gz`` file. The derivation is the one in OpenAI's ``simple_tokenizer.py``:

1. The file, decoded as UTF-8 and split on ``\\n``, starts with a header line; the merges are lines ``[1:48895]``
   (48,894 merges, each two space-separated symbols).
2. The vocabulary lists, in this order and numbered from 0:

   - the 256 byte-level characters (GPT-2's reversible byte-to-unicode table: the 188 printable bytes stand for
     themselves and come first, in byte order; the other 68 bytes follow as U+0100, U+0101, …);
   - the same 256 characters followed by ``</w>`` (end of word);
   - one entry per merge, its two symbols joined;
   - ``<|startoftext|>`` (49406) and ``<|endoftext|>`` (49407).

   That is 256 + 256 + 48,894 + 2 = 49,408 entries.
3. ``merges.txt`` is ``#version: 0.2`` followed by the merges, one per line.

The outputs are what the transformers ``CLIPTokenizer`` reads: ``"a photo of a cat"`` becomes
``[49406, 320, 1125, 539, 320, 2368, 49407]``. They are written to ``resources/tokenizers/clip/`` unless ``--out``
says otherwise, with ``\\n`` line endings, so that re-running the script reproduces them byte for byte.
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
import zipfile
from pathlib import Path

BPE_NAME = "bpe_simple_vocab_16e6.txt.gz"
#: lines [1:MERGES_END] of the BPE file are the merges used by CLIP (49408 - 256 - 256 - 2 = 48894 of them)
MERGES_END = 49152 - 256 - 2 + 1
VOCAB_SIZE = 49408
SPECIAL_TOKENS = ("<|startoftext|>", "<|endoftext|>")
MERGES_HEADER = "#version: 0.2"
DEFAULT_OUT = Path(__file__).resolve().parents[1] / "resources" / "tokenizers" / "clip"


def byte_level_alphabet() -> list[str]:
    """The 256 byte-level characters of GPT-2 / CLIP, in vocabulary order (``"!"`` first, id 0).

    Bytes that are printable and not whitespace (``!``..``~``, ``¡``..``¬``, ``®``..``ÿ``, 188 of them) stand for
    themselves; the other 68 (control characters, space, no-break space, soft hyphen, …) stand for U+0100, U+0101, …
    in increasing byte order. The vocabulary lists the printable ones first, then the shifted ones, each group in byte
    order, which is the order of OpenAI's ``bytes_to_unicode()`` table.
    """
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    others = [byte for byte in range(256) if byte not in set(printable)]
    return [chr(byte) for byte in printable] + [chr(256 + index) for index in range(len(others))]


def read_bpe_text(source: Path) -> str:
    """The decoded BPE file, read from a wheel (any zip holding ``…/bpe_simple_vocab_16e6.txt.gz``) or the ``.gz``."""
    if zipfile.is_zipfile(source):
        with zipfile.ZipFile(source) as wheel:
            members = [name for name in wheel.namelist() if name.rsplit("/", 1)[-1] == BPE_NAME]
            if len(members) != 1:
                raise SystemExit(f"{source}: expected exactly one {BPE_NAME} inside, found {members or 'none'}")
            packed = wheel.read(members[0])
    else:
        packed = source.read_bytes()
    return gzip.decompress(packed).decode("utf-8")


def derive(bpe_text: str) -> tuple[dict[str, int], list[str]]:
    """The vocabulary (token -> id) and the merges (``"a b"`` strings) derived from the BPE file's text."""
    lines = bpe_text.split("\n")
    merges = lines[1:MERGES_END]
    pairs = [tuple(line.split()) for line in merges]
    bad = [line for line, pair in zip(merges, pairs, strict=True) if len(pair) != 2]
    if bad:
        raise SystemExit(f"malformed merge lines: {bad[:5]!r}")

    alphabet = byte_level_alphabet()
    tokens = alphabet + [char + "</w>" for char in alphabet] + ["".join(pair) for pair in pairs] + list(SPECIAL_TOKENS)
    vocab = {token: index for index, token in enumerate(tokens)}
    if len(tokens) != VOCAB_SIZE or len(vocab) != VOCAB_SIZE:
        raise SystemExit(f"expected {VOCAB_SIZE} distinct tokens, got {len(tokens)} ({len(vocab)} distinct)")
    return vocab, [" ".join(pair) for pair in pairs]


def write_outputs(vocab: dict[str, int], merges: list[str], out: Path) -> tuple[Path, Path]:
    """Write ``vocab.json`` (one entry per line, UTF-8) and ``merges.txt`` into `out`; return their paths."""
    out.mkdir(parents=True, exist_ok=True)
    vocab_path = out / "vocab.json"
    merges_path = out / "merges.txt"
    vocab_path.write_text(json.dumps(vocab, ensure_ascii=False, indent=0) + "\n", encoding="utf-8", newline="\n")
    merges_path.write_text("\n".join([MERGES_HEADER, *merges]) + "\n", encoding="utf-8", newline="\n")
    return vocab_path, merges_path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", type=Path, help=f"the open_clip_torch wheel, or {BPE_NAME} itself")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder (default: %(default)s)")
    args = parser.parse_args(argv)

    vocab, merges = derive(read_bpe_text(args.source))
    for path in write_outputs(vocab, merges, args.out):
        print(f"wrote {path}")
    print(f"{len(vocab)} vocabulary entries, {len(merges)} merges")
    return 0


if __name__ == "__main__":
    sys.exit(main())
