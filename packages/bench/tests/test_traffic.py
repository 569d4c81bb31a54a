"""The traffic suite's generator and command on a tiny data folder of the real shapes.

The replays here run ``max-savings`` with the cache exact and the templates pass
in whitespace mode, so no MiniLM / WordLlama model is loaded (the default run
loads them; docs/benchmarks/traffic.md has its numbers).
"""

from __future__ import annotations

import importlib.util
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


# ---- the live run: its metrics and its wiring; the model itself is loaded by one test ----


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


def _row(raw: str | None, lean: str | None, **extra: Any) -> dict[str, Any]:
    row = {"raw": raw, "lean": lean, "in_raw": 100, "in_lean": 60, "out_raw": 10,
           "out_lean": 5, "cached": False}
    row.update(extra)
    return row


def test_summarise_live_rag_averages_per_call() -> None:
    from decimal import Decimal

    from tokenlean.bench.traffic_live import summarise_live

    rows = [_row("Paris.", "It is Paris", golds=["Paris"], out_raw=2, out_lean=4),
            _row("In 1999", "I do not know", golds=["1999"], in_raw=200, in_lean=0,
                 out_raw=3, out_lean=0, cached=True)]
    live = summarise_live(rows, model="m", max_tokens=48, price_as="gpt-4o", shape="rag",
                          rates=(Decimal("0.001"), Decimal("0.01")))
    assert live["calls"] == 2 and live["model"] == "m" and live["shape"] == "rag"
    assert live["containment_raw"] == 1.0 and live["containment_lean"] == 0.5
    # raw: 1.0 and "1999" in "in 1999" -> 2/3; lean: "it is paris" -> 0.5, then 0
    assert live["f1_raw"] == pytest.approx((1 + 2 / 3) / 2, abs=1e-4)
    assert live["f1_lean"] == pytest.approx(0.25)
    assert live["input_tokens_raw"] == 150 and live["input_tokens_lean"] == 30
    assert live["output_tokens_raw"] == 2.5 and live["output_tokens_lean"] == 2.0
    assert live["output_ratio"] == pytest.approx(4 / 5)
    assert live["answer_changed_share"] == 1.0 and live["cache_hits"] == 1
    assert live["over_context"] == 0 and live["scored_calls"] == 2
    # $ per call: raw (100*0.001 + 2*0.01 + 200*0.001 + 3*0.01) / 2; lean (60*0.001 + 4*0.01) / 2
    assert live["usd_per_call_raw"] == pytest.approx(0.175)
    assert live["usd_per_call_lean"] == pytest.approx(0.05)


def test_summarise_live_support_reads_the_cache_against_the_labels() -> None:
    from tokenlean.bench.traffic_live import summarise_live

    labels = [("new", False), ("repeat_verbatim", True), ("near_miss", False),
              ("repeat_paraphrase", True), ("new", False)]
    served = [False, True, True, False, False]  # one repeat served, one near-miss served
    rows = [_row("an answer", "an answer" if hit else f"other {n}", cached=hit,
                 metadata={"kind": kind, "should_hit": should})
            for n, ((kind, should), hit) in enumerate(zip(labels, served, strict=True))]
    live = summarise_live(rows, model="m", max_tokens=96, price_as="gpt-4o", shape="support")
    cache = live["support_cache"]
    assert live["cache_hits"] == 2 and cache["served"] == 2
    assert cache["repeats"] == 2 and cache["repeats_served_share"] == 0.5
    assert cache["false_hits"] == 1 and cache["false_hit_rate"] == 0.5
    assert cache["by_kind"]["near_miss"] == {"queries": 1, "served": 1}
    assert cache["by_kind"]["repeat_paraphrase"] == {"queries": 1, "served": 0}
    assert "containment_raw" not in live  # no gold on support


