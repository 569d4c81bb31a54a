"""The audit's output row: measured concise ratios per task type applied to the log's
output, labelled as an estimate with its source; code/math left out by the policy."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tokenlean.audit import AuditOptions, OutputRatios, audit_log, load_output_ratios
from tokenlean.cli import app
from tokenlean.core import CallRecord, InvalidRequestError, LayerReport, Usage, count_tokens

POEM = "Autumn leaves fall softly on the quiet ground, " * 6
CODE = "def add(a, b):\n    return a + b\n" * 4


def _call(question: str, answer: str) -> dict:
    return {"id": question[:8], "messages": [{"role": "user", "content": question}],
            "response": answer, "model": "gpt-4o", "source": "test"}


def _write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _ratios(tmp_path: Path, by_type: dict) -> Path:
    report = {"data": "mine.jsonl", "rows": 9, "model": "SmolLM2", "max_new_tokens": 256,
              "output_cut": 0.3, "by_task_type": by_type}
    path = tmp_path / "ratios.json"
    path.write_text("progress line\n" + json.dumps(report) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def log(tmp_path: Path) -> Path:
    return _write(tmp_path / "log.jsonl", [
        _call("Write a poem about autumn.", POEM),
        _call("Write a Python function that adds two numbers.", CODE),
        _call("Write a poem about the sea.", POEM),
    ])


def test_estimate_applies_measured_ratios_to_allowed_types(tmp_path: Path, log: Path) -> None:
    ratios = load_output_ratios(_ratios(tmp_path, {
        "chat": {"rows": 5, "output_ratio": 0.6}, "code": {"rows": 4, "output_ratio": 0.5}}))
    report = audit_log(log, options=AuditOptions(preset="off", output_ratios=ratios))
    estimate = report["output_estimate"]
    assert estimate["kind"] == "estimate" and "mine.jsonl" in estimate["source"]
    poem = count_tokens(POEM, model="gpt-4o").tokens
    chat = estimate["by_task_type"]["chat"]
    assert chat["calls"] == 2 and chat["output_tokens"] == 2 * poem
    assert chat["est_saved_output_tokens"] == round(2 * poem * (1 - 0.6))
    code = estimate["by_task_type"]["code"]
    assert code["concise_by_default"] is False and code["est_saved_output_tokens"] == 0
    assert estimate["est_saved_output_tokens"] == chat["est_saved_output_tokens"]
    # an estimate, not a replayed saving: the totals are untouched
    plain = audit_log(log, options=AuditOptions(preset="off"))
    assert report["cost_usd_after"] == plain["cost_usd_after"]
    assert "output_estimate" not in plain
    assert any("not estimated" in n for n in plain["notes"])
    assert any("estimate, not a replay" in n for n in report["notes"])


def test_no_saving_where_the_measurement_did_not_shorten(tmp_path: Path, log: Path) -> None:
    ratios = load_output_ratios(_ratios(tmp_path, {"chat": {"rows": 6, "output_ratio": 1.1}}))
    estimate = audit_log(log, options=AuditOptions(preset="off", output_ratios=ratios))[
        "output_estimate"]
    assert estimate["est_saved_output_tokens"] == 0
    assert "did not shorten" in estimate["by_task_type"]["chat"]["why"]


def test_too_few_measured_rows_justify_nothing(tmp_path: Path, log: Path) -> None:
    ratios = load_output_ratios(_ratios(tmp_path, {"chat": {"rows": 2, "output_ratio": 0.3}}))
    chat = audit_log(log, options=AuditOptions(preset="off", output_ratios=ratios))[
        "output_estimate"]["by_task_type"]["chat"]
    assert chat["est_saved_output_tokens"] == 0 and "2 row(s)" in chat["why"]
    lenient = OutputRatios(ratios={"chat": 0.3}, rows={"chat": 2}, source="s", min_rows=1)
    chat = audit_log(log, options=AuditOptions(preset="off", output_ratios=lenient))[
        "output_estimate"]["by_task_type"]["chat"]
    assert chat["est_saved_output_tokens"] == round(chat["output_tokens"] * 0.7)


def test_ledger_export_uses_the_recorded_task_type(tmp_path: Path) -> None:
    def record(rid: str, out: int, detail: dict) -> dict:
        return CallRecord(request_id=rid, model="gpt-4o",
                          usage=Usage(input_tokens=50, output_tokens=out),
                          layers=(LayerReport(layer="budget", detail=detail),)).to_dict()

    path = _write(tmp_path / "ledger.jsonl", [
        record("a", 100, {"concise": False, "task_type": "chat"}),
        record("b", 40, {"concise": True, "task_type": "chat"}),  # already concise
        record("c", 70, {}),  # no budget note: type unknown
    ])
    ratios = OutputRatios(ratios={"chat": 0.5}, rows={"chat": 5}, source="test ratios")
    estimate = audit_log(path, options=AuditOptions(output_ratios=ratios))["output_estimate"]
    assert estimate["by_task_type"]["chat"]["output_tokens"] == 100
    assert estimate["by_task_type"]["chat"]["est_saved_output_tokens"] == 50
    assert estimate["by_task_type"]["unknown"]["est_saved_output_tokens"] == 0
    assert estimate["already_concise_calls"] == 1


def test_bad_ratio_files(tmp_path: Path, log: Path) -> None:
    with pytest.raises(InvalidRequestError, match="by_task_type"):
        load_output_ratios(_write(tmp_path / "x.json", [{"output_cut": 0.2}]))
    with pytest.raises(InvalidRequestError, match="non-negative"):
        load_output_ratios(_ratios(tmp_path, {"chat": {"output_ratio": "half"}}))
    with pytest.raises(InvalidRequestError, match="cannot read"):
        load_output_ratios(tmp_path / "missing.json")
    result = CliRunner().invoke(app, ["audit", str(log), "--output-ratios",
                                      str(tmp_path / "missing.json")])
    assert result.exit_code == 2 and "cannot read" in result.output


def test_cli_prints_the_estimate(tmp_path: Path, log: Path) -> None:
    path = _ratios(tmp_path, {"chat": {"rows": 5, "output_ratio": 0.6}})
    result = CliRunner().invoke(app, ["audit", str(log), "--preset", "off",
                                      "--output-ratios", str(path), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["output_estimate"]["by_task_type"]["chat"]["measured_ratio"] == 0.6
    table = CliRunner().invoke(app, ["audit", str(log), "--preset", "off",
                                     "--output-ratios", str(path)])
    assert table.exit_code == 0 and "an estimate" in table.output


def test_html_report_shows_the_estimate(tmp_path: Path, log: Path) -> None:
    from tokenlean.audit import read_embedded, render_html

    ratios = OutputRatios(ratios={"chat": 0.5}, rows={"chat": 4}, source="my ratios file")
    report = audit_log(log, options=AuditOptions(preset="off", output_ratios=ratios))
    html = render_html(report)
    assert "concise mode (estimate)" in html and "my ratios file" in html
    assert read_embedded(html)["output_estimate"] == report["output_estimate"]
