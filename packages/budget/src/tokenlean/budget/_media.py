"""Input tokens of content parts that are not text: images, audio, files.

Each rule is the provider's published one, or a conservative bound where none
is published (the layer reserves; settling charges what the provider billed):

* OpenAI images, tile models (gpt-4o, gpt-4.1, gpt-4.5, o1, o3, gpt-5 ...): low
  detail is the base cost; high / auto: scale to fit 2048x2048, then the
  shortest side down to 768, and pay ``tile`` per 512px tile plus ``base``
  (gpt-4o: 85 + 170 per tile). Size unknown (an ``https`` URL): the worst case,
  8 tiles (2048x768 after scaling).
* OpenAI images, patch models (gpt-4.1-mini/nano, o4-mini): 32px patches,
  at most 1536, times the model's multiplier.
* Anthropic images: ``width * height / 750`` tokens, at most 1600 (larger
  images are scaled down first); 1600 when the size is unknown.
* Audio: 32 tokens per second (Gemini's published rate, the highest published);
  the duration read from a WAV header, else bounded by 8 kbit/s.
* Files / documents: a PDF 3,000 tokens per page (Anthropic: 1,500-3,000 per
  page, text plus the page image); other inline data one token per byte; a
  file by id or URL ``unknown_file_tokens`` (the layer's option).
"""

from __future__ import annotations

import base64
import binascii
import math
import re
import struct
from collections.abc import Mapping
from typing import Any

__all__ = ["part_tokens"]

_HEAD_BYTES = 96 * 1024  # enough of an image to find its size (JPEG's SOF may sit after EXIF)
# (base, per tile), by model prefix, longest first
_TILE_RULES = (("gpt-4o-mini", 2833, 5667), ("gpt-5", 70, 140), ("o1", 75, 150), ("o3", 75, 150))
_DEFAULT_TILES = (85, 170)
_PATCH_RULES = (("gpt-4.1-mini", 1.62), ("gpt-4.1-nano", 2.46), ("o4-mini", 1.72))
_MAX_PATCHES = 1536
_WORST_TILES = 8
ANTHROPIC_IMAGE_MAX = 1600
AUDIO_TOKENS_PER_S = 32
AUDIO_MIN_BYTES_PER_S = 1000  # 8 kbit/s
PDF_PAGE_TOKENS = 3000
_PDF_PAGE = re.compile(rb"/Type\s*/Page(?![a-zA-Z])")