def test_served_cache_quality_is_the_replays_measure() -> None:
    from tokenlean.bench.traffic import served_cache_quality, support_cache_quality

    entries = [{"metadata": {"kind": k, "should_hit": h}}
               for k, h in (("new", False), ("repeat_verbatim", True), ("new", False))]
    report = {"cache": {"examples": [{"line": 2}, {"line": 3}]}}
    assert support_cache_quality(entries, report) == served_cache_quality(entries, {2, 3})
    got = served_cache_quality(entries, {2, 3})
    assert got["repeats_served_share"] == 1.0 and got["false_hits"] == 1
    assert got["false_hit_rate"] == 0.5
    assert served_cache_quality(entries, set())["false_hit_rate"] == 0.0


def test_summarise_live_leaves_over_context_calls_unscored() -> None:
    from tokenlean.bench.traffic_live import summarise_live

    rows = [_row("short answer", "short answer", similarity=1.0, finish_raw="stop",
                 finish_lean="stop"),
            _row(None, "a lean answer", in_raw=12000, in_lean=2500),  # raw did not fit
            _row("one", "two", similarity=0.5, out_raw=30, out_lean=10, finish_raw="length",
                 finish_lean="stop")]
    live = summarise_live(rows, model="m", max_tokens=128, price_as="gpt-4o", shape="agent")
    assert live["calls"] == 3 and live["scored_calls"] == 2
    assert live["over_context"] == 1 and live["over_context_raw"] == 1
    assert live["over_context_lean"] == 0
    assert live["input_tokens_raw"] == 100  # the over-context call is not in the means
    assert live["input_tokens_raw_all"] == pytest.approx(12200 / 3, abs=1e-3)
    assert live["input_tokens_lean_all"] == pytest.approx(2620 / 3, abs=1e-3)
    assert live["output_tokens_raw"] == 20 and live["output_tokens_lean"] == 7.5
    assert live["similarity_to_raw"] == 0.75 and live["similarity_calls"] == 2
    assert live["answer_changed_share"] == 0.5
    assert live["cut_at_max_tokens_raw"] == 1 and live["cut_at_max_tokens_lean"] == 0
    assert "usd_per_call_raw" not in live  # no rates given
    nothing = summarise_live([_row(None, None)], model="m", max_tokens=8, price_as="gpt-4o",
                             shape="chat")
    assert nothing["scored_calls"] == 0 and nothing["over_context"] == 1
    assert nothing["similarity_to_raw"] is None and nothing["output_ratio"] is None


def test_live_messages_flatten_tool_calls_for_the_local_server(data_dir: Path) -> None:
    from tokenlean.bench.traffic_live import live_messages

    log = generate(data_dir, "agent", TrafficParams(limit=4, agent_steps=4))
    messages = live_messages(log[2])  # after a fetch and a search
    assert {m["role"] for m in messages} <= {"system", "user", "assistant"}
    assert all(set(m) == {"role", "content"} for m in messages)
    call = json.loads(messages[2]["content"])
    assert messages[2]["role"] == "assistant" and call["tool"] == "fetch_transcript"
    assert messages[3]["role"] == "user" and messages[3]["content"].startswith("Tool output:")
    assert log[2]["request"]["messages"][3]["content"] in messages[3]["content"]
    plain = generate(data_dir, "chat", TrafficParams(limit=1))[0]
    assert live_messages(plain) == [{"role": m["role"], "content": m["content"]}
                                    for m in plain["request"]["messages"]]


def test_over_context_is_the_servers_context_length_error() -> None:
    from tokenlean.bench.traffic_live import is_over_context

    class BadRequest(Exception):
        code = "context_length_exceeded"

    assert is_over_context(BadRequest("Error code: 400"))
    assert is_over_context(RuntimeError("{'code': 'context_length_exceeded'}"))
    try:  # wrapped by a layer: the cause counts
        try:
            raise BadRequest("too long")
        except BadRequest as inner:
            raise RuntimeError("backend failed") from inner
    except RuntimeError as outer:
        assert is_over_context(outer)
    assert not is_over_context(ValueError("max_tokens must be at least 1"))


