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


def test_summary_overlap_is_content_word_recall() -> None:
    from tokenlean.bench.compress import summary_overlap

    reference = "The committee discussed the budget and the new school buildings."
    assert summary_overlap(reference, reference) == 1.0
    assert summary_overlap(reference, "nothing related here") == 0.0
    half = summary_overlap(reference, "committee discussed budgets")  # 3 of 6 content words
    assert half == pytest.approx(0.5)


def test_bench_reports_summary_overlap_for_summary_answers(tmp_path, context) -> None:
    path = tmp_path / "meetings.jsonl"
    path.write_text(json.dumps({"id": "m", "context": context, "question": "Summarise Bach.",
                                "answers": ["Bach, a German Baroque composer, was born in "
                                            "Eisenach and died in Leipzig."]}) + "\n")
    out = CliRunner().invoke(app, ["bench", "compress", str(path), "--ratio", "4"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.stdout)
    assert 0 < data["summary_overlap"] <= data["summary_overlap_full"] <= 1
    assert data["summary_overlap_kept"] == pytest.approx(
        data["summary_overlap"] / data["summary_overlap_full"], abs=1e-3)


def test_direct_comparison_is_for_llmlingua_methods_only(qa_file) -> None:
    out = CliRunner().invoke(app, ["bench", "compress", str(qa_file), "--direct"])
    assert out.exit_code == 2
    assert "--direct compares the LLMLingua methods only" in out.output
