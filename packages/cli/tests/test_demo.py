"""The demo: retrieval, accounting over two runs, and the whole command on the local server."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from tokenlean.audit import read_embedded
from tokenlean.cli._demo import _Collect, demo_report, retrieve, run_demo, run_session
from tokenlean.cli._demo_corpus import CORPUS, SESSION
from tokenlean.core import count_messages, count_tokens


def test_session_has_repeats_and_paraphrases() -> None:
    questions = [q for q, _ in SESSION]
    assert len(set(questions)) < len(questions)  # exact repeats
    assert any(rel.startswith("paraphrase") for _, rel in SESSION)
    assert 8 <= len(CORPUS) <= 12


def test_retrieval_finds_the_paragraph_with_the_answer() -> None:
    assert any("30 days" in p for p in retrieve("How long is the free trial of Nimbus Drive?"))
    assert any("50 GB" in p for p in retrieve("What is the largest file I can upload?"))
    assert any("PayPal" in p for p in retrieve("Which payment methods does Nimbus Drive accept?"))


@pytest.mark.skipif(importlib.util.find_spec("tokenlean.cache") is None
                    or importlib.util.find_spec("langchain_tokenlean") is None,
                    reason="needs tokenlean-cache and langchain-tokenlean")
def test_accounting_over_a_raw_and_a_lean_run() -> None:
    from langchain_core.language_models import FakeListChatModel

    from langchain_tokenlean import lean
    from tokenlean.cache import ResponseCache

    session = SESSION[:3]  # new, new, exact repeat of the first
    answers = ["The trial lasts 30 days.", "Files up to 50 GB.", "The trial lasts 30 days."]
    raw = run_session(FakeListChatModel(responses=answers), session)
    ledger = _Collect()
    # a fake model sets no temperature: a sampled call, which the cache serves only
    # when told to
    lean_llm = lean(FakeListChatModel(responses=answers[:2]), layers=[ResponseCache(
        semantic=False, cache_sampled=True)], ledger=ledger, model="gpt-4o")
    lean_calls = run_session(lean_llm, session, ledger=ledger)
    assert [c.cached for c in lean_calls] == [False, False, True]
    assert lean_calls[2].answer == answers[0]
    report = demo_report(raw, lean_calls, price_as="gpt-4o", layer_names=["cache"])
    layers = {la["layer"]: la for la in report["layers"]}
    first_prompt = count_messages(raw[0].messages, model="gpt-4o").tokens
    assert report["tokens_before"]["input"] == sum(
        count_messages(c.messages, model="gpt-4o").tokens for c in raw)
    assert layers["cache"]["saved_input_tokens"] == first_prompt
    assert layers["cache"]["saved_output_tokens"] == count_tokens(answers[0], model="gpt-4o").tokens
    assert layers["templates"]["status"] == "skipped"
    # the lines add up to the difference between the runs (same answers: no drift)
    total = sum(la["saved_usd"] for la in report["layers"])
    assert total == pytest.approx(report["cost_usd_before"] - report["cost_usd_after"], abs=1e-7)
    assert layers["answers"]["saved_usd"] == pytest.approx(0, abs=1e-9)
    assert report["cache"]["hits"] == 1 and report["answers"][2]["cached"] is True


@pytest.mark.server
@pytest.mark.skipif(importlib.util.find_spec("tokenlean.server") is None,
                    reason="needs tokenlean-server (the local model server)")
def test_demo_end_to_end_on_the_local_server(tmp_path: Path) -> None:
    from rich.console import Console

    out = tmp_path / "demo.html"
    console = Console(file=(tmp_path / "console.txt").open("w"), width=160)
    report = run_demo(questions=3, max_tokens=32, html=out, console=console)
    console.file.close()
    text = (tmp_path / "console.txt").read_text()
    assert "local server stopped" in text and "answers side by side" in text
    assert report["requests"] == 3
    assert all(a["raw"] for a in report["answers"])  # the local model answered every question
    # question 3 repeats question 1 word for word: the cache answers it (a cut answer is
    # never stored, so the first answer must have ended on its own)
    assert report["answers"][0]["lean_finish"] == "stop", report["answers"][0]
    assert report["answers"][2]["cached"] is True
    assert report["cost_usd_after"] < report["cost_usd_before"]
    assert read_embedded(out.read_text(encoding="utf-8"))["kind"] == "demo"


def test_demo_refuses_an_unknown_price_before_starting_anything() -> None:
    from typer.testing import CliRunner

    from tokenlean.cli import app

    result = CliRunner().invoke(app, ["demo", "--price-as", "no-such-model-xyz"])
    assert result.exit_code == 2
    assert "no price known" in result.output
