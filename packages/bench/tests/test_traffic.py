"""The traffic suite's generator and command on a tiny data folder of the real shapes.

The replays here run ``max-savings`` with the cache exact and the templates pass
in whitespace mode, so no MiniLM / WordLlama model is loaded (the default run
loads them; docs/benchmarks/traffic.md has its numbers).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from tokenlean.audit._logs import parse_line
from tokenlean.bench.traffic import bench, run_traffic
from tokenlean.bench.traffic_gen import SHAPES, TrafficParams, generate

FAST = {"cache": "exact", "templates": "whitespace"}
WORDS = ("alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron "
         "pi rho sigma tau upsilon phi chi psi omega").split()


def _text(n: int, words: int, tag: str) -> str:
    return " ".join(f"{WORDS[(n + i) % len(WORDS)]}{tag}" for i in range(words)) + "."


def _write(path: Path, rows: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("data")
    _write(d / "qa_squad_dev.jsonl", [
        {"id": f"squad-{i}", "question": f"Which city hosted event {i}?",
         "context": "\n\n".join([f"Event {i} took place in City{i}. " + _text(i, 30, "s")]
                                + [_text(i + k, 30, f"p{k}") for k in range(4)]),
         "answers": [f"City{i}", f"the city City{i}"]} for i in range(4)])
    _write(d / "qa_nq_dev.jsonl", [
        {"id": f"nq-{i}", "question": f"who wrote book {i}", "answers": [f"Author{i}"],
         "context": f"Book {i}\nBook {i} was written by Author{i}. " + _text(i, 25, "n")}
        for i in range(6)])
    _write(d / "qa_qmsum_dev.jsonl", [
        {"id": f"qmsum-{i}", "question": f"Summarize the discussion about budget item {i}.",
         "answers": [f"They agreed to fund item {i}."],
         "context": "\n".join(f"Speaker {k}: about the budget item {i}, " + _text(k, 40, "q")
                              for k in range(8))} for i in range(5)])
    _write(d / "pairs_qqp_dev.jsonl", [
        {"id": f"qqp-{i}", "a": f"How do I reset my password on device {i}?",
         "b": (f"What is the way to reset the password of device {i}?" if i % 2 == 0
               else f"How do I reset my username on device {i}?"),
         "label": 1 if i % 2 == 0 else 0} for i in range(300)])
    _write(d / "templates_prompts_chat_dev.jsonl", [
        {"id": f"acp-{i}", "name": f"Role {i}", "type": "TEXT",
         "template": f"I want you to act as support agent {i}. " + _text(i, 40 + 100 * i, "t")}
        for i in range(3)])
    prompts = [{"id": f"alpaca-{i}-m{m}", "messages": [{"role": "user", "content":
                                                        f"Explain topic {i} briefly."}],
                "response": f"Model {m} on topic {i}: " + _text(i, 60, "a"),
                "model": f"m{m}", "source": "alpaca_eval"} for i in range(8) for m in range(2)]
    _write(d / "prompts_alpaca_eval.jsonl", prompts)
    _write(d / "prompts_arena_hard_v01.jsonl", [
        {"id": f"arena-{i}", "messages": [{"role": "user", "content": f"Write code for task {i}"}],
         "response": "```python\n" + _text(i, 80, "c") + "\n```", "model": "gpt-4",
         "source": "arena-hard-v0.1"} for i in range(5)])
    _write(d / "prompts_mt_bench.jsonl", [
        {"id": f"mt-{i}", "messages": [{"role": "user", "content": f"Compose a post {i}."}],
         "response": None, "model": None, "source": "mt_bench/writing"} for i in range(3)])
    return d


@pytest.mark.parametrize("shape", SHAPES)
def test_each_shape_is_seeded_and_replayable(data_dir: Path, shape: str) -> None:
    params = TrafficParams(seed=1, limit=12)
    log = generate(data_dir, shape, params)
    assert len(log) == 12
    assert generate(data_dir, shape, params) == log  # same seed, same log
    assert generate(data_dir, shape, TrafficParams(seed=2, limit=12)) != log
    for n, obj in enumerate(log, 1):
        entry = parse_line(json.loads(json.dumps(obj)), n)  # as the audit reads the file
        assert entry.format == "openai" and entry.request is not None
        assert entry.response_text and obj["metadata"]["shape"] == shape


def test_rag_has_five_paragraphs_and_keeps_the_gold_answers(data_dir: Path) -> None:
    log = generate(data_dir, "rag", TrafficParams(limit=8))
    assert {e["metadata"]["source_id"].split("-")[0] for e in log} == {"squad", "nq"}
    for e in log:
        user = e["request"]["messages"][-1]["content"]
        assert e["request"]["messages"][0]["role"] == "system"
        assert e["metadata"]["paragraphs"] == 5 and "[5] " in user
        answers = e["metadata"]["answers"]
        assert answers and any(a in user for a in answers)  # the gold is retrieved
        assert e["response"]["choices"][0]["message"]["content"] == answers[0]


@pytest.mark.parametrize("rate", [0.1, 0.3, 0.7])
def test_support_repeats_at_the_rate_asked(data_dir: Path, rate: float) -> None:
    log = generate(data_dir, "support", TrafficParams(limit=200, repeat_rate=rate))
    kinds = [e["metadata"]["kind"] for e in log]
    repeats = sum(e["metadata"]["should_hit"] for e in log)
    assert abs(repeats / 200 - rate) <= 0.02
    assert kinds[0] == "new" and "near_miss" in kinds
    assert {"repeat_verbatim", "repeat_paraphrase"} <= set(kinds)
    asked: dict[str, str] = {}
    for e in log:  # a repeat repeats an earlier question, with that question's answer
        meta, answer = e["metadata"], e["response"]["choices"][0]["message"]["content"]
        if meta["should_hit"]:
            assert asked[meta["question_id"]] == answer
        asked.setdefault(meta["question_id"], answer)
    systems = {e["request"]["messages"][0]["content"] for e in log}
    assert len(systems) == 1  # one bot, one community template


def test_multi_turn_history_grows_within_a_session(data_dir: Path) -> None:
    log = generate(data_dir, "multi-turn", TrafficParams(limit=8, turns=4, min_system_words=100))
    first, last = log[0]["request"]["messages"], log[3]["request"]["messages"]
    assert len(first) == 2 and len(last) == 8 and last[:2] == first
    assert len(first[0]["content"].split()) >= 100  # a long community template
    assert last[2]["content"] == log[0]["response"]["choices"][0]["message"]["content"]


def test_agent_keeps_the_tool_output_across_steps(data_dir: Path) -> None:
    log = generate(data_dir, "agent", TrafficParams(limit=8, agent_steps=4))
    transcript = json.loads((data_dir / "qa_qmsum_dev.jsonl").read_text().splitlines()[0])
    task = [e for e in log if e["metadata"]["task"] == 0]
    assert [e["metadata"]["step"] for e in task] == [0, 1, 2, 3]
    fetched = task[1]["request"]["messages"][3]
    assert fetched["role"] == "tool" and len(fetched["content"].split()) > 100
    for later in task[2:]:  # resent at every later step
        assert later["request"]["messages"][3] == fetched
    assert task[-1]["metadata"]["answers"]
    assert fetched["content"] in {json.loads(line)["context"] for line in
                                  (data_dir / "qa_qmsum_dev.jsonl").read_text().splitlines()}
    assert transcript["id"].startswith("qmsum-")


def test_run_traffic_reports_each_shape_and_the_blend(data_dir: Path) -> None:
    result = run_traffic(data_dir, shapes=["support", "chat"],
                         params=TrafficParams(limit=20), price_as=["gpt-4o"], choices=FAST)
    support = result["shapes"]["support"]
    assert support["requests"] == 20 and result["preset"] == "max-savings"
    ratio = support["cost_per_mtok_after"]["gpt-4o"] / support["cost_per_mtok_before"]["gpt-4o"]
    assert abs(ratio - support["after_over_before"]["gpt-4o"]) < 1e-3
    served = support["quality"]["support_cache"]
    assert served["repeats"] == 6 and served["served"] > 0  # exact repeats hit
    assert served["false_hits"] == 0  # an exact cache serves only verbatim repeats
    assert support["quality"]["live"] is None
    expected = (support["after_over_before"]["gpt-4o"]
                + result["shapes"]["chat"]["after_over_before"]["gpt-4o"]) / 2
    assert result["blended"]["after_over_before"]["gpt-4o"] == pytest.approx(expected, abs=1e-3)


def test_the_command_prints_the_issue_json(data_dir: Path, tmp_path: Path) -> None:
    app = typer.Typer()
    app.command("traffic")(bench)
    app.command("other")(lambda: None)  # a group, so the command is addressed by name
    result = CliRunner().invoke(app, [
        "traffic", "--data-dir", str(data_dir), "--shape", "rag", "--limit", "4",
        "--price-as", "gpt-4o", "--price-as", "claude-sonnet-4-5", "--cache", "exact",
        "--templates", "whitespace", "--out", str(tmp_path / "logs")])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout[result.stdout.index("{"):])
    rag = report["shapes"]["rag"]
    assert {"requests", "cost_per_mtok_before", "cost_per_mtok_after", "saved_ratio",
            "per_layer", "quality"} <= set(rag)
    assert set(rag["saved_ratio"]) == {"gpt-4o", "claude-sonnet-4-5"}
    assert set(report["blended"]["after_over_before"]) == {"gpt-4o", "claude-sonnet-4-5"}
    assert report["live"] is None
    assert len((tmp_path / "logs" / "rag.jsonl").read_text().splitlines()) == 4


# ---- the live run (rag): its metrics and its wiring; the model itself is not loaded here ----


def test_squad_normalisation_and_containment() -> None:
    from tokenlean.bench.traffic_live import containment, squad_normalise

    assert squad_normalise("The Theatre, a  play.") == "theatre play"  # words, not prefixes
    assert squad_normalise("  Denver   BRONCOS!! ") == "denver broncos"
    assert containment("It was the Denver Broncos.", ["Broncos", "Carolina"])
    assert containment("an apple", ["Apple!"])
    assert not containment("Carolina Panthers", ["Denver Broncos"])
    assert not containment("the end", ["the"])  # a gold that normalises to nothing never matches
    assert not containment("anything", [])


def test_token_f1_is_squads_max_over_golds() -> None:
    from tokenlean.bench.traffic_live import token_f1

    # "eiffel tower in paris" vs "eiffel tower": P 2/4, R 2/2 -> 2/3
    assert token_f1("The Eiffel Tower, in Paris.", ["Eiffel Tower"]) == pytest.approx(2 / 3)
    # max over golds: "london" shares nothing, "paris" gives P 1/2, R 1 -> 2/3
    assert token_f1("Paris France", ["London", "Paris"]) == pytest.approx(2 / 3)
    assert token_f1("an apple", ["Apple!"]) == 1.0
    assert token_f1("apple apple pie", ["apple"]) == pytest.approx(0.5)  # P 1/3, R 1
    assert token_f1("Rome", ["Paris"]) == 0.0
    assert token_f1("", ["Paris"]) == 0.0
    assert token_f1("Paris", []) == 0.0


def test_summarise_live_averages_per_call() -> None:
    from tokenlean.bench.traffic_live import summarise_live

    rows = [{"golds": ["Paris"], "raw": "Paris.", "lean": "It is Paris", "in_raw": 100,
             "in_lean": 60, "cached": False},
            {"golds": ["1999"], "raw": "In 1999", "lean": "I do not know", "in_raw": 200,
             "in_lean": 0, "cached": True}]
    live = summarise_live(rows, model="m", max_tokens=48, price_as="gpt-4o")
    assert live["calls"] == 2 and live["model"] == "m"
    assert live["containment_raw"] == 1.0 and live["containment_lean"] == 0.5
    # raw: 1.0 and "1999" in "in 1999" -> 2/3; lean: "it is paris" -> 0.5, then 0
    assert live["f1_raw"] == pytest.approx((1 + 2 / 3) / 2, abs=1e-4)
    assert live["f1_lean"] == pytest.approx(0.25)
    assert live["input_tokens_raw"] == 150 and live["input_tokens_lean"] == 30
    assert live["answer_changed_share"] == 1.0 and live["cache_hits"] == 1


def test_live_goes_to_the_rag_shape_only(data_dir: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """The wiring, with the model call stubbed: run_live gets the rag log, its result lands in
    rag's quality["live"], the other shapes keep null."""
    import tokenlean.bench.traffic_live as traffic_live

    seen: dict[str, Any] = {}

    def fake_run_live(entries: list[dict[str, Any]], **kwargs: Any) -> dict[str, Any]:
        seen["shapes"] = {e["metadata"]["shape"] for e in entries}
        seen.update(kwargs)
        return {"model": "stub", "calls": kwargs["limit"]}

    monkeypatch.setattr(traffic_live, "run_live", fake_run_live)
    result = run_traffic(data_dir, shapes=["rag", "chat"], params=TrafficParams(limit=6),
                         price_as=["gpt-4o"], choices=FAST, live=True, live_limit=3)
    assert seen["shapes"] == {"rag"} and seen["limit"] == 3 and seen["price_as"] == "gpt-4o"
    assert seen["choices"] == FAST  # the same lean() keywords as the replay
    assert result["shapes"]["rag"]["quality"]["live"] == {"model": "stub", "calls": 3}
    assert result["shapes"]["chat"]["quality"]["live"] is None
    assert result["live"] == {"shapes": ["rag"], "at": "shapes.rag.quality.live"}


def test_live_needs_the_rag_shape_and_says_so(data_dir: Path) -> None:
    app = typer.Typer()
    app.command("traffic")(bench)
    app.command("other")(lambda: None)
    result = CliRunner().invoke(app, ["traffic", "--data-dir", str(data_dir), "--shape",
                                      "support", "--live"])
    assert result.exit_code == 2 and "rag shape only" in result.output
    with pytest.raises(ValueError, match="rag shape only"):
        run_traffic(data_dir, shapes=["chat"], live=True)


def test_live_without_the_demo_extra_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from tokenlean.bench.traffic_live import run_live
    from tokenlean.core.errors import MissingExtraError

    monkeypatch.setitem(sys.modules, "langchain_openai", None)  # as if not installed
    with pytest.raises(MissingExtraError, match="demo"):
        run_live([{"metadata": {"shape": "rag"}}])
