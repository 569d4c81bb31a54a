"""Strict JSON request bodies: a 400 for anything the request fields could choke on.

``json.loads`` alone accepts what later code cannot handle: ``NaN`` and
``Infinity``, integers of thousands of digits (``int()`` refuses past 4300, and
float conversion overflows long before), duplicate keys (which one wins?),
nesting deep enough to exhaust the recursion limit, and ``"\\ud800"`` escapes
that decode to lone surrogates (no tokenizer or UTF-8 encoder takes them).
:func:`parse_json_body` refuses all of these with an :class:`ApiError` (400).
It is pure CPU work: the app runs it off the event loop.
"""

from __future__ import annotations

import json
import math
import reprlib
from collections.abc import Mapping
from typing import Any

from ._engine import find_surrogate
from ._errors import ApiError

__all__ = ["MAX_DEPTH", "MAX_INT_DIGITS", "check_text", "parse_json_body", "short"]

MAX_DEPTH = 32  # the request shapes need about 5 levels
MAX_INT_DIGITS = 32  # seeds fit in 20; nothing a request sends needs more

_REPR = reprlib.Repr()
_REPR.maxstring = 60
_REPR.maxother = 60
_REPR.maxlist = _REPR.maxdict = 6
_REPR.maxlevel = 3


def short(value: Any) -> str:
    """A bounded ``repr`` for error messages (a value may be megabytes or deeply nested)."""
    return _REPR.repr(value)


def check_text(text: str, where: str) -> str:
    """``text`` unless it holds a lone surrogate (400): nothing downstream can encode one."""
    at = find_surrogate(text)
    if at >= 0:
        raise ApiError(400, f"{where} contains an unpaired surrogate (U+{ord(text[at]):04X} at "
                            f"character {at}): send valid Unicode text")
    return text


class _Refused(ValueError):
    """Raised from a ``json.loads`` hook; its message is the client's 400."""


def _int(digits: str) -> int:
    if len(digits.lstrip("-")) > MAX_INT_DIGITS:
        raise _Refused(f"an integer has {len(digits)} digits; at most {MAX_INT_DIGITS} are "
                       f"accepted")
    return int(digits)


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _Refused(f"the number {short(text)} is out of range")
    return value


def _constant(name: str) -> float:
    raise _Refused(f"{name} is not valid JSON; send a finite number")


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _Refused(f"the key {short(key)} appears twice in one object")
            seen.add(key)
    return out


def _check_tree(body: Any) -> None:
    """Depth at most MAX_DEPTH, and no lone surrogate in any key or string (iterative)."""
    stack: list[tuple[Any, int]] = [(body, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, str):
            check_text(node, "a string in the request body")
            continue
        if not isinstance(node, (dict, list)):
            continue
        if depth > MAX_DEPTH:
            raise ApiError(400, f"the request body nests deeper than {MAX_DEPTH} levels")
        if isinstance(node, dict):
            for key, value in node.items():
                check_text(key, "a key in the request body")
                stack.append((value, depth + 1))
        else:
            stack.extend((item, depth + 1) for item in node)


def parse_json_body(raw: bytes) -> Mapping[str, Any]:
    """The request body as a JSON object, or a 400 that says what is wrong with it."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ApiError(400, f"the request body is not valid UTF-8: {exc}") from None
    if not text.strip():
        raise ApiError(400, "the request body is empty; send a JSON object")
    try:
        body = json.loads(text, parse_int=_int, parse_float=_float, parse_constant=_constant,
                          object_pairs_hook=_object)
    except _Refused as exc:
        raise ApiError(400, f"the request body is refused: {exc}") from None
    except json.JSONDecodeError as exc:
        raise ApiError(400, f"the request body is not valid JSON: {exc}") from None
    except RecursionError:
        raise ApiError(400, f"the request body nests deeper than {MAX_DEPTH} levels") from None
    if not isinstance(body, dict):
        raise ApiError(400, f"the request body must be a JSON object, got {type(body).__name__}")
    _check_tree(body)
    return body
