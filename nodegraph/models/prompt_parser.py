"""Prompt syntax as AUTOMATIC1111 users write it, and embedding references as both AUTOMATIC1111 and ComfyUI users
write them. Pure Python: no torch, so the GUI can highlight prompts without loading a model.

Emphasis (the behaviour of AUTOMATIC1111's prompt parser; this is an independent implementation):

- ``(text)`` multiplies the weight of `text` by 1.1, ``((text))`` by 1.1², ``[text]`` divides it by 1.1;
- ``(text:1.3)`` sets the factor to 1.3 (any ``[+-]`` decimal, spaces allowed around it); nested groups multiply;
- ``\\(``, ``\\)``, ``\\[``, ``\\]`` and ``\\\\`` stand for the literal character. A backslash before anything else
  stays a backslash (AUTOMATIC1111 drops it; keeping it lets ``embedding:sub\\name`` through);
- a closing bracket with no open one is literal text; a group left open applies its factor up to the end of the
  prompt; ``)`` closes the innermost open ``(`` and ``]`` the innermost ``[``, each on its own stack;
- ``BREAK`` (upper case, a whole word) ends the current 75-token chunk. Unlike in AUTOMATIC1111 a ``BREAK`` inside
  parentheses still breaks (there it turns into the literal word).

AUTOMATIC1111's scheduling syntax (``[from:to:when]``, ``[a|b]``) is not interpreted: it reads as plain text with
``[ ]`` emphasis, as AUTOMATIC1111's emphasis parser alone reads it.

Chunking (:func:`split_chunks`) follows AUTOMATIC1111 too: 75 tokens per chunk; when a chunk is full and a comma lies
within its last 20 tokens, what follows the comma moves to the next chunk; an embedding's vectors are never split
across chunks.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import PurePath, PureWindowsPath
from typing import NamedTuple

#: The factor of one pair of round brackets (square brackets divide by it).
EMPHASIS = 1.1
#: Tokens per chunk, not counting the start and end tokens that make it 77.
CHUNK_LENGTH = 75
#: How far back from a full chunk's end a comma may lie to move the words after it into the next chunk.
COMMA_BACKTRACK = 20
#: The prefix of an explicit (ComfyUI-style) embedding reference.
EMBEDDING_PREFIX = "embedding:"


class Fragment(NamedTuple):
    """A run of prompt text and the weight its tokens get."""

    text: str
    weight: float


class PromptBreak(Fragment):
    """The ``BREAK`` keyword: the prompt continues in a new chunk. Test for it with ``fragment is BREAK``."""


#: The one ``BREAK`` marker :func:`parse_prompt` puts in its output (it equals ``("BREAK", -1.0)`` as AUTOMATIC1111
#: writes it, but is told apart from text by identity).
BREAK = PromptBreak("BREAK", -1.0)

_WEIGHT = re.compile(r":\s*([+-]?[.\d]+)\s*\)")
_BREAK_WORD = re.compile(r"\s*\bBREAK\b\s*")
_ESCAPABLE = frozenset("()[]\\")


def parse_prompt(text: str) -> list[Fragment]:
    """Split `text` into fragments with their emphasis weights, AUTOMATIC1111-style (see the module docstring).

    Neighbours of equal weight are merged, empty fragments dropped, and ``BREAK`` appears as :data:`BREAK`. A prompt
    with no text at all gives ``[Fragment("", 1.0)]``.

    >>> parse_prompt("a (((house:1.3)) [on] a (hill:0.5), sun, (((sky))).")[:3]
    [Fragment(text='a ', weight=1.0), Fragment(text='house', weight=1.5730000000000004), Fragment(text=' ', weight=1.1)]
    """
    pieces: list[list] = []  # [text, weight] pairs, and BREAK itself
    rounds: list[int] = []  # where each open "(" starts, as an index into pieces
    squares: list[int] = []
    literal: list[str] = []

    def flush() -> None:
        if not literal:
            return
        for index, part in enumerate(_BREAK_WORD.split("".join(literal))):
            if index:
                pieces.append(BREAK)
            pieces.append([part, 1.0])
        literal.clear()

    def scale(start: int, factor: float) -> None:
        for piece in pieces[start:]:
            if piece is not BREAK:
                piece[1] *= factor

    position = 0
    while position < len(text):
        char = text[position]
        if char == "\\" and position + 1 < len(text) and text[position + 1] in _ESCAPABLE:
            literal.append(text[position + 1])
            position += 2
            continue
        if char in "([":
            flush()
            (rounds if char == "(" else squares).append(len(pieces))
        elif char == ":" and rounds and (weight := _parse_weight(text, position)) is not None:
            factor, position = weight
            flush()
            scale(rounds.pop(), factor)
            continue
        elif char == ")" and rounds:
            flush()
            scale(rounds.pop(), EMPHASIS)
        elif char == "]" and squares:
            flush()
            scale(squares.pop(), 1 / EMPHASIS)
        else:
            literal.append(char)
        position += 1
    flush()
    for start in rounds:
        scale(start, EMPHASIS)
    for start in squares:
        scale(start, 1 / EMPHASIS)
    return _merge(pieces)


def _parse_weight(text: str, position: int) -> tuple[float, int] | None:
    """The factor of a ``:1.3)`` closing at `position`, and where the text continues; None if there is none."""
    match = _WEIGHT.match(text, position)
    if match is None:
        return None
    try:
        return float(match.group(1)), match.end()
    except ValueError:  # "1.2.3" or "." look like numbers to the pattern only
        return None


def _merge(pieces: list) -> list[Fragment]:
    merged: list[Fragment] = []
    for piece in pieces:
        if piece is BREAK:
            merged.append(BREAK)
        elif piece[0]:
            last = merged[-1] if merged else None
            if last is not None and last is not BREAK and last.weight == piece[1]:
                merged[-1] = Fragment(last.text + piece[0], last.weight)
            else:
                merged.append(Fragment(piece[0], piece[1]))
    return merged or [Fragment("", 1.0)]


def has_emphasis(fragments: Iterable[Fragment]) -> bool:
    """Whether any fragment has a weight other than 1.0 (``BREAK`` does not count)."""
    return any(f is not BREAK and f.weight != 1.0 for f in fragments)


# --- chunks --------------------------------------------------------------------------------------------------------
class Chunk(NamedTuple):
    """The tokens of one chunk (at most :data:`CHUNK_LENGTH`, without start/end/padding) and their weights."""

    ids: list[int]
    weights: list[float]


def split_chunks(units: Iterable[tuple[Sequence[int], float] | PromptBreak], *, comma_id: int | None = None,
                 chunk_length: int = CHUNK_LENGTH, comma_backtrack: int = COMMA_BACKTRACK) -> list[Chunk]:
    """Distribute tokens over chunks of at most `chunk_length` tokens, as AUTOMATIC1111 does.

    Args:
        units: ``(ids, weight)`` pairs in prompt order, each one token or all the vectors of one embedding (which
            stay in one chunk), and :data:`BREAK` markers, which close the current chunk.
        comma_id: the tokenizer's id of ``,``. When a chunk is full and the last comma in it is at most
            `comma_backtrack` tokens from its end, the tokens after that comma move to the next chunk (0 turns this
            off; so does ``comma_id=None``).

    Returns at least one chunk (an empty one for an empty prompt). Raises ValueError for a unit longer than a chunk.
    """
    chunks: list[Chunk] = []
    ids: list[int] = []
    weights: list[float] = []
    last_comma = -1

    def close() -> None:
        nonlocal ids, weights, last_comma
        chunks.append(Chunk(ids, weights))
        ids, weights, last_comma = [], [], -1

    for unit in units:
        if unit is BREAK:
            close()
            continue
        tokens, weight = unit
        if len(tokens) > chunk_length:
            raise ValueError(f"an embedding of {len(tokens)} vectors does not fit in a chunk of {chunk_length} tokens")
        if comma_id is not None and list(tokens) == [comma_id]:
            last_comma = len(ids)
        elif (comma_backtrack and len(ids) == chunk_length and last_comma >= 0
              and len(ids) - last_comma <= comma_backtrack):
            cut = last_comma + 1
            moved = ids[cut:], weights[cut:]
            del ids[cut:], weights[cut:]
            close()
            ids, weights = list(moved[0]), list(moved[1])
        if len(ids) + len(tokens) > chunk_length:
            close()
        ids.extend(tokens)
        weights.extend([weight] * len(tokens))
    if ids or not chunks:
        close()
    return chunks


# --- embedding references ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class EmbeddingReference:
    """Where a prompt names an embedding.

    Args:
        start, end: the span in the text, ``embedding:`` included for an explicit reference.
        name: the name as written (without ``embedding:``).
        key: the key of the known embedding it names; None for an explicit reference that names none of them.
        explicit: written ComfyUI-style as ``embedding:name``, rather than as a bare name (AUTOMATIC1111-style).
    """

    start: int
    end: int
    name: str
    key: str | None
    explicit: bool


_PREFIX = re.compile(r"(?<![\w-])" + re.escape(EMBEDDING_PREFIX), re.IGNORECASE)
_NAME_LIKE = re.compile(r"[\w\-./\\]*[\w\-/\\]")
_WORD = r"[\w-]"


def find_embedding_references(text: str,
                              embeddings: Mapping[str, str | os.PathLike[str] | None]) -> list[EmbeddingReference]:
    """The embedding references in `text`, in order.

    `embeddings` maps each known embedding's key (its token, as an Embedding node registers it) to its file (or
    None). A reference is either

    - explicit, ComfyUI-style: ``embedding:`` followed by the key, the file stem (``easynegative``), the file name
      (``easynegative.safetensors``) or a path relative to any folder above the file (``neg/easynegative``, ``/`` or
      ``\\``); an explicit reference naming no known embedding is returned with ``key=None``; or
    - bare, AUTOMATIC1111-style: the key or the file stem as a whole word (hyphens count as part of a word, so
      ``bad-hand`` is not found in ``bad-hand-v4``).

    Names match case-insensitively (CLIP's tokenizer lowercases prompts anyway); the longest name wins.
    """
    explicit_names: dict[str, str] = {}
    bare_names: dict[str, str] = {}
    for key, path in embeddings.items():
        _add_name(explicit_names, key, key)
        _add_name(bare_names, key, key)
        if path is None:
            continue
        parts = PureWindowsPath(path).parts if "\\" in str(path) else PurePath(path).parts
        stem = PurePath(parts[-1]).stem if parts else ""
        _add_name(bare_names, stem, key)
        _add_name(explicit_names, stem, key)
        for depth in range(1, len(parts) + 1):
            tail = "/".join(parts[-depth:])
            _add_name(explicit_names, tail, key)
            _add_name(explicit_names, tail[: len(tail) - len(parts[-1])] + stem, key)
    ordered = sorted(explicit_names, key=len, reverse=True)
    folded = "".join(c if len(c.lower()) != 1 else c.lower() for c in text).replace("\\", "/")  # same length

    references: list[EmbeddingReference] = []
    for match in _PREFIX.finditer(text):
        if references and match.start() < references[-1].end:
            continue
        start = match.end()
        found = next((name for name in ordered if folded.startswith(name, start)
                      and _ends_word(folded, start + len(name))), None)
        if found is not None:
            end = start + len(found)
            references.append(EmbeddingReference(match.start(), end, text[start:end], explicit_names[found], True))
            continue
        written = _NAME_LIKE.match(text, start)
        if written is not None:
            references.append(EmbeddingReference(match.start(), written.end(), written.group(), None, True))

    if bare_names:
        pattern = re.compile(rf"(?<!{_WORD})(?:{'|'.join(map(re.escape, sorted(bare_names, key=len, reverse=True)))})"
                             rf"(?!{_WORD})", re.IGNORECASE)
        bare: list[EmbeddingReference] = []
        gaps = [0, *(edge for ref in references for edge in (ref.start, ref.end)), len(text)]
        for begin, end in zip(gaps[::2], gaps[1::2], strict=True):
            for match in pattern.finditer(text, begin, end):
                bare.append(EmbeddingReference(match.start(), match.end(), match.group(),
                                               bare_names[match.group().lower()], False))
        references = sorted(references + bare, key=lambda ref: ref.start)
    return references


def _add_name(names: dict[str, str], name: str, key: str) -> None:
    name = name.lower().replace("\\", "/")
    if name and name not in names:
        names[name] = key


def _ends_word(folded: str, position: int) -> bool:
    """Whether a name ending at `position` ends there as a word (not followed by more of a name, like ``.pt``)."""
    rest = folded[position:position + 2]
    return not rest or not (re.match(_WORD, rest[0]) or rest[0] == "/" or (rest[0] == "." and rest[1:].isalnum()))
