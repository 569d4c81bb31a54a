"""The audit replay: log shapes, sequential combination of layers, honest accounting."""

from __future__ import annotations

import json
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tokenlean.audit import AuditOptions, audit_log, context_spans, read_log
from tokenlean.cli import app
from tokenlean.core import (
    CallRecord,
    InvalidRequestError,
    LayerReport,
    Message,
    Usage,
    count_messages,
    count_tokens,
)

SYSTEM = ("You are a very helpful assistant.   Please  make sure to always answer the "
          "question.\n\n\nPlease always be polite and kind. Please make sure to always answer "
          "the question.")
CONTEXT = " ".join(
    f"Paragraph {i}: The harbour town of Vell{i} exports {i * 3} tonnes of salt each year, "
    "and its lighthouse was rebuilt after a storm damaged the old tower." for i in range(12))


def _call(question: str, answer: str, *, system: str = SYSTEM, finish: str = "stop",
          max_tokens: int | None = None, context: bool = True) -> dict:
    user = f"Context:\n{CONTEXT}\n\nQuestion: {question}" if context else question
    body: dict = {"model": "gpt-4o-mini", "messages": [
        {"role": "system", "content": system}, {"role": "user", "content": user}]}
    if max_tokens:
        body["max_tokens"] = max_tokens
    return {"request": body, "response": {
        "object": "chat.completion", "model": "gpt-4o-mini",
        "choices": [{"index": 0, "finish_reason": finish,
                     "message": {"role": "assistant", "content": answer}}],
        "usage": {"prompt_tokens": 100, "completion_tokens": 10, "total_tokens": 110}}}


RUNAWAY = "Step: keep going with the list of items and more items. " * 300


def _write(tmp_path: Path, rows: list[dict], name: str = "log.jsonl") -> Path:
    path = tmp_path / name
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture
def log(tmp_path: Path) -> Path:
    return _write(tmp_path, [
        _call("How many tonnes of salt does Vell3 export?", "Vell3 exports 9 tonnes."),
        _call("How many tonnes of salt does Vell3 export?", "Vell3 exports 9 tonnes."),
        _call("List every item you can think of.", RUNAWAY, finish="length", max_tokens=4096,
              context=False),
        _call("Why was the lighthouse rebuilt?", "A storm damaged the old tower."),
    ])


def test_layers_combine_sequentially_and_add_up(log: Path) -> None:
    report = audit_log(log, options=AuditOptions(layers=("templates", "budget", "cache")))
    layers = {la["layer"]: la for la in report["layers"]}
    assert report["requests"] == 4
    # per-layer savings add up to the total: layers act on what the previous ones left
    saved = sum(la["saved_usd"] for la in report["layers"])
    assert saved == pytest.approx(report["cost_usd_before"] - report["cost_usd_after"], abs=1e-5)
    assert report["saved_ratio"] == pytest.approx(
        1 - report["cost_usd_after"] / report["cost_usd_before"], abs=1e-3)
    assert report["cost_per_mtok_after"] < report["cost_per_mtok_before"]
    # both cost-per-1M numbers share the original traffic's tokens as denominator
    base = report["tokens_before"]["input"] + report["tokens_before"]["output"]
    assert report["cost_per_mtok_before"] == pytest.approx(
        report["cost_usd_before"] * 1e6 / base, rel=1e-3)
    # templates rewrote the repeated system prompt (3 requests carry it)
    templates = layers["templates"]
    assert templates["status"] == "ran"
    first = json.loads(log.read_text().splitlines()[0])
    tokens_first = count_messages(first["request"]["messages"], model="gpt-4o").tokens
    per_request_template_saving = templates["saved_input_tokens"] // templates["requests_changed"]
    # the exact repeat is a cache hit; it saves what templates left of the call, not the original
    cache = layers["cache"]
    assert cache["requests_changed"] == 1
    assert report["cache"]["hits"] == 1 and report["cache"]["lookups"] == 4
    assert cache["saved_input_tokens"] == tokens_first - per_request_template_saving
    assert cache["saved_output_tokens"] == count_tokens("Vell3 exports 9 tonnes.",
                                                        model="gpt-4o").tokens
    assert report["cache"]["examples"][0]["kind"] == "exact"