def _bytes_of(data: str, limit: int | None = None) -> bytes | None:
    """Bytes of base64 ``data`` (a ``data:`` URL or bare base64); the first ``limit``."""
    if data.startswith("data:"):
        data = data.partition(",")[2]
    elif data.startswith(("http://", "https://", "file-")):
        return None
    if limit is not None:
        data = data[: (limit // 3 + 1) * 4]
    try:
        return base64.b64decode(data + "=" * (-len(data) % 4))
    except (binascii.Error, ValueError):
        return None


def image_size(head: bytes) -> tuple[int, int] | None:
    """(width, height) from the first bytes of a PNG, GIF, WebP or JPEG, else None."""
    if head.startswith(b"\x89PNG\r\n\x1a\n") and len(head) >= 24:
        return struct.unpack(">II", head[16:24])
    if head[:6] in (b"GIF87a", b"GIF89a") and len(head) >= 10:
        return struct.unpack("<HH", head[6:10])
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP" and len(head) >= 30:
        kind = head[12:16]
        if kind == b"VP8X":
            return (int.from_bytes(head[24:27], "little") + 1,
                    int.from_bytes(head[27:30], "little") + 1)
        if kind == b"VP8 ":
            w, h = struct.unpack("<HH", head[26:30])
            return w & 0x3FFF, h & 0x3FFF
        if kind == b"VP8L":
            bits = int.from_bytes(head[21:25], "little")
            return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if head[:2] == b"\xff\xd8":
        i = 2
        while i + 9 < len(head):
            if head[i] != 0xFF:
                return None
            marker, length = head[i + 1], int.from_bytes(head[i + 2:i + 4], "big")
            if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
                h, w = struct.unpack(">HH", head[i + 5:i + 9])
                return w, h
            i += 2 + length
    return None


def _bare(model: str) -> str:
    return model.rsplit("/", 1)[-1].lower()


def openai_image_tokens(size: tuple[int, int] | None, detail: str, model: str) -> int:
    bare = _bare(model)
    for prefix, multiplier in _PATCH_RULES:
        if bare.startswith(prefix):
            patches = _MAX_PATCHES if size is None else min(
                _MAX_PATCHES, math.ceil(size[0] / 32) * math.ceil(size[1] / 32))
            return math.ceil(patches * multiplier)
    base, tile = next(((b, t) for p, b, t in _TILE_RULES if bare.startswith(p)), _DEFAULT_TILES)
    if detail == "low":
        return base
    if size is None:
        return base + tile * _WORST_TILES
    w, h = float(size[0]), float(size[1])
    if max(w, h) > 2048:
        w, h = w * 2048 / max(w, h), h * 2048 / max(w, h)
    if min(w, h) > 768:
        w, h = w * 768 / min(w, h), h * 768 / min(w, h)
    return base + tile * math.ceil(w / 512) * math.ceil(h / 512)


def anthropic_image_tokens(size: tuple[int, int] | None) -> int:
    if size is None:
        return ANTHROPIC_IMAGE_MAX
    return min(ANTHROPIC_IMAGE_MAX, math.ceil(size[0] * size[1] / 750))


def _audio_tokens(data: str | None, unknown: int) -> int:
    raw = _bytes_of(data) if isinstance(data, str) else None
    if raw is None:
        return unknown
    rate = AUDIO_MIN_BYTES_PER_S
    if raw[:4] == b"RIFF" and raw[8:12] == b"WAVE" and len(raw) >= 32:
        rate = max(rate, int.from_bytes(raw[28:32], "little"))
    return math.ceil(len(raw) / rate * AUDIO_TOKENS_PER_S)


def _file_tokens(data: Any, unknown: int) -> int:
    raw = _bytes_of(data) if isinstance(data, str) else None
    if raw is None:
        return unknown
    if raw.startswith(b"%PDF"):
        pages = len(_PDF_PAGE.findall(raw))
        return pages * PDF_PAGE_TOKENS if pages else unknown
    return len(raw)


def _source(part: Mapping[str, Any]) -> Mapping[str, Any]:
    source = part.get("source")
    return source if isinstance(source, Mapping) else {}


def _image(part: Mapping[str, Any]) -> tuple[str | None, str]:
    """(the image's URL or base64 data, its detail level) for any image part shape."""
    kind = part["type"]
    if kind == "image":  # Anthropic
        source = _source(part)
        return source.get("data") or source.get("url"), "auto"
    ref = part.get("image_url")
    if isinstance(ref, Mapping):
        return ref.get("url"), str(ref.get("detail") or "auto")
    return (ref if isinstance(ref, str) else None), str(part.get("detail") or "auto")


def part_tokens(part: Mapping[str, Any], *, model: str, anthropic: bool,
                unknown_file_tokens: int) -> int:
    """Worst-case input tokens of one non-text content part (0 for text)."""
    kind = part["type"]
    if kind == "text":
        return 0  # counted with the message's text
    if kind == "input_text":  # a token is at least one byte
        return len(str(part.get("text", "")).encode("utf-8"))
    if kind in ("image_url", "input_image", "image"):
        ref, detail = _image(part)
        head = _bytes_of(ref, _HEAD_BYTES) if isinstance(ref, str) else None
        size = image_size(head) if head else None
        if anthropic:
            return anthropic_image_tokens(size)
        return openai_image_tokens(size, detail, model)
    if kind in ("input_audio", "audio"):
        audio = part.get("input_audio") or part.get("audio") or {}
        data = audio.get("data") if isinstance(audio, Mapping) else None
        return _audio_tokens(data, unknown_file_tokens)
    if kind == "document":  # Anthropic
        source = _source(part)
        if source.get("type") == "text" and isinstance(source.get("data"), str):
            return len(source["data"].encode("utf-8"))
        return _file_tokens(source.get("data"), unknown_file_tokens)
    if kind in ("file", "input_file"):
        nested = part.get("file")
        file: Mapping[str, Any] = nested if isinstance(nested, Mapping) else part
        return _file_tokens(file.get("file_data"), unknown_file_tokens)
    return unknown_file_tokens  # a part kind nobody documents: the file bound
