"""Every ``tokenlean bench`` command reports a bad data file the same way: one
``error: FILE:LINE ...`` line and exit status 2, never a traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tokenlean.cli import app

GOOD = {
    "pairs": {"id": "p1", "a": "How do I learn Python?", "b": "How can I learn Python?",
              "label": 1},
    "qa": {"id": "q1", "context": "Paris is the capital of France.",
           "question": "What is the capital of France?", "answers": ["Paris"]},
    "prompts": {"id": "r1", "messages": [{"role": "user", "content": "Say hi."}],
                "response": "Hi.", "model": "gpt-4o"},
    "templates": {"id": "t1", "name": "greeter", "template": "Act as a greeter.",
                  "type": "TEXT"},
}

# (command line before the file, shape the command reads, command line after it)
COMMANDS = [
    (["bench", "cache"], "pairs", []),
    (["bench", "compress"], "qa", []),
    (["bench", "budget"], "prompts", []),
    (["bench", "templates"], "templates", []),
    (["bench", "accounting"], "prompts", []),
    (["bench", "server"], "prompts", []),
    (["bench", "overhead", "--prompts"], "prompts", []),
]


def _file(tmp_path: Path, shape: str, second_line: str) -> Path:
    path = tmp_path / f"{shape}.jsonl"
    path.write_text(json.dumps(GOOD[shape]) + "\n\n" + second_line + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize(("before", "shape", "after"), COMMANDS,
                         ids=[" ".join(c[0]) for c in COMMANDS])
def test_a_line_that_is_not_json_is_named(before: list[str], shape: str, after: list[str],
                                          tmp_path: Path) -> None:
    path = _file(tmp_path, shape, "{not json")
    result = CliRunner().invoke(app, [*before, str(path), *after])
    assert result.exit_code == 2, result.output
    assert f"error: {path}:3 is not JSON" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize(("before", "shape", "after"), COMMANDS,
                         ids=[" ".join(c[0]) for c in COMMANDS])
def test_a_row_of_another_shape_is_named(before: list[str], shape: str, after: list[str],
                                         tmp_path: Path) -> None:
    other = "qa" if shape != "qa" else "pairs"
    path = _file(tmp_path, shape, json.dumps(GOOD[other]))
    result = CliRunner().invoke(app, [*before, str(path), *after])
    assert result.exit_code == 2, result.output
    assert f"error: {path}:3 has no" in result.output
    assert f"({shape} shape:" in result.output


def test_templates_cache_checks_both_files(tmp_path: Path) -> None:
    prompts = _file(tmp_path, "prompts", json.dumps(GOOD["prompts"]))
    templates = tmp_path / "t.jsonl"
    templates.write_text(json.dumps({"id": "x", "prompt": "no template key"}) + "\n")
    result = CliRunner().invoke(app, ["bench", "templates-cache", str(prompts),
                                      "--templates", str(templates)])
    assert result.exit_code == 2, result.output
    assert f"error: {templates}:1 has no 'template'" in result.output


def test_a_message_with_an_unknown_role_names_its_line(tmp_path: Path) -> None:
    bad = dict(GOOD["prompts"], messages=[{"role": "narrator", "content": "x"}])
    path = _file(tmp_path, "prompts", json.dumps(bad))
    result = CliRunner().invoke(app, ["bench", "accounting", str(path)])
    assert result.exit_code == 2, result.output
    assert f"error: {path}:3: message role 'narrator'" in result.output
