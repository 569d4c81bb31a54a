"""One accounting path: what the pipeline books for an observed call, a cache hit,
an unpriced model and a failing ledger (the same rules the framework handlers follow,
see tests/test_accounting_paths.py)."""

from __future__ import annotations

import sqlite3
import warnings
from dataclasses import replace
from decimal import Decimal
from pathlib import Path

import pytest

from tokenlean.core import (
    CallRecord,
    FunctionProvider,
    JSONLLedger,
    Message,
    Pipeline,
    Request,
    Response,
    SQLiteLedger,
    TokenleanWarning,
    Usage,
    count_messages,
    count_tokens,
    open_ledger,
    price,
)

ANSWER = "Paris is the capital of France."
CACHED_USAGE = Usage(input_tokens=1200, output_tokens=300, cache_read_tokens=1000)


def ask(text: str = "What is the capital of France?", model: str = "gpt-4o-mini") -> Request:
    return Request(model=model, messages=(Message(role="system", content="Be brief."),
                                          Message(role="user", content=text)))


def silent(request: Request) -> Response:
    """A provider that reports no usage (OpenAI streams without stream_usage, some
    local servers)."""
    return Response(text=ANSWER, model=request.model)


class AnswerEverything:
    """A real layer that answers every call the way a cache hit does: its stored answer,
    with the usage that answer reported when the model first produced it."""

    name = "cache"

    def process(self, request: Request) -> Request | Response:
        return Response(text=ANSWER, model=request.model, usage=CACHED_USAGE, cached=True,
                        cache_score=0.97)

    async def aprocess(self, request: Request) -> Request | Response:
        return self.process(request)


def test_a_call_without_reported_usage_is_estimated_not_free() -> None:
    request = ask()
    record = Pipeline(provider=FunctionProvider(silent)).run(request).record
    assert record.usage.input_tokens == count_messages(request.messages, model=request.model).tokens
    assert record.usage.output_tokens == count_tokens(ANSWER, model=request.model).tokens
    assert record.metadata["usage_source"] == "estimated"
    assert record.cost is not None and record.cost.total_usd > 0


def test_a_cache_hit_books_the_usage_of_the_call_it_replaced() -> None:
    record = Pipeline(provider=FunctionProvider(silent), layers=[AnswerEverything()]).run(
        ask()).record
    assert record.cached and record.usage == Usage() and record.cost_usd == 0
    (report,) = record.layers
    assert (report.layer, report.saved_input_tokens, report.saved_output_tokens) == (
        "cache", 1200, 300)
    full = price(CACHED_USAGE, model="gpt-4o-mini")
    assert full is not None and report.saved_usd == full.total_usd
    assert report.quality == {"similarity": 0.97}


def test_a_cache_hit_of_an_unpriced_model_costs_a_known_zero(tmp_path: Path) -> None:
    ledger = SQLiteLedger(tmp_path / "l.sqlite")
    pipe = Pipeline(provider=FunctionProvider(silent), layers=[AnswerEverything()],
                    ledger=ledger)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TokenleanWarning)  # no price known for the model
        record = pipe.run(ask(model="house-model-hits-only")).record
    assert record.cost is not None and record.cost_usd == 0  # a hit spends nothing, known
    (row,) = ledger.totals()
    assert row.unpriced_calls == 0 and row.cost_usd == 0 and row.cached_calls == 1


def test_a_failing_ledger_warns_once_per_outage() -> None:
    class Ledger:
        down = True

        def record(self, record: CallRecord) -> None:
            if self.down:
                raise OSError("disk full")

    ledger = Ledger()
    pipe = Pipeline(provider=FunctionProvider(silent), ledger=ledger)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pipe.run(ask("one"))
        pipe.run(ask("two"))  # the same outage: silent
        ledger.down = False
        pipe.run(ask("three"))  # recovered
        ledger.down = True
        pipe.run(ask("four"))  # a new outage: warns again
    messages = [str(w.message) for w in caught if issubclass(w.category, TokenleanWarning)]
    assert len(messages) == 2, messages
    assert all("disk full" in m for m in messages)


@pytest.mark.parametrize("suffix", [".sqlite", ".jsonl"])
def test_totals_report_an_unpriced_cost_as_unknown(tmp_path: Path, suffix: str) -> None:
    ledger = open_ledger(tmp_path / f"ledger{suffix}")
    usage = Usage(input_tokens=100, output_tokens=10)
    priced = CallRecord(request_id="a", model="gpt-4o", usage=usage,
                        cost=price(usage, model="gpt-4o"))
    ledger.record(priced)
    ledger.record(CallRecord(request_id="b", model="house-model", usage=usage))
    (row,) = ledger.totals(by="tenant")
    assert row.cost_usd is None, "a total that holds an unpriced call is unknown, not a sum"
    assert row.unpriced_calls == 1 and row.priced_cost_usd == priced.cost_usd
    by_model = {r.key: r for r in ledger.totals(by="model")}
    assert by_model["gpt-4o"].cost_usd == priced.cost_usd
    assert by_model["house-model"].cost_usd is None


def test_sqlite_totals_are_computed_in_sql(tmp_path: Path) -> None:
    """Totals never decode the rows' JSON bodies: they hold however many rows fit."""
    path = tmp_path / "l.sqlite"
    ledger = SQLiteLedger(path)
    usage = Usage(input_tokens=100, output_tokens=10)
    cost = price(usage, model="gpt-4o")
    assert cost is not None
    for i in range(3):
        ledger.record(CallRecord(request_id=f"r{i}", model="gpt-4o", usage=usage, cost=cost))
    with sqlite3.connect(path) as raw:
        raw.execute("UPDATE calls SET body = 'not json'")
    (row,) = ledger.totals()
    assert (row.calls, row.input_tokens, row.output_tokens) == (3, 300, 30)
    assert row.cost_usd == 3 * cost.total_usd


def test_jsonl_and_sqlite_totals_agree(tmp_path: Path) -> None:
    records = []
    for i in range(6):
        usage = Usage(input_tokens=100 + i, output_tokens=10 + i, cache_read_tokens=i)
        model = ("gpt-4o", "gpt-4o-mini", "house-model")[i % 3]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", TokenleanWarning)
            cost = price(usage, model=model)
        records.append(CallRecord(request_id=f"r{i}", model=model, tenant=f"t{i % 2}",
                                  usage=usage, cost=cost, started_at=1.7e9 + 86_400 * (i % 2)))
    records.append(replace(records[0], request_id="hit", cached=True, usage=Usage(),
                           cost=replace(records[0].cost, input_usd=Decimal(0),
                                        output_usd=Decimal(0))))
    sql, lines = SQLiteLedger(tmp_path / "l.sqlite"), JSONLLedger(tmp_path / "l.jsonl")
    for record in records:
        sql.record(record)
        lines.record(record)
    for by in ("model", "tenant", "day", "layer"):
        assert sql.totals(by=by) == lines.totals(by=by)
