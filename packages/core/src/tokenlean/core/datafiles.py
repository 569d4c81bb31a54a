"""Read the JSONL data files every ``tokenlean bench`` command takes.

One reader for all of them, so a bad file gets the same clear error whichever
command reads it: the path, the line number and what the line lacks, as an
:class:`~tokenlean.core.InvalidRequestError` (the CLI prints it as
``error: ...`` and exits 2). The documented shapes:

* ``pairs``: ``{"id", "a", "b", "label"}`` -- label 1: same meaning;
* ``qa``: ``{"id", "context", "question", "answers": [str]}``;
* ``prompts``: ``{"id", "messages": [{"role", "content"}], "response", ...}``
  (``response`` may be missing where a command does not need it);
* ``templates``: ``{"id", "name", "template", "type"}``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .errors import InvalidRequestError
from .types import Message

__all__ = ["SHAPES", "read_jsonl", "read_prompts"]

# what each shape must have, and of which type (str, list or "label": 0/1)
SHAPES: dict[str, dict[str, type | str]] = {
    "pairs": {"id": "any", "a": str, "b": str, "label": "label"},
    "qa": {"context": str, "question": str, "answers": list},
    "prompts": {"messages": list},
    "templates": {"template": str},
}
_DOCUMENTED = {
    "pairs": '{"id", "a", "b", "label"}',
    "qa": '{"id", "context", "question", "answers": [str]}',
    "prompts": '{"id", "messages": [{"role", "content"}], "response"}',
    "templates": '{"id", "name", "template", "type"}',
}


def _problem(row: Any, shape: str) -> str | None:
    """What ``row`` lacks to be a row of ``shape`` (None: nothing)."""
    if not isinstance(row, dict):
        return f"is a JSON {type(row).__name__}, not an object"
    for key, kind in SHAPES[shape].items():
        if key not in row:
            return f"has no {key!r}"
        value = row[key]
        if isinstance(kind, str):  # "label" or "any"
            if kind == "label" and (isinstance(value, bool) or value not in (0, 1)):
                return f"has label {value!r} (expected 0 or 1)"
        elif not isinstance(value, kind):
            return f"has a {type(value).__name__} {key!r} (expected {kind.__name__})"
    return None


def read_jsonl(path: str | Path, shape: str | None = None) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(line number, row)`` for each non-blank line of a JSONL file, in order.

    With ``shape`` (a key of :data:`SHAPES`), each row is checked to have that
    shape's fields. Any problem -- a file that cannot be read, a line that is
    not JSON, a row of the wrong shape -- raises ``InvalidRequestError`` naming
    the file and line. Lazy: a caller that stops early reads no further.
    """
    if shape is not None and shape not in SHAPES:
        raise ValueError(f"unknown data shape {shape!r}; one of {sorted(SHAPES)}")
    p = Path(path)
    try:
        fh = p.open("rb")  # decoded line by line, so an encoding error names its line
    except OSError as exc:
        raise InvalidRequestError(f"cannot read {p}: {exc.strerror or exc}") from None
    with fh:
        for number, raw in enumerate(fh, 1):
            try:
                line = raw.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError as exc:
                raise InvalidRequestError(
                    f"{p}:{number} is not UTF-8 text ({exc.reason})") from None
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InvalidRequestError(f"{p}:{number} is not JSON ({exc})") from None
            problem = _problem(row, shape) if shape is not None else (
                None if isinstance(row, dict) else "is not a JSON object")
            if problem is not None:
                expected = f" ({shape} shape: {_DOCUMENTED[shape]})" if shape else ""
                raise InvalidRequestError(f"{p}:{number} {problem}{expected}")
            yield number, row

def read_prompts(path: str | Path) -> Iterator[tuple[dict[str, Any], tuple[Message, ...]]]:
    """``(row, its messages as Message objects)`` for each row of a prompts file;
    a message tokenlean cannot take (unknown role, bad content) names its line."""
    for number, row in read_jsonl(path, "prompts"):
        try:
            messages = tuple(Message.from_openai(m) for m in row["messages"])
        except InvalidRequestError as exc:
            raise InvalidRequestError(f"{path}:{number}: {exc}") from None
        yield row, messages
