"""AUTOMATIC1111 / Forge infotext as text: read from an image, and split into prompt, negative prompt, fields and
extra-network tags (:mod:`nodegraph.interop.a1111` builds the graph from that).

An image carries it as a PNG's ``parameters`` text chunk, or as the Exif UserComment of a JPEG, WebP (or PNG with an
eXIf chunk). AUTOMATIC1111 writes the UserComment with ``piexif.helper.UserComment.dump(text, encoding="unicode")``:
the 8-byte character code ``b"UNICODE\\0"`` then UTF-16 *big-endian* text without a byte-order mark. Other tools
write little-endian UTF-16 or ``b"ASCII\\0\\0\\0"`` plus (often UTF-8) bytes; all of these are read.

The text is the prompt, an optional ``Negative prompt: …`` (both may span lines), then one line of ``Key: value``
fields starting with ``Steps:``; a value holding commas or colons is JSON-quoted. Pillow only.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from nodegraph.interop.result import InteropError

PARAMETERS_CHUNK = "parameters"
_EXIF_IFD, _USER_COMMENT = 0x8769, 0x9286


def decode_user_comment(data: bytes) -> str | None:
    """The text of an Exif UserComment value (its 8-byte character code tells the encoding); None when empty."""
    if isinstance(data, str):
        return data.rstrip("\0") or None
    code, body = bytes(data[:8]), bytes(data[8:])
    if code == b"UNICODE\0":
        text = body.decode(_utf16_order(body), errors="replace")
    elif code == b"JIS\0\0\0\0\0":
        text = body.decode("shift_jis", errors="replace")
    elif code in (b"ASCII\0\0\0", b"\0" * 8):
        text = body.decode("utf-8", errors="replace")
    else:  # no character code at all: the whole value is the text
        text = bytes(data).decode("utf-8", errors="replace")
    text = text.lstrip("\ufeff").rstrip("\0")
    return text or None


def _utf16_order(body: bytes) -> str:
    """The UTF-16 codec for `body`: its byte-order mark if any, else the order that puts the zero high bytes of
    Latin text where they belong (big-endian, piexif's order, on a tie)."""
    if body[:2] in (b"\xfe\xff", b"\xff\xfe"):
        return "utf-16"  # Python's codec reads the mark and drops it
    even = sum(1 for b in body[0::2] if b == 0)
    odd = sum(1 for b in body[1::2] if b == 0)
    return "utf-16-le" if odd > even else "utf-16-be"


def read_infotext(path: str | Path) -> str | None:
    """The infotext stored in the image at `path`, or None when it carries none.

    Looks at the PNG ``parameters`` text chunk (tEXt, zTXt or iTXt), then the Exif UserComment, then a JPEG comment
    that looks like infotext. Raises InteropError when the file cannot be read as an image.
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    try:
        with Image.open(path) as image:
            image.load()
            return infotext_in(image)
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
        raise InteropError(f"{path.name}: cannot read the image ({error})") from None


def infotext_in(image) -> str | None:
    """The infotext of an open Pillow image (see :func:`read_infotext`), or None."""
    text = getattr(image, "text", None) or {}
    if isinstance(text.get(PARAMETERS_CHUNK), str) and text[PARAMETERS_CHUNK].strip():
        return str(text[PARAMETERS_CHUNK])
    comment = _exif_comment(image)
    if comment:
        return comment
    jpeg_comment = image.info.get("comment")
    if isinstance(jpeg_comment, bytes):
        jpeg_comment = jpeg_comment.decode("utf-8", errors="replace")
    if isinstance(jpeg_comment, str) and "Steps: " in jpeg_comment:
        return jpeg_comment
    return None


def _exif_comment(image) -> str | None:
    try:
        value = image.getexif().get_ifd(_EXIF_IFD).get(_USER_COMMENT)
    except (OSError, ValueError, KeyError, TypeError, SyntaxError):
        return None
    if not value:
        return None
    return decode_user_comment(value)


@dataclass
class Infotext:
    """Parsed infotext: the prompt, the negative prompt and the ``Key: value`` fields in their order (`unparsed`
    holds pieces of the fields line that are not pairs)."""

    prompt: str
    negative_prompt: str = ""
    params: dict[str, str] = field(default_factory=dict)
    unparsed: list[str] = field(default_factory=list)


_STEPS = re.compile(r"(?:^|,)\s*Steps\s*:")
_KEY = re.compile(r"\s*([^:,]+?)\s*:\s*")
_NETWORK = re.compile(r"[ \t]*<(\w+):([^>]+)>")  # with the spaces before it: tokens stay the same


def parse_infotext(text: str) -> Infotext:
    """Split infotext into prompt, negative prompt and fields. The last line holding ``Steps:`` starts the fields
    (lines after it are read as more fields). Raises InteropError when there is no such line."""
    text = text.lstrip("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
    lines = [line.rstrip() for line in text.split("\n")]
    start = next((i for i in range(len(lines) - 1, -1, -1) if _STEPS.search(lines[i])), None)
    if start is None:
        raise InteropError("not AUTOMATIC1111 infotext: no line with 'Steps: ' (the generation parameters)")
    prompt: list[str] = []
    negative: list[str] = []
    for line in lines[:start]:
        if not negative and line.lstrip().startswith("Negative prompt:"):
            negative.append(line.lstrip()[len("Negative prompt:"):])
        else:
            (negative if negative else prompt).append(line)
    result = Infotext("\n".join(prompt).strip(), "\n".join(negative).strip())
    for line in lines[start:]:
        _parse_fields(line, result)
    return result


def _parse_fields(line: str, into: Infotext) -> None:
    pos, end = 0, len(line)
    while pos < end:
        match = _KEY.match(line, pos)
        if match is None:
            comma = _next_comma(line, pos)
            if line[pos:comma].strip():
                into.unparsed.append(line[pos:comma].strip())
            pos = comma + 1
            continue
        key, pos, value = match.group(1), match.end(), None
        if line.startswith('"', pos):
            try:
                value, pos = json.JSONDecoder().raw_decode(line, pos)
            except ValueError:
                value = None
        if not isinstance(value, str):
            comma = _next_comma(line, pos)
            value, pos = line[pos:comma].strip(), comma
        pos = _next_comma(line, pos) + 1
        into.params[key] = value


def _next_comma(line: str, pos: int) -> int:
    comma = line.find(",", pos)
    return len(line) if comma < 0 else comma


@dataclass(frozen=True)
class ExtraNetwork:
    """A ``<lora:name:te:unet>`` / ``<lyco:…>`` (kind "lora") or ``<hypernet:name:strength>`` (kind "hypernet") tag:
    `te` is the text-encoder (or hypernetwork) strength, `unet` the UNet strength."""

    kind: str
    name: str
    te: float = 1.0
    unet: float = 1.0


def extract_networks(prompt: str) -> tuple[str, list[ExtraNetwork], list[str]]:
    """The prompt without its extra-network tags, the LoRAs and hypernetworks they name, and warnings.

    AUTOMATIC1111's rules: ``<lora:name:te[:unet[:dyn]]>`` or named ``te=``/``unet=``/``dyn=``; te defaults to 1 and
    unet to te. Tags of other kinds are removed with a warning, as AUTOMATIC1111 removes them.
    """
    found: list[ExtraNetwork] = []
    warnings: list[str] = []

    def number(tag: str, raw: str) -> float:
        try:
            return float(raw)
        except ValueError:
            warnings.append(f"{tag}: {raw!r} is not a number; using 1")
            return 1.0

    def take(match: re.Match) -> str:
        tag, kind = match.group(0).strip(), match.group(1).lower()
        items = [item.strip() for item in match.group(2).split(":")]
        if kind not in ("lora", "lyco", "hypernet"):
            warnings.append(f"{tag}: extra networks of type {kind!r} are not supported; removed from the prompt")
            return ""
        positional = [item for item in items if "=" not in item]
        named = dict(item.split("=", 1) for item in items if "=" in item)
        name = positional[0] if positional else ""
        te = number(tag, named.get("te", positional[1] if len(positional) > 1 else "1"))
        unet = number(tag, named.get("unet", positional[2] if len(positional) > 2 else str(te)))
        ignored = positional[3:] + [f"{k}={v}" for k, v in named.items() if k not in ("te", "unet")]
        if kind == "hypernet":
            ignored, unet = positional[2:] + list(named), te
        if ignored:
            warnings.append(f"{tag}: {', '.join(ignored)} ignored (only the strengths are carried over)")
        found.append(ExtraNetwork("hypernet" if kind == "hypernet" else "lora", name, te, unet))
        return ""

    return _NETWORK.sub(take, prompt).strip(), found, warnings