def test_live_runs_for_every_shape(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The wiring, with the model call stubbed: run_live gets each shape's log and its name,
    and its result lands in that shape's quality["live"]."""
    import tokenlean.bench.traffic_live as traffic_live

    seen: list[dict[str, Any]] = []

    def fake_run_live(entries: list[dict[str, Any]], **kwargs: Any) -> dict[str, Any]:
        seen.append({"shapes": {e["metadata"]["shape"] for e in entries}, **kwargs})
        return {"model": "stub", "shape": kwargs["shape"], "calls": kwargs["limit"]}

    class FakeServer:
        stopped = 0

        def stop(self) -> None:
            self.stopped += 1

    servers: list[FakeServer] = []

    def fake_server() -> tuple[FakeServer, str]:
        servers.append(FakeServer())
        return servers[-1], "stub-model"

    monkeypatch.setattr(traffic_live, "run_live", fake_run_live)
    monkeypatch.setattr(traffic_live, "start_live_server", fake_server)
    result = run_traffic(data_dir, shapes=["support", "chat"], params=TrafficParams(limit=6),
                         price_as=["gpt-4o"], choices=FAST, live=True, live_limit=3)
    # one server for every shape, stopped once at the end
    assert len(servers) == 1 and servers[0].stopped == 1
    assert all(s["server"] == (servers[0], "stub-model") for s in seen)
    assert [s["shape"] for s in seen] == ["support", "chat"]
    assert [s["shapes"] for s in seen] == [{"support"}, {"chat"}]
    assert all(s["limit"] == 3 and s["price_as"] == "gpt-4o" for s in seen)
    assert all(s["choices"] == FAST for s in seen)  # the same lean() keywords as the replay
    for shape in ("support", "chat"):
        assert result["shapes"][shape]["quality"]["live"] == {"model": "stub", "shape": shape,
                                                              "calls": 3}
    assert result["live"]["shapes"] == ["support", "chat"]
    assert result["live"]["at"] == "shapes.NAME.quality.live"


def test_live_options_are_checked(data_dir: Path) -> None:
    app = typer.Typer()
    app.command("traffic")(bench)
    app.command("other")(lambda: None)
    result = CliRunner().invoke(app, ["traffic", "--data-dir", str(data_dir), "--shape",
                                      "support", "--live", "--live-limit", "0"])
    assert result.exit_code == 2 and "--live-limit must be at least 1" in result.output
    result = CliRunner().invoke(app, ["traffic", "--data-dir", str(data_dir), "--shape",
                                      "nope", "--live"])
    assert result.exit_code == 2 and "nope" in result.output
    with pytest.raises(ValueError, match="live_limit"):
        run_traffic(data_dir, shapes=["chat"], live=True, live_limit=0)


def test_live_settings_cover_every_shape() -> None:
    from tokenlean.bench.traffic_live import LIVE_SHAPES, run_live

    assert set(LIVE_SHAPES) == set(SHAPES)
    assert LIVE_SHAPES["rag"].max_tokens == 48 and LIVE_SHAPES["rag"].stop == ("\n\n",)
    assert all(s.max_tokens >= 48 for s in LIVE_SHAPES.values())
    with pytest.raises(ValueError, match="unknown shape"):
        run_live([], shape="poetry")


def test_live_without_the_demo_extra_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from tokenlean.bench.traffic_live import run_live
    from tokenlean.core.errors import MissingExtraError

    monkeypatch.setitem(sys.modules, "langchain_openai", None)  # as if not installed
    with pytest.raises(MissingExtraError, match="demo"):
        run_live([{"metadata": {"shape": "rag"}}])


@pytest.mark.server
@pytest.mark.skipif(importlib.util.find_spec("tokenlean.server") is None
                    or importlib.util.find_spec("langchain_openai") is None,
                    reason="needs tokenlean[demo] (the local model server)")
def test_live_support_on_the_local_server(data_dir: Path) -> None:
    """Two support calls end to end on the local model, the second a verbatim repeat of the
    first: the lean arm's cache serves it, and the labels count it as a repeat served."""
    from tokenlean.bench.traffic_live import run_live

    log = generate(data_dir, "support", TrafficParams(limit=40, repeat_rate=0.5))
    first = log[0]
    repeat = next(e for e in log if e["metadata"]["kind"] == "repeat_verbatim"
                  and e["metadata"]["question_id"] == first["metadata"]["question_id"])
    live = run_live([first, repeat], limit=2, shape="support", max_tokens=16,
                    choices={"cache": "exact", "templates": "whitespace", "compress": False,
                             "budget": False})
    assert live["calls"] == 2 and live["scored_calls"] == 2 and live["over_context"] == 0
    assert all(ex["raw"] for ex in live["examples"])  # the local model answered
    assert live["output_tokens_raw"] > 0 and live["input_tokens_raw"] > 0
    # a 16-token answer is usually cut, and the cache never stores a cut answer: the
    # repeat is then asked again; whatever happened, the labels count it
    cache = live["support_cache"]
    assert cache["repeats"] == 1 and cache["false_hits"] == 0
    assert cache["served"] == live["cache_hits"]


def _one_shape(data_dir: Path, shape: str, limit: int, **options: Any) -> dict[str, Any]:
    """One shape's result, replayed lightly (exact cache, whitespace templates), gpt-4o."""
    result: dict[str, Any] = run_traffic(data_dir, shapes=[shape],
                                         params=TrafficParams(limit=limit),
                                         price_as=["gpt-4o"], choices=FAST,
                                         **options)["shapes"][shape]
    return result


def test_the_headline_bills_the_providers_prompt_cache(data_dir: Path,
                                                       tmp_path: Path) -> None:
    import shutil

    long_templates = tmp_path / "data"
    shutil.copytree(data_dir, long_templates)
    _write(long_templates / "templates_prompts_chat_dev.jsonl", [  # > 1,024 tokens each
        {"id": f"acp-{i}", "name": f"Role {i}", "type": "TEXT",
         "template": f"I want you to act as support agent {i}. " + _text(i, 900, "t")}
        for i in range(2)])
    data_dir = long_templates
    billed = _one_shape(data_dir, "multi-turn", 8)
    plain = _one_shape(data_dir, "multi-turn", 8, prefix_cache=False)
    assert plain["prefix_cache"] is None
    # the list-price figures are the same replay's, with or without the prompt cache
    assert billed["list_price"]["cost_per_mtok_before"] == plain["cost_per_mtok_before"]
    cache = billed["prefix_cache"]["gpt-4o"]
    assert cache["before"]["cache_read"] > 0  # later turns resend the long system prompt
    assert billed["cost_per_mtok_before"]["gpt-4o"] < plain["cost_per_mtok_before"]["gpt-4o"]


def test_the_support_curve_replays_each_repeat_rate(data_dir: Path) -> None:
    result = run_traffic(data_dir, shapes=["chat"], params=TrafficParams(limit=20),
                         price_as=["gpt-4o"], choices=FAST, support_rates=[0.1, 0.5])
    low, high = result["support_curve"]
    assert (low["repeat_rate"], high["repeat_rate"]) == (0.1, 0.5)
    assert (low["repeats"], high["repeats"]) == (2, 10)
    # more repeats, more served from the (exact) cache, a cheaper bill
    assert high["served"] > low["served"]
    assert high["after_over_before"]["gpt-4o"] < low["after_over_before"]["gpt-4o"]
    assert run_traffic(data_dir, shapes=["chat"], params=TrafficParams(limit=5),
                       price_as=["gpt-4o"], choices=FAST)["support_curve"] is None


def test_the_support_curve_option_checks_its_rates(data_dir: Path) -> None:
    app = typer.Typer()
    app.command("traffic")(bench)
    app.command("other")(lambda: None)
    for bad in ("0.3,1.5", "0.3,abc"):
        result = CliRunner().invoke(app, ["traffic", "--data-dir", str(data_dir),
                                          "--shape", "chat", "--support-curve", bad])
        assert result.exit_code == 2, result.output


def test_rag_answer_retention_checks_the_gold_in_what_the_layers_send(
        data_dir: Path) -> None:
    from tokenlean.bench.traffic import rag_answer_retention

    entries = generate(data_dir, "rag", TrafficParams(limit=6))
    kept = rag_answer_retention(entries, {"compress": False})
    assert kept["layers"] == ["templates"]
    assert kept["gold_in_prompt"] == 6 and kept["gold_kept"] == 6 and kept["retention"] == 1.0
    # a gold answer the prompt never held is not counted; one a layer drops is
    lost = [dict(entries[0], metadata={**entries[0]["metadata"], "answers": ["Atlantis"]})]
    assert rag_answer_retention(lost, {"compress": False})["gold_in_prompt"] == 0
    # compress (4x) drops most of 12 paragraphs that have nothing to do with the question:
    # a gold answer in the middle one goes with it
    filler = "\n\n".join(_text(k, 60, f"f{k}") for k in range(12))
    off_topic = [dict(entries[0], metadata={**entries[0]["metadata"],
                                            "answers": ["alphaf5 betaf5 gammaf5"]},
                      request={**entries[0]["request"], "messages": [
                          {"role": "system", "content": "Answer from the paragraphs."},
                          {"role": "user", "content": f"{filler}\n\n"
                           "Question: Which city hosted event 1?"}]})]
    assert rag_answer_retention(off_topic, {"compress": False})["retention"] == 1.0
    assert rag_answer_retention(off_topic)["retention"] == 0.0


def test_the_rag_shape_reports_answer_retention(data_dir: Path) -> None:
    rag = run_traffic(data_dir, shapes=["rag"], params=TrafficParams(limit=4),
                      price_as=["gpt-4o"], choices=FAST)["shapes"]["rag"]
    assert rag["quality"]["answer_retention"]["gold_in_prompt"] == 4
    assert 0 <= rag["quality"]["answer_retention"]["retention"] <= 1


def test_measured_concise_ratios_add_an_estimate_kept_out_of_the_headline(
        data_dir: Path) -> None:
    from tokenlean.audit import OutputRatios

    ratios = OutputRatios(ratios={"chat": 0.5, "code": 0.5}, rows={"chat": 20, "code": 20},
                          source="test")
    plain = _one_shape(data_dir, "chat", 6)
    with_ratios = _one_shape(data_dir, "chat", 6, output_ratios=ratios)
    assert plain["concise_estimate"] is None
    assert with_ratios["after_over_before"] == plain["after_over_before"]  # headline as is
    estimate = with_ratios["concise_estimate"]["gpt-4o"]
    # the AlpacaEval prompts are chat (concise by default, halved); the Arena ones ask for
    # code, which concise mode leaves as asked
    assert estimate["est_saved_output_tokens"] > 0
    assert estimate["after_over_before_with_estimate"] < plain["after_over_before"]["gpt-4o"]
    code_only = OutputRatios(ratios={"code": 0.5}, rows={"code": 20}, source="test")
    none_saved = _one_shape(data_dir, "chat", 6, output_ratios=code_only)["concise_estimate"]
    assert none_saved["gpt-4o"]["est_saved_output_tokens"] == 0
    assert (none_saved["gpt-4o"]["after_over_before_with_estimate"]
            == pytest.approx(plain["after_over_before"]["gpt-4o"], abs=1e-3))


def test_a_bad_data_folder_is_a_config_error_naming_the_file(data_dir: Path,
                                                              tmp_path: Path) -> None:
    import shutil

    from tokenlean.core import ConfigError

    with pytest.raises(ConfigError, match="missing"):
        generate(tmp_path / "nowhere", "chat", TrafficParams(limit=2))
    broken = tmp_path / "broken"
    shutil.copytree(data_dir, broken)
    arena = broken / "prompts_arena_hard_v01.jsonl"
    arena.write_text(arena.read_text(encoding="utf-8") + "{not json\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"prompts_arena_hard_v01.jsonl, line 6: not JSON"):
        generate(broken, "chat", TrafficParams(limit=2))
    arena.write_text('{"id": 1}\n', encoding="utf-8")  # a row of the wrong shape
    with pytest.raises(ConfigError, match="cannot build chat calls"):
        generate(broken, "chat", TrafficParams(limit=2))
