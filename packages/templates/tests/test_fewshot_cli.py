import json

import pytest
from typer.testing import CliRunner

from tokenlean.cli import app
from tokenlean.core import ConfigError, InvalidRequestError
from tokenlean.templates import select_examples

EXAMPLES = [
    "Q: How do I reverse a list in Python? A: Use lst[::-1] or lst.reverse().",
    "Q: What is the capital of France? A: Paris.",
    "Q: How do I sort a dict by value in Python? A: sorted(d.items(), key=lambda kv: kv[1]).",
    "Q: Who wrote Hamlet? A: William Shakespeare.",
]


def test_select_most_relevant_under_budget():
    s = select_examples(EXAMPLES, "How do I sort a list in Python?", k=2)
    assert s.indices == (0, 2)  # the two Python examples, original order
    assert s.tokens < s.tokens_all and s.saved_tokens == s.tokens_all - s.tokens
    tight = select_examples(EXAMPLES, "How do I sort a list in Python?", k=2, budget_tokens=25)
    assert tight.tokens <= 25 and len(tight.indices) == 1


def test_select_errors():
    with pytest.raises(ConfigError):
        select_examples(EXAMPLES, "q", k=0)
    with pytest.raises(InvalidRequestError):
        select_examples("abc", "q")
    assert select_examples([], "q").examples == ()


def test_lint_cli_text_and_jsonl(tmp_path):
    runner = CliRunner()
    text = tmp_path / "t.txt"
    text.write_text("I want you to act as a poet. Please write about {topic}.", encoding="utf-8")
    out = tmp_path / "lean.txt"
    result = runner.invoke(app, ["templates", "lint", str(text), "--no-similarity",
                                 "--write", str(out)])
    assert result.exit_code == 0, result.output
    assert "[-I want you to act-]{+Act+}" in result.output
    assert out.read_text(encoding="utf-8") == "Act as a poet. Write about {topic}."
    rows = tmp_path / "t.jsonl"
    rows.write_text(json.dumps({"id": "a", "template": "Please   be brief."}) + "\n",
                    encoding="utf-8")
    result = runner.invoke(app, ["templates", "lint", str(rows), "--no-similarity", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output.strip().splitlines()[0])
    assert data["id"] == "a" and data["tokens_after"] < data["tokens_before"]
