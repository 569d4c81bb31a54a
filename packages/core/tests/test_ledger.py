from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from tokenlean.core import (
    CallRecord,
    ConfigError,
    JSONLLedger,
    LayerReport,
    SQLiteLedger,
    TokenleanWarning,
    Usage,
    open_ledger,
    price,
)


def rec(i: int, *, tenant: str = "t1", model: str = "gpt-4o", cached: bool = False) -> CallRecord:
    usage = Usage(input_tokens=100 + i, output_tokens=10)
    return CallRecord(
        request_id=f"r{i}", model=model, tenant=tenant, usage=usage,
        cost=price(usage, model=model), cached=cached, started_at=1_700_000_000 + 86_400 * (i % 2),
        layers=(LayerReport(layer="compress", saved_input_tokens=50, saved_usd=Decimal("0.001")),),
    )


@pytest.mark.parametrize("suffix", [".sqlite", ".jsonl"])
def test_totals_by_every_key(tmp_path: Path, suffix: str) -> None:
    ledger = open_ledger(tmp_path / f"ledger{suffix}")
    for i in range(4):
        ledger.record(rec(i, tenant="t1" if i < 3 else "t2"))
    by_tenant = {t.key: t for t in ledger.totals(by="tenant")}
    assert by_tenant["t1"].calls == 3 and by_tenant["t2"].calls == 1
    assert by_tenant["t1"].input_tokens == 100 + 101 + 102
    (model_row,) = ledger.totals(by="model")
    assert model_row.cost_usd == sum(rec(i).cost_usd for i in range(4))
    (layer_row,) = ledger.totals(by="layer")
    assert layer_row.key == "compress" and layer_row.saved_tokens == 200
    assert layer_row.saved_usd == Decimal("0.004")
    assert [t.key for t in ledger.totals(by="day")] == ["2023-11-14", "2023-11-15"]
    only_t2 = ledger.totals(by="model", tenant="t2")
    assert only_t2[0].calls == 1
    round_trip = list(ledger.records(tenant="t2"))[0]
    assert round_trip == rec(3, tenant="t2")
    with pytest.raises(ConfigError):
        ledger.totals(by="colour")  # type: ignore[arg-type]


def test_unpriced_calls_are_counted_apart(tmp_path: Path) -> None:
    ledger = SQLiteLedger(tmp_path / "l.sqlite")
    ledger.record(CallRecord(request_id="x", model="house-model", usage=Usage(input_tokens=5)))
    (row,) = ledger.totals()
    assert row.unpriced_calls == 1 and row.cost_usd is None and row.priced_cost_usd == 0


def test_unwritable_path_is_config_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ConfigError):
        SQLiteLedger(blocker / "ledger.sqlite")


def test_jsonl_skips_torn_last_line(tmp_path: Path) -> None:
    path = tmp_path / "l.jsonl"
    ledger = JSONLLedger(path)
    ledger.record(rec(1))
    with path.open("a") as fh:
        fh.write('{"request_id": "torn", "mod')
    with pytest.warns(TokenleanWarning, match="torn"):
        assert [r.request_id for r in ledger.records()] == ["r1"]


@pytest.mark.parametrize("fragment", ['{"request_id": "torn", "mod', "\u00e9" * 70_000])
def test_jsonl_moves_a_torn_tail_aside_on_open(tmp_path: Path, fragment: str) -> None:
    """The next row after a torn one is kept (it was glued to the fragment and lost)."""
    path = tmp_path / "l.jsonl"
    ledger = JSONLLedger(path)
    ledger.record(rec(1))
    ledger.close()
    with path.open("a", encoding="utf-8") as fh:
        fh.write(fragment)  # a write cut short: no newline
    with pytest.warns(TokenleanWarning, match="torn") as caught:
        reopened = JSONLLedger(path)
    assert len(caught) == 1
    reopened.record(rec(2))
    assert [r.request_id for r in reopened.records()] == ["r1", "r2"]  # no warning on read
    assert (tmp_path / "l.jsonl.torn").read_text(encoding="utf-8") == fragment + "\n"
    reopened.close()
    JSONLLedger(path).close()  # a sound file: nothing to repair, no warning


def test_jsonl_torn_file_with_no_complete_row(tmp_path: Path) -> None:
    path = tmp_path / "l.jsonl"
    path.write_text('{"request_id"')
    with pytest.warns(TokenleanWarning, match="torn"):
        ledger = JSONLLedger(path)
    ledger.record(rec(3))
    assert [r.request_id for r in ledger.records()] == ["r3"]
    ledger.close()


