"""The demo: retrieval, accounting over two runs, and the whole command on the local server."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from typing import Any

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


# ---- tokenlean demo --shape NAME: the argument errors (the live run itself is the traffic
# bench's, tested there) ----

needs_bench = pytest.mark.skipif(importlib.util.find_spec("tokenlean.bench") is None,
                                 reason="needs tokenlean-bench (the traffic suite)")


def _demo(*args: str, env: dict[str, str] | None = None) -> Any:
    from typer.testing import CliRunner

    from tokenlean.cli import app

    result = CliRunner().invoke(app, ["demo", *args], env={"COLUMNS": "400", **(env or {})})
    # rich wraps the error box: read the words without its borders and line breaks
    result.flat = re.sub(r"[\s\u2502]+", "", result.output)
    return result


@needs_bench
def test_demo_shape_refuses_an_unknown_shape(tmp_path: Path) -> None:
    result = _demo("--shape", "poetry", "--data-dir", str(tmp_path))
    assert result.exit_code == 2, result.output
    assert "poetry" in result.flat and "multi-turn" in result.flat
    assert "Traceback" not in result.output


@needs_bench
def test_demo_shape_names_a_missing_data_folder(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-data"
    result = _demo("--shape", "rag", "--data-dir", str(missing))
    assert result.exit_code == 2 and str(missing).replace(" ", "") in result.flat
    assert "TOKENLEAN_DATA_DIR" in result.flat and "Traceback" not in result.output
    # the env var is the default folder
    result = _demo("--shape", "chat", env={"TOKENLEAN_DATA_DIR": str(missing)})
    assert result.exit_code == 2 and str(missing).replace(" ", "") in result.flat


@needs_bench
def test_demo_shape_names_a_missing_file(tmp_path: Path) -> None:
    result = _demo("--shape", "agent", "--data-dir", str(tmp_path))  # an empty folder
    assert result.exit_code == 2 and "qa_qmsum_dev.jsonl" in result.flat
    assert "Traceback" not in result.output


def test_demo_shape_refuses_zero_calls(tmp_path: Path) -> None:
    result = _demo("--shape", "rag", "--calls", "0", "--data-dir", str(tmp_path))
    assert result.exit_code == 2 and "--calls" in result.flat


def test_default_data_dir_reads_the_env_var(monkeypatch: pytest.MonkeyPatch,
                                           tmp_path: Path) -> None:
    from tokenlean.cli._demo import DATA_DIR_ENV, default_data_dir

    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    assert default_data_dir() == Path("..") / "shared" / "data"
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path))
    assert default_data_dir() == tmp_path


def test_shape_rows_show_each_shapes_quality_figure() -> None:
    from tokenlean.cli._demo import shape_rows

    common = {"input_tokens_raw": 839.0, "input_tokens_lean": 208.0, "output_tokens_raw": 40.0,
              "output_tokens_lean": 35.5, "usd_per_call_raw": 0.0025, "usd_per_call_lean": 0.0009,
              "tokens_counted_as": "gpt-4o", "calls": 4, "scored_calls": 4, "cache_hits": 0}
    rag = {r[0]: r[1:] for r in shape_rows({**common, "shape": "rag", "containment_raw": 0.25,
                                            "containment_lean": 0.5, "f1_raw": 0.1,
                                            "f1_lean": 0.2})}
    assert rag["input tokens / call"] == ("839", "208")
    assert rag["answer containment (gold)"] == ("0.25", "0.50")
    assert rag["$ / call (priced as gpt-4o)"] == ("0.002500", "0.000900")
    support = {r[0]: r[1:] for r in shape_rows(
        {**common, "shape": "support", "cache_hits": 2, "similarity_to_raw": 0.9,
         "support_cache": {"repeats": 3, "repeats_served_share": 2 / 3, "false_hits": 0,
                           "served": 2}})}
    assert support["repeats served by the cache"] == ("no cache", "67% of 3")
    assert support["false hits (served non-repeats)"] == ("no cache", "0 of 2 served")
    assert support["answered by the cache"] == ("0", "2")
    agent = {r[0]: r[1:] for r in shape_rows(
        {**common, "shape": "agent", "similarity_to_raw": 0.812, "over_context": 3,
         "over_context_raw": 3, "over_context_lean": 0, "scored_calls": 1})}
    assert agent["similarity to the raw answer (MiniLM)"] == ("1.000", "0.812")
    assert agent["over the model's context (not scored)"] == ("3", "0")
    assert agent["calls scored / asked"] == ("1 / 4", "1 / 4")
