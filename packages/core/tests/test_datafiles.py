"""read_jsonl / read_prompts: the one reader behind every bench command's data file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tokenlean.core import InvalidRequestError, Message, read_jsonl, read_prompts

PAIR = {"id": 7, "a": "x", "b": "y", "label": 0}


def _write(tmp_path: Path, *lines: str) -> Path:
    path = tmp_path / "data.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_rows_come_with_their_line_numbers_blank_lines_skipped(tmp_path: Path) -> None:
    path = _write(tmp_path, json.dumps(PAIR), "", "   ", json.dumps(dict(PAIR, label=1)))
    assert [(n, r["label"]) for n, r in read_jsonl(path, "pairs")] == [(1, 0), (4, 1)]


def test_the_reader_is_lazy(tmp_path: Path) -> None:
    path = _write(tmp_path, json.dumps(PAIR), "{broken")
    rows = read_jsonl(path, "pairs")
    assert next(rows)[1] == PAIR  # the broken second line is not read yet
    with pytest.raises(InvalidRequestError, match=r":2 is not JSON"):
        next(rows)


@pytest.mark.parametrize(("row", "message"), [
    ({"id": 1, "a": "x", "b": "y"}, r":1 has no 'label' \(pairs shape: \{\"id\", \"a\""),
    (dict(PAIR, label=2), r"has label 2 \(expected 0 or 1\)"),
    (dict(PAIR, label=True), r"has label True"),
    (dict(PAIR, a=["x"]), r"has a list 'a' \(expected str\)"),
    ([1, 2], r"is a JSON list, not an object"),
])
def test_a_row_of_the_wrong_shape_is_named(tmp_path: Path, row: object, message: str) -> None:
    path = _write(tmp_path, json.dumps(row))
    with pytest.raises(InvalidRequestError, match=message):
        list(read_jsonl(path, "pairs"))


def test_without_a_shape_any_object_is_a_row(tmp_path: Path) -> None:
    path = _write(tmp_path, '{"text": "free form"}', '"a bare string"')
    rows = read_jsonl(path)
    assert next(rows) == (1, {"text": "free form"})
    with pytest.raises(InvalidRequestError, match=r":2 is not a JSON object"):
        next(rows)


def test_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(InvalidRequestError, match="cannot read .*missing.jsonl"):
        list(read_jsonl(tmp_path / "missing.jsonl"))
    latin = tmp_path / "latin1.jsonl"
    latin.write_bytes(json.dumps(PAIR).encode() + b'\n{"a": "caf\xe9"}\n')
    with pytest.raises(InvalidRequestError, match=r"latin1.jsonl:2 is not UTF-8"):
        list(read_jsonl(latin))
    with pytest.raises(ValueError, match="unknown data shape 'pair'"):
        list(read_jsonl(latin, "pair"))


def test_read_prompts_builds_messages_and_names_a_bad_one(tmp_path: Path) -> None:
    good = {"messages": [{"role": "system", "content": "Be brief."},
                         {"role": "user", "content": "Hi"}], "response": "Hello"}
    bad = {"messages": [{"role": "user", "content": {"not": "a string"}}]}
    path = _write(tmp_path, json.dumps(good), json.dumps(bad))
    rows = read_prompts(path)
    row, messages = next(rows)
    assert row["response"] == "Hello"
    assert messages == (Message(role="system", content="Be brief."),
                        Message(role="user", content="Hi"))
    with pytest.raises(InvalidRequestError, match=r"data.jsonl:2: message content must be"):
        next(rows)