def test_a_ledger_written_before_sql_totals_is_upgraded_once(tmp_path: Path) -> None:
    """A file with the old schema (no sum columns) gets them, filled from the bodies."""
    import json
    import sqlite3

    path = tmp_path / "old.sqlite"
    old = [rec(i, tenant="t1" if i < 2 else "t2") for i in range(3)]
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE calls (id INTEGER PRIMARY KEY AUTOINCREMENT, request_id TEXT "
                     "NOT NULL, tenant TEXT NOT NULL, model TEXT NOT NULL, day TEXT NOT NULL, "
                     "started_at REAL NOT NULL, cost_usd TEXT, cached INTEGER NOT NULL, "
                     "body TEXT NOT NULL)")
        for r in old:
            body = r.to_dict()
            conn.execute("INSERT INTO calls (request_id, tenant, model, day, started_at, "
                         "cost_usd, cached, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                         (r.request_id, r.tenant, r.model, r.day, r.started_at,
                          body["cost_usd"], int(r.cached), json.dumps(body)))
    ledger = SQLiteLedger(path)
    ledger.record(rec(3, tenant="t2"))
    records = [*old, rec(3, tenant="t2")]
    from tokenlean.core import totals_of

    for by in ("model", "tenant", "day", "layer"):
        assert ledger.totals(by=by) == totals_of(records, by)  # type: ignore[arg-type]
    assert list(ledger.records()) == records


def test_postgres_ledger_names_what_is_wrong() -> None:
    from tokenlean.core import PostgresLedger

    with pytest.raises(ConfigError, match="table"):
        PostgresLedger("postgresql://nobody@127.0.0.1:1/none", table="calls; DROP TABLE x")
    with pytest.raises(ConfigError, match="cannot open ledger table"):
        PostgresLedger("postgresql://nobody@127.0.0.1:1/none", timeout_s=1)


def reasoning_rec(i: int) -> CallRecord:
    usage = Usage(input_tokens=40, output_tokens=300, reasoning_tokens=256 + i)
    return CallRecord(request_id=f"o{i}", model="o3-mini", usage=usage,
                      cost=price(usage, model="o3-mini"), started_at=1_700_000_000)


@pytest.mark.parametrize("suffix", [".sqlite", ".jsonl"])
def test_totals_keep_reasoning_tokens_apart(tmp_path: Path, suffix: str) -> None:
    from tokenlean.core import totals_of

    ledger = open_ledger(tmp_path / f"ledger{suffix}")
    records = [reasoning_rec(0), reasoning_rec(1), rec(2)]
    for r in records:
        ledger.record(r)
    by_model = {t.key: t for t in ledger.totals(by="model")}
    assert by_model["o3-mini"].reasoning_tokens == 256 + 257
    assert by_model["o3-mini"].output_tokens == 600 and by_model["gpt-4o"].reasoning_tokens == 0
    for by in ("model", "tenant", "day", "layer"):
        assert ledger.totals(by=by) == totals_of(records, by)  # type: ignore[arg-type]


def test_a_version_2_ledger_gets_its_reasoning_column(tmp_path: Path) -> None:
    """A ledger written with the sum columns but no reasoning column (user_version 2)
    gets the column once, filled from the rows' bodies; nothing is counted twice."""
    import sqlite3

    path = tmp_path / "v2.sqlite"
    first = SQLiteLedger(path)
    first.record(reasoning_rec(0))
    first.record(rec(1))
    first.close()
    with sqlite3.connect(path) as conn:  # back to the version-2 schema
        conn.execute("ALTER TABLE calls DROP COLUMN reasoning_tokens")
        conn.execute("PRAGMA user_version = 2")
    ledger = SQLiteLedger(path)
    ledger.record(reasoning_rec(2))
    from tokenlean.core import totals_of

    records = [reasoning_rec(0), rec(1), reasoning_rec(2)]
    (o3,) = [t for t in ledger.totals(by="model") if t.key == "o3-mini"]
    assert o3.reasoning_tokens == 256 + 258
    for by in ("model", "tenant", "day", "layer"):
        assert ledger.totals(by=by) == totals_of(records, by)  # type: ignore[arg-type]
    assert [t.calls for t in ledger.totals(by="layer")] == [1]  # layers not inserted twice
