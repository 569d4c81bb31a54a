from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from tokenlean.cli import app


@pytest.fixture
def qa_file(tmp_path, context):
    CONTEXT = context
    path = tmp_path / "qa.jsonl"
    rows = [
        {"id": "1", "context": CONTEXT, "question": "When was Bach born?", "answers": ["1685"]},
        {"id": "2", "context": CONTEXT, "question": "Who designed the Eiffel Tower?",
         "answers": ["Gustave  EIFFEL"]},
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def test_bench_prints_one_json_object(qa_file) -> None:
    out = CliRunner().invoke(app, ["bench", "compress", "--qa", str(qa_file), "--ratio", "5"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.stdout)
    assert data["n"] == 2 and data["method"] == "tokenlean"
    assert data["answer_retention"] == 1.0
    assert data["ratio_achieved"] >= 5
    assert data["tokens_per_s"] > 0


def test_bench_random_method_and_positional_path(qa_file) -> None:
    out = CliRunner().invoke(app, ["bench", "compress", str(qa_file), "--ratio", "10",
                                   "--method", "random", "--limit", "1"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.stdout)
    assert data["n"] == 1 and data["method"] == "random" and data["ratio_achieved"] >= 10


def test_bench_rejects_bad_files(tmp_path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": 1}\n')
    out = CliRunner().invoke(app, ["bench", "compress", "--qa", str(bad)])
    assert out.exit_code == 2
    out = CliRunner().invoke(app, ["bench", "compress", "--qa", str(bad), "--ratio", "0.5"])
    assert out.exit_code == 2
