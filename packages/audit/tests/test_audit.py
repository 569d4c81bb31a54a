"""The audit replays the log through the pipeline lean() would build: its layers, its
order, its ledger rows; plus the log shapes and honest accounting."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from decimal import Decimal
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tokenlean.audit import AuditOptions, audit_log, read_log
from tokenlean.cli import app
from tokenlean.core import (
    CallRecord,
    ConfigError,
    InvalidRequestError,
    LayerReport,
    Usage,
    count_messages,
    count_tokens,
)
from tokenlean.core.presets import LAYER_ORDER, build_layers
from tokenlean.core.settings import build_request

SYSTEM = ("You are a very helpful assistant.   Please  make sure to always answer the "
          "question.\n\n\nPlease always be polite and kind. Please make sure to always answer "
          "the question.")
CONTEXT = " ".join(
    f"Paragraph {i}: The harbour town of Vell{i} exports {i * 3} tonnes of salt each year, "
    "and its lighthouse was rebuilt after a storm damaged the old tower." for i in range(12))


def _call(question: str, answer: str, *, system: str = SYSTEM, finish: str = "stop",
          max_tokens: int | None = None, context: bool = True,
          temperature: float | None = 0.0) -> dict:
    user = f"Context:\n{CONTEXT}\n\nQuestion: {question}" if context else question
    body: dict = {"model": "gpt-4o-mini", "messages": [
        {"role": "system", "content": system}, {"role": "user", "content": user}]}
    if max_tokens:
        body["max_tokens"] = max_tokens
    if temperature is not None:
        body["temperature"] = temperature
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
        # a runaway: the app set no cap, the provider's own one cut it
        _call("List every item you can think of.", RUNAWAY, finish="length", context=False),
        _call("Why was the lighthouse rebuilt?", "A storm damaged the old tower."),
    ])


def _layers(report: dict) -> dict[str, dict]:
    return {la["layer"]: la for la in report["layers"]}


def test_replay_builds_the_layers_lean_builds_in_lean_order(log: Path) -> None:
    report = audit_log(log)  # lean()'s default: preset "safe"
    assert report["preset"] == "safe"
    assert report["layer_order"] == [layer.name for layer in build_layers(preset="safe")]
    assert report["layer_order"][0] == "cache"  # lean() looks the cache up first
    # every built-in layer has a row, in pipeline order; what the preset leaves off says so
    assert [la["layer"] for la in report["layers"]] == list(LAYER_ORDER)
    layers = _layers(report)
    assert layers["compress"]["status"] == "off"
    assert layers["compress"]["note"] == "off in preset 'safe'"
    replayed = audit_log(log, options=AuditOptions(preset="max-savings",
                                                   choices={"compress": False}))
    assert replayed["preset"] == "max-savings" and replayed["choices"] == {"compress": False}
    assert replayed["layer_order"] == [
        layer.name for layer in build_layers(preset="max-savings", compress=False)]


def test_a_cache_hit_saves_the_whole_call_as_the_app_sent_it(log: Path) -> None:
    report = audit_log(log, options=AuditOptions(preset="safe"))
    layers = _layers(report)
    first = json.loads(log.read_text().splitlines()[0])
    prompt = count_messages(first["request"]["messages"], model="gpt-4o").tokens
    # the cache runs first: the repeat is a hit on the prompt the app sent, before
    # templates touched it, and templates only ran on the three calls that missed
    cache = layers["cache"]
    assert report["cache"]["hits"] == 1 and report["cache"]["lookups"] == 4
    assert cache["requests_changed"] == 1
    assert cache["saved_input_tokens"] == prompt
    assert cache["saved_output_tokens"] == count_tokens("Vell3 exports 9 tonnes.",
                                                        model="gpt-4o").tokens
    assert layers["templates"]["requests_changed"] == 3
    assert report["cache"]["examples"][0]["kind"] == "exact"
    # per-layer savings add up to the total
    saved = sum(la["saved_usd"] for la in report["layers"])
    assert saved == pytest.approx(report["cost_usd_before"] - report["cost_usd_after"], abs=1e-5)
    assert report["saved_ratio"] == pytest.approx(
        1 - report["cost_usd_after"] / report["cost_usd_before"], abs=1e-3)
    # both cost-per-1M numbers share the original traffic's tokens as denominator
    base = report["tokens_before"]["input"] + report["tokens_before"]["output"]
    assert report["cost_per_mtok_before"] == pytest.approx(
        report["cost_usd_before"] * 1e6 / base, rel=1e-3)


def test_sampled_calls_are_not_served_from_the_cache_unless_lean_would(tmp_path: Path) -> None:
    same = _call("Tell me a joke.", "A joke.", context=False, temperature=None)
    path = _write(tmp_path, [same, same])
    report = audit_log(path)
    assert report["cache"]["hits"] == 0  # temperature unset: a sampled call
    assert report["cache"]["not_stored"] == {"sampled": 2}  # and the report says why
    assert any(note.startswith("The cache stored 0 of 2 answers: sampled 2 (")
               for note in report["notes"])
    opted_in = audit_log(path, options=AuditOptions(cache_sampled=True))
    assert opted_in["cache"]["hits"] == 1 and opted_in["cache_sampled"] is True


def test_the_false_hit_bound_is_lean_s(tmp_path: Path) -> None:
    """``max_false_hit_rate`` reaches the cache lean() builds, and is refused where lean()
    would refuse it (no semantic cache)."""
    from tokenlean.core import ConfigError

    path = _write(tmp_path, [_call("What is the capital of France?", "Paris.")])
    report = audit_log(path, options=AuditOptions(preset="max-savings",
                                                  max_false_hit_rate=0.02))
    assert report["max_false_hit_rate"] == 0.02 and report["requests"] == 1
    assert audit_log(path, options=AuditOptions(preset="max-savings"))[
        "max_false_hit_rate"] is None
    with pytest.raises(ConfigError, match="max_false_hit_rate"):
        audit_log(path, options=AuditOptions(max_false_hit_rate=0.02))  # safe: exact cache


def test_a_lowered_cap_cuts_the_logged_answer_where_the_model_would_stop(log: Path) -> None:
    # budget="predict" calibrates per (model, route) and predicts nothing until it has
    # warmed up, so the cut is checked with a layer that predicts from the first call
    from tokenlean.budget import BudgetLayer, LengthPredictor

    layer = BudgetLayer(predictor=LengthPredictor.default())
    report = audit_log(log, options=AuditOptions(preset="off", choices={"budget": layer}))
    budget = _layers(report)["budget"]
    points = report["budget"]["points"]
    assert len(points) == 4
    cap, actual = points[2]  # the runaway answer
    assert actual == count_tokens(RUNAWAY, model="gpt-4o").tokens
    assert cap < actual
    assert budget["requests_changed"] == 1
    assert budget["saved_output_tokens"] == actual - cap
    assert report["tokens_after"]["output"] == report["tokens_before"]["output"] - (actual - cap)
    covered = sum(1 for c, a in points if a <= c) / 4
    assert budget["quality"]["coverage"] == pytest.approx(covered)


def test_a_cap_the_app_set_is_never_lowered_by_the_replay(tmp_path: Path) -> None:
    path = _write(tmp_path, [_call("List every item.", RUNAWAY, finish="length",
                                   max_tokens=4096, context=False)])
    report = audit_log(path, options=AuditOptions(preset="off", choices={"budget": "predict"}))
    assert _layers(report)["budget"]["saved_output_tokens"] == 0
    assert report["tokens_after"] == report["tokens_before"]


def test_off_and_custom_layers_are_reported(log: Path) -> None:
    report = audit_log(log, options=AuditOptions(preset="off"))
    assert report["layer_order"] == []
    assert {la["status"] for la in report["layers"]} == {"off"}
    assert report["cost_usd_after"] == report["cost_usd_before"]
    custom = audit_log(log, options=AuditOptions(layers=build_layers(preset="off",
                                                                     cache="exact")))
    assert custom["preset"] == "custom layers" and custom["layer_order"] == ["cache"]
    assert _layers(custom)["templates"]["note"] == "not among the layers given"
    with pytest.raises(ConfigError, match="unknown preset"):
        audit_log(log, options=AuditOptions(preset="cheap"))
    with pytest.raises(ConfigError, match="no price known"):
        audit_log(log, options=AuditOptions(price_as="no-such-model-xyz"))


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


def test_a_logged_call_becomes_the_request_lean_would_build(tmp_path: Path) -> None:
    """The log is read with core's one request mapping (build_request), the one lean()
    uses: the lowest output cap, no transport settings, tool_choice the OpenAI way."""
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}],
            "max_tokens": 50, "max_completion_tokens": 80, "stream": True,
            "temperature": 0, "tools": tools, "tool_choice": "any"}
    path = _write(tmp_path, [{"request": body, "response": "yo"}])
    request = next(iter(read_log(path))).request
    assert request is not None
    built = build_request(request.messages, {k: v for k, v in body.items() if k != "messages"})
    assert replace(request, request_id="") == replace(built, request_id="")
    assert request.max_tokens == 50 and request.params["tool_choice"] == "required"
    assert "stream" not in request.params


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


def test_cli_prints_the_acceptance_keys(log: Path, tmp_path: Path) -> None:
    out_html = tmp_path / "audit.html"
    result = CliRunner().invoke(app, ["audit", str(log), "--json", "--preset", "off",
                                      "--budget", "predict", "--cache", "exact",
                                      "--html", str(out_html)])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout.strip().splitlines()[-1])
    for key in ("cost_per_mtok_before", "cost_per_mtok_after", "saved_ratio", "layers"):
        assert key in report
    assert report["preset"] == "off" and report["layer_order"] == ["cache", "budget"]
    assert all("quality" in la for la in report["layers"])
    assert out_html.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    bad = CliRunner().invoke(app, ["audit", str(tmp_path / "nope.jsonl")])
    assert bad.exit_code == 2 and "no such file" in bad.output


def test_cli_table_names_the_preset_it_replayed(log: Path) -> None:
    result = CliRunner().invoke(app, ["audit", str(log), "--preset", "safe", "--templates",
                                      "off"])
    assert result.exit_code == 0, result.output
    assert "preset 'safe'" in result.stdout and "templates=off" in result.stdout
    bad = CliRunner().invoke(app, ["audit", str(log), "--cache", "fuzzy"])
    assert bad.exit_code == 2 and "cache= takes" in bad.output


def test_arena_hard_prompts_shape(shared_data: Callable[[str], Path]) -> None:
    report = audit_log(shared_data("prompts_arena_hard_v01.jsonl"), limit=12,
                       options=AuditOptions(preset="off", choices={"budget": "predict",
                                                                   "cache": "exact"}))
    assert report["requests"] == 12
    assert report["source"]["format"] == "prompts"
    assert report["tokens_before"]["output"] > report["tokens_before"]["input"] > 0


def test_the_replay_learns_nothing_into_the_apps_live_budget_store(log: Path) -> None:
    """budget="predict" calibrates in the ledger's SQLite file; an offline audit
    replays on a fresh store and leaves the app's file as it was."""
    import os
    import sqlite3

    live = Path(os.environ["TOKENLEAN_HOME"]) / "ledger.sqlite"
    audit_log(log, options=AuditOptions(preset="off", choices={"budget": "predict"}))
    if live.exists():
        with sqlite3.connect(live) as conn:
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
            if "budget_calibration" in tables:
                assert conn.execute("SELECT COUNT(*) FROM budget_calibration").fetchone() == (0,)
