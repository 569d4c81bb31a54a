"""Small checks of request fields; each failure is a 400 naming the field."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from ._errors import ApiError
from ._json import short

__all__ = ["get_bool", "get_int", "get_number", "get_stops", "get_str", "text_of"]


def _finite(value: float) -> bool:
    try:
        return math.isfinite(value)
    except OverflowError:  # an int too large for a float
        return False


def get_number(body: Mapping[str, Any], name: str, default: float, *, low: float, high: float,
               low_open: bool = False) -> float:
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not _finite(value):
        raise ApiError(400, f"{name} must be a number, got {short(value)}", param=name)
    if value < low or value > high or (low_open and value == low):
        span = f"({low}, {high}]" if low_open else f"[{low}, {high}]"
        raise ApiError(400, f"{name} must be in {span}, got {value}", param=name)
    return float(value)


def get_int(body: Mapping[str, Any], name: str, *, low: int) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ApiError(400, f"{name} must be an integer, got {short(value)}", param=name)
    if value < low:
        raise ApiError(400, f"{name} must be >= {low}, got {value}", param=name)
    return value


def get_bool(body: Mapping[str, Any], name: str, default: bool = False) -> bool:
    value = body.get(name)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise ApiError(400, f"{name} must be true or false, got {short(value)}", param=name)
    return value


def get_str(body: Mapping[str, Any], name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value:
        raise ApiError(400, f"{name} is required and must be a non-empty string", param=name)
    return value


def get_stops(body: Mapping[str, Any], name: str, *, most: int) -> tuple[str, ...]:
    value = body.get(name)
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(s, str) and s for s in value):
        raise ApiError(400, f"{name} must be a non-empty string or a list of them", param=name)
    if len(value) > most:
        raise ApiError(400, f"{name} takes at most {most} sequences, got {len(value)}", param=name)
    return tuple(value)


def text_of(content: Any, where: str) -> str:
    """Text of a message content: a string or a list of text parts/blocks."""
    if isinstance(content, str):
        return content
    if content is None:
        return ""
    if isinstance(content, list):
        parts = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") != "text" \
                    or not isinstance(part.get("text"), str):
                kind = part.get("type") if isinstance(part, dict) else type(part).__name__
                raise ApiError(400, f"{where}: only text content is supported by this local "
                                    f"model server, got a {short(kind)} part",
                               param="messages")
            parts.append(part["text"])
        return "".join(parts)
    raise ApiError(400, f"{where}: content must be a string or a list of text parts",
                   param="messages")
