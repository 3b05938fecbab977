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

Prompt editing (:func:`parse_schedule`): AUTOMATIC1111 first turns a prompt into the plain prompts it has at each
sampler step, then reads each of those as above. The rules of its ``get_learned_conditioning_prompt_schedules`` and
``reconstruct_cond_batch`` with its default ("new") timelines, implemented independently:

- ``[from:to:when]`` gives `from` up to step `when` and `to` after it; ``[to:when]`` (= ``[:to:when]``) adds `to`,
  ``[from::when]`` removes `from`. `when` is a number (``[+-]``, digits, a decimal part, an exponent), with spaces
  allowed around it. ``[a|b|c]`` alternates: one option per step, in turn; options may be empty (``[fe|]male``).
  Parts nest, and keep emphasis (``[(cat:1.2):dog:5]``), escapes, ``BREAK`` and embedding names as text (by the
  bare name: inside a group the ``:`` of ``embedding:name`` is a separator).
- Inside a group every ``(`` and ``[`` must be closed and no ``:`` or ``|`` may stray: ``(…)`` takes at most one
  ``:``; ``[…]`` is emphasis with no separator, an alternation with ``|`` only, an edit with one or two ``:`` and a
  number last. A group that breaks this is literal text at the top level, and breaks any group around it. A ``|``
  outside an alternation, or a backslash at the end or before a line break, makes AUTOMATIC1111 reject the whole
  prompt: it is then used as written, with no editing anywhere. Where its grammar is ambiguous (an edit directly
  followed by a stray ``[ ] ( ) :`` at the top level, as in ``[a:b:2]:``), its choice changes with Python's hash seed
  from one start to the next; here the edit always applies.
- The step of an edit, for a sampler running `steps` steps: `when` written with a ``.`` is a fraction,
  ``int(when × steps)``; without one a step number, ``int(when)``; at most `steps`. In the hires-fix second pass
  (`steps` its own count, `first_pass_steps` the first pass's): ``int((when − 1) × steps)`` and
  ``int(when − first_pass_steps)``, so ``[a:b:1.5]`` switches halfway through that pass and ``[a:b:0.5]`` is `b` in it.
- At sampler step `i` (0-based, ``0 … steps − 1``) let ``s = i``, but ``s = 1`` for ``i = 0`` (and for ``i >
  steps``): AUTOMATIC1111's denoiser counts from 0 and its schedule from 1, falling back to its first entry. An edit
  gives `from` while ``s ≤`` its step, `to` after; an alternation of `n` options gives option ``(s − 1) mod n``. So
  ``[cat:dog:0.5]`` at 10 steps is `cat` at steps 0–5 and `dog` at 6–9; ``[cat|dog]`` is cat, cat, dog, cat, dog…
- AUTOMATIC1111 counts denoiser calls: its second-order samplers (Heun, DPM2, DPM2 a, DPM++ 2S a, DPM++ SDE) count
  ``2 × steps`` of them; in img2img the count starts at 0 with the first step actually run, against the full steps.

Not interpreted: the "old prompt editing timelines" option (`when` below 1 a fraction, any other a step number,
no hires-fix offsets) and ``AND`` (composable diffusion), which stays text as before.

Chunking (:func:`split_chunks`) follows AUTOMATIC1111 too: 75 tokens per chunk; when a chunk is full and a comma lies
within its last 20 tokens, what follows the comma moves to the next chunk; an embedding's vectors are never split
across chunks.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
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


# --- prompt editing ------------------------------------------------------------------------------------------------
#: The most distinct prompts one prompt's editing may produce: each is encoded.
MAX_PROMPT_VARIANTS = 64
#: The longest cycle of alternations enumerated (the least common multiple of their lengths).
_MAX_PERIOD = 4096
_NUMBER = re.compile(r"\s*([+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)\s*")


class TooManyPromptVariants(ValueError):
    """A prompt whose editing syntax would make more distinct prompts than may be encoded."""


@dataclass(frozen=True)
class Edit:
    """``[before:after:when]``: `before` up to the step `when` names, `after` from then on.

    Args:
        before, after: the two texts, as parts (text and nested edits/alternations).
        when: the number as written; whether it has a ``.`` decides between fraction and step number.
    """

    before: tuple[Part, ...]
    after: tuple[Part, ...]
    when: str

    def step(self, steps: int, first_pass_steps: int | None = None) -> int:
        """The last step (in AUTOMATIC1111's 1-based schedule of `steps`) that still gives `before`; below 1 for
        none (see the module docstring for the hires-fix second pass, `first_pass_steps`)."""
        value = float(self.when)
        if "." in self.when:
            value = (value - (0.0 if first_pass_steps is None else 1.0)) * steps
        else:
            value -= first_pass_steps or 0
        return steps if value >= steps else int(max(value, -1.0))

    @property
    def may_give_before(self) -> bool:
        """Whether some step count gives `before` at all (``[a:b:0]``, ``[a:b:-0.5]`` never do)."""
        value = float(self.when)
        return value > 0 if "." in self.when else value >= 1


@dataclass(frozen=True)
class Alternation:
    """``[a|b|…]``: option ``(s − 1) mod n`` at schedule step `s`."""

    options: tuple[tuple[Part, ...], ...]


#: A piece of an edited prompt: literal text (emphasis and escapes included, as written), an edit or an alternation.
Part = str | Edit | Alternation


@dataclass(frozen=True)
class PromptSchedule:
    """A prompt that uses AUTOMATIC1111's prompt editing, parsed: the plain prompt it is at each sampler step."""

    parts: tuple[Part, ...]

    def text_at(self, step_index: int, total_steps: int, *, first_pass_steps: int | None = None) -> str:
        """The plain prompt at sampler step `step_index` (0-based) of `total_steps`, as AUTOMATIC1111 picks it.

        `total_steps` and `step_index` count what AUTOMATIC1111 counts (denoiser calls, see the module docstring).
        `first_pass_steps` marks the hires-fix second pass and gives the first pass's count.
        """
        if total_steps < 1:
            raise ValueError(f"a schedule needs at least one step, not {total_steps}")
        s = step_index if 1 <= step_index <= total_steps else 1
        out: list[str] = []
        _render(self.parts, s, total_steps, first_pass_steps, out)
        return "".join(out)

    def texts(self, limit: int = MAX_PROMPT_VARIANTS) -> list[str]:
        """Every distinct plain prompt some step of some step count may give, in a fixed order.

        Each edit may give either side (`before` only where some count reaches it) and all alternations move
        together, so there are at most 2^edits × the least common multiple of the alternations' lengths.
        Raises TooManyPromptVariants for more than `limit`.
        """
        period = math.lcm(*_alternation_lengths(self.parts))
        if period > _MAX_PERIOD:
            raise TooManyPromptVariants(f"the prompt's alternations ([a|b]) only repeat every {period} steps; "
                                        f"at most {_MAX_PERIOD} are supported")
        found: dict[str, None] = {}
        for phase in range(period):
            found.update(dict.fromkeys(_texts(self.parts, phase, limit)))
            if len(found) > limit:
                raise _too_many(limit)
        return list(found)


def parse_schedule(text: str) -> PromptSchedule | None:
    """`text` with its prompt editing parsed, or None when it has none (or AUTOMATIC1111 would reject it, which
    then uses it as written). See the module docstring for the rules."""
    parser = _ScheduleParser(text)
    try:
        parts = parser.top_level()
    except RecursionError:  # thousands of nested brackets
        return None
    if parts is None or all(isinstance(part, str) for part in parts):
        return None
    return PromptSchedule(parts)


class _ScheduleParser:
    """Recursive descent over AUTOMATIC1111's prompt-editing grammar (see the module docstring)."""

    def __init__(self, text: str):
        self.text = text
        self.groups: dict[int, tuple[list[Part], int] | None] = {}

    def top_level(self) -> tuple[Part, ...] | None:
        text, parts, position, start = self.text, [], 0, 0
        while position < len(text):
            char = text[position]
            if char == "\\":
                if not self._escape(position):
                    return None
                position += 2
                continue
            if char == "|":
                return None
            if char in "([" and (group := self.group(position)) is not None:
                parts += [text[start:position], *group[0]]
                position = start = group[1]
                continue
            position += 1
        parts.append(text[start:])
        return _merge_text(parts)

    def group(self, position: int) -> tuple[list[Part], int] | None:
        """The well-formed group opening at `position` as parts, and where the text continues; None if it is not."""
        if position not in self.groups:
            self.groups[position] = self._group(position)
        return self.groups[position]

    def _group(self, position: int) -> tuple[list[Part], int] | None:
        text, opener = self.text, self.text[position]
        segments: list[tuple[list[Part], int, int]] = []  # parts, start, end
        separators: list[str] = []
        position += 1
        while True:
            prompt = self._prompt(position)
            if prompt is None or prompt[1] >= len(text):
                return None
            segments.append((prompt[0], position, prompt[1]))
            char, position = text[prompt[1]], prompt[1] + 1
            if char not in ":|":
                break
            separators.append(char)
        first = segments[0][0]
        if opener == "(":
            if char != ")" or len(separators) > 1 or "|" in separators:
                return None
            return ["(", *first, *([":", *segments[1][0]] if separators else []), ")"], position
        if char != "]":
            return None
        if not separators:
            return ["[", *first, "]"], position
        if set(separators) == {"|"}:
            return [Alternation(tuple(_merge_text(parts) for parts, _, _ in segments))], position
        if set(separators) == {":"} and len(separators) <= 2:
            number = _NUMBER.fullmatch(text, segments[-1][1], segments[-1][2])
            if number is None:
                return None
            before = _merge_text(first) if len(separators) == 2 else ()
            return [Edit(before, _merge_text(segments[-2][0]), number.group(1))], position
        return None

    def _prompt(self, position: int) -> tuple[list[Part], int] | None:
        """The parts of a group's segment from `position` to the next ``:``, ``|``, ``)``, ``]`` or the end; None
        when a group nested in it is not well formed."""
        text, parts, start = self.text, [], position
        while position < len(text):
            char = text[position]
            if char == "\\":
                if not self._escape(position):
                    return None
                position += 2
            elif char in ":|)]":
                break
            elif char in "([":
                group = self.group(position)
                if group is None:
                    return None
                parts += [text[start:position], *group[0]]
                position = start = group[1]
            else:
                position += 1
        parts.append(text[start:position])
        return parts, position

    def _escape(self, position: int) -> bool:
        """Whether the backslash at `position` escapes a character (AUTOMATIC1111's grammar wants one, not a line
        break); the escape stays in the text for the emphasis parser."""
        return position + 1 < len(self.text) and self.text[position + 1] != "\n"


def _merge_text(parts: Iterable[Part]) -> tuple[Part, ...]:
    merged: list[Part] = []
    for part in parts:
        if isinstance(part, str) and merged and isinstance(merged[-1], str):
            merged[-1] += part
        elif part != "":
            merged.append(part)
    return tuple(merged)


def _render(parts: Sequence[Part], s: int, steps: int, first_pass_steps: int | None, out: list[str]) -> None:
    for part in parts:
        if isinstance(part, str):
            out.append(part)
        elif isinstance(part, Edit):
            side = part.before if s <= part.step(steps, first_pass_steps) else part.after
            _render(side, s, steps, first_pass_steps, out)
        else:
            _render(part.options[(s - 1) % len(part.options)], s, steps, first_pass_steps, out)


def _alternation_lengths(parts: Sequence[Part]) -> Iterator[int]:
    for part in parts:
        if isinstance(part, Edit):
            yield from _alternation_lengths(part.before)
            yield from _alternation_lengths(part.after)
        elif isinstance(part, Alternation):
            yield len(part.options)
            for option in part.options:
                yield from _alternation_lengths(option)


def _texts(parts: Sequence[Part], phase: int, limit: int) -> list[str]:
    """The distinct texts `parts` may give while the alternations are at `phase` (``(s − 1) mod`` their period).
    A part's texts stay distinct once the rest is added around them, so more than `limit` of them is too many."""
    texts = [""]
    for part in parts:
        if isinstance(part, str):
            texts = [text + part for text in texts]
            continue
        if isinstance(part, Edit):
            options = _texts(part.after, phase, limit)
            if part.may_give_before:
                options = list(dict.fromkeys(_texts(part.before, phase, limit) + options))
        else:
            options = _texts(part.options[phase % len(part.options)], phase, limit)
        texts = list(dict.fromkeys(text + option for text in texts for option in options))
        if len(texts) > limit:
            raise _too_many(limit)
    return texts


def _too_many(limit: int) -> TooManyPromptVariants:
    return TooManyPromptVariants(f"prompt editing ([from:to:when], [a|b]) makes more than {limit} different prompts "
                                 f"to encode; use fewer edits or alternations")