def test_budget_counts_only_runaway_answers(log: Path) -> None:
    report = audit_log(log, options=AuditOptions(layers=("budget",)))
    budget = next(la for la in report["layers"] if la["layer"] == "budget")
    points = report["budget"]["points"]
    assert len(points) == 4
    cap, actual = points[2]  # the runaway answer, cut at 4096 by the logged request
    assert actual == count_tokens(RUNAWAY, model="gpt-4o").tokens
    assert cap < actual
    # answers that ended on their own save nothing even when the cap is below them
    assert budget["requests_changed"] == 1
    assert budget["saved_output_tokens"] == actual - cap
    assert budget["saved_input_tokens"] == 0
    covered = sum(1 for c, a in points if a <= c) / 4
    assert budget["quality"]["coverage"] == pytest.approx(covered)


def test_off_and_skipped_layers_are_reported_with_a_note(log: Path) -> None:
    report = audit_log(log, options=AuditOptions(layers=("budget",)))
    layers = {la["layer"]: la for la in report["layers"]}
    assert layers["templates"]["status"] == "off"
    assert layers["cache"]["status"] == "off"
    assert layers["templates"]["saved_usd"] == 0


def test_ledger_export_reports_recorded_savings(tmp_path: Path) -> None:
    records = [
        CallRecord(request_id="a", model="gpt-4o", usage=Usage(input_tokens=800, output_tokens=200),
                   layers=(LayerReport(layer="compress", saved_input_tokens=1200,
                                       quality={"retention": 0.95}),)),
        CallRecord(request_id="b", model="gpt-4o", usage=Usage(), cached=True, cache_score=0.97,
                   layers=(LayerReport(layer="cache", saved_input_tokens=900,
                                       saved_output_tokens=150, saved_usd=Decimal("0.003"),
                                       quality={"similarity": 0.97}),)),
    ]
    path = _write(tmp_path, [r.to_dict() for r in records], "ledger.jsonl")
    report = audit_log(path)
    assert report["source"]["mode"] == "recorded (ledger)"
    assert report["tokens_before"] == {"input": 800 + 1200 + 900, "output": 200 + 150}
    assert report["tokens_after"] == {"input": 800, "output": 200}
    layers = {la["layer"]: la for la in report["layers"]}
    assert layers["compress"]["saved_input_tokens"] == 1200
    assert layers["compress"]["quality"]["retention"] == pytest.approx(0.95)
    assert layers["cache"]["saved_output_tokens"] == 150


def test_bad_logs_fail_with_the_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"messages": [{"role": "user", "content": "hi"}], "response": "yo"}\n'
                   "not json\n")
    with pytest.raises(InvalidRequestError, match=r"bad.jsonl:2"):
        list(read_log(bad))
    bad.write_text('{"something": 1}\n')
    with pytest.raises(InvalidRequestError, match=r"bad.jsonl:1: not a recognised log line; "
                                                  r"expected \{'request'"):
        list(read_log(bad))
    with pytest.raises(InvalidRequestError, match="cannot read"):
        list(read_log(tmp_path / "missing.jsonl"))


def test_context_spans_pick_only_marked_context() -> None:
    user = Message(role="user", content=f"Context:\n{CONTEXT}\n\nQuestion: why?")
    spans = context_spans(user)
    assert len(spans) == 1
    a, b = spans[0]
    assert user.text[a:b].strip().startswith("Paragraph 0") and "Question" not in user.text[a:b]
    assert context_spans(Message(role="user", content=CONTEXT)) == []  # no marker: the user's own
    assert context_spans(Message(role="tool", content=CONTEXT, tool_call_id="t")) != []
    assert context_spans(Message(role="user", content="Context: short. Question: x")) == []


def test_cli_prints_the_acceptance_keys(log: Path, tmp_path: Path) -> None:
    out_html = tmp_path / "audit.html"
    result = CliRunner().invoke(app, ["audit", str(log), "--json", "--layers", "budget,cache",
                                      "--html", str(out_html)])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout.strip().splitlines()[-1])
    for key in ("cost_per_mtok_before", "cost_per_mtok_after", "saved_ratio", "layers"):
        assert key in report
    assert all("quality" in la for la in report["layers"])
    assert out_html.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    bad = CliRunner().invoke(app, ["audit", str(tmp_path / "nope.jsonl")])
    assert bad.exit_code == 2 and "no such file" in bad.output


def test_arena_hard_prompts_shape(shared_data: Callable[[str], Path]) -> None:
    report = audit_log(shared_data("prompts_arena_hard_v01.jsonl"), limit=12,
                       options=AuditOptions(layers=("budget", "cache")))
    assert report["requests"] == 12
    assert report["source"]["format"] == "prompts"
    assert report["tokens_before"]["output"] > report["tokens_before"]["input"] > 0
