"""The ledger contract, one test for every store (SQLite, JSONL, PostgreSQL):

* concurrent writers: 4 processes x 4 threads append; nothing lost, nothing doubled;
* ``kill -9`` mid-write: every row whose write returned survives, nothing is torn;
* totals: what ``totals(by=...)`` answers (SQL for SQLite and PostgreSQL) equals
  the documented definition (:func:`tokenlean.core.ledger.totals_of`) over the
  rows the ledger holds, for every grouping, with unpriced calls reported unknown.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
import uuid
import warnings
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tokenlean.core import (
    CallRecord,
    LayerReport,
    TokenleanWarning,
    Usage,
    open_ledger,
    price,
)
from tokenlean.core.ledger import totals_of

STORES = ["sqlite", "jsonl", "postgres"]


@pytest.fixture(params=STORES)
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """What ``open_ledger`` takes for a fresh, empty ledger of each store."""
    if request.param == "sqlite":
        yield str(tmp_path / "ledger.sqlite")
    elif request.param == "jsonl":
        yield str(tmp_path / "ledger.jsonl")
    else:
        import psycopg

        server = request.getfixturevalue("postgres_server")
        name = f"ledger_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(server.dsn, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        yield server.dsn.replace("/postgres?", f"/{name}?")


def stored(target: str) -> list[CallRecord]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TokenleanWarning)  # a torn last JSONL line is allowed
        ledger = open_ledger(target)
        try:
            return list(ledger.records())
        finally:
            ledger.close()


CONCURRENT = textwrap.dedent("""
    import sys, threading
    from tokenlean.core import CallRecord, Usage, open_ledger
    target, proc = sys.argv[1], sys.argv[2]
    ledger = open_ledger(target)

    def work(t):
        for i in range(50):
            ledger.record(CallRecord(request_id=f"{proc}-{t}-{i}", model="gpt-4o",
                                     tenant=f"tenant{proc}",
                                     usage=Usage(input_tokens=i + 1, output_tokens=1)))

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    ledger.close()
""")


def test_concurrent_writers_lose_and_double_nothing(target: str, tmp_path: Path) -> None:
    open_ledger(target).close()  # the schema exists before the race (each store also races it)
    script = tmp_path / "worker.py"
    script.write_text(CONCURRENT)
    procs = [subprocess.Popen([sys.executable, str(script), target, str(p)]) for p in range(4)]
    assert [p.wait(timeout=180) for p in procs] == [0, 0, 0, 0]
    ids = [r.request_id for r in stored(target)]
    assert len(ids) == len(set(ids)) == 4 * 4 * 50
    ledger = open_ledger(target)
    totals = {t.key: t for t in ledger.totals(by="tenant")}
    assert all(totals[f"tenant{p}"].input_tokens == 4 * sum(range(1, 51)) for p in range(4))
    assert all(totals[f"tenant{p}"].calls == 200 for p in range(4))
    assert {r.tenant for r in ledger.records(tenant="tenant2")} == {"tenant2"}
    ledger.close()


WRITER = textwrap.dedent("""
    import sys, threading
    from tokenlean.core import CallRecord, LayerReport, Usage, open_ledger
    ledger = open_ledger(sys.argv[1])
    lock = threading.Lock()

    def work(t):
        i = 0
        while True:
            rid = f"{t}-{i}"
            ledger.record(CallRecord(
                request_id=rid, model="gpt-4o", usage=Usage(input_tokens=i, output_tokens=1),
                layers=(LayerReport(layer="compress", saved_input_tokens=i),)))
            with lock:  # printed only after the write returned
                sys.stdout.write(rid + "\\n")
                sys.stdout.flush()
            i += 1

    for t in range(4):
        threading.Thread(target=work, args=(t,), daemon=True).start()
    threading.Event().wait()
""")


def test_kill_9_mid_write_loses_no_written_row(target: str, tmp_path: Path) -> None:
    open_ledger(target).close()
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    proc = subprocess.Popen([sys.executable, str(script), target], stdout=subprocess.PIPE,
                            text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert proc.stdout is not None
    written: list[str] = []
    per_thread = dict.fromkeys("0123", 0)
    deadline = time.monotonic() + 90
    while min(per_thread.values()) < 25 and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        written.append(line.strip())
        per_thread[written[-1].split("-")[0]] += 1
    os.kill(proc.pid, signal.SIGKILL)  # the threads are mid-write
    rest, _ = proc.communicate(timeout=30)
    written += [line for line in rest.splitlines() if line]
    assert proc.returncode == -signal.SIGKILL
    assert min(per_thread.values()) >= 25, f"the writer did not get going: {per_thread}"
    if target.endswith(".sqlite"):
        assert sqlite3.connect(target).execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    rows = stored(target)
    ids = {r.request_id for r in rows}
    assert [rid for rid in written if rid not in ids] == []
    assert len(ids) == len(rows), "a row was written twice"
    ledger = open_ledger(target)  # the totals agree with the rows that survived
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TokenleanWarning)
        for by in ("model", "layer"):
            assert ledger.totals(by=by) == totals_of(rows, by)  # type: ignore[arg-type]
    ledger.close()


def contract_records() -> list[CallRecord]:
    """Priced, unpriced and cached calls, two tenants, two days, several layers."""
    out: list[CallRecord] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TokenleanWarning)  # no price known for house-model
        for i in range(12):
            model = ("gpt-4o", "gpt-4o-mini", "house-model")[i % 3]
            usage = Usage(input_tokens=1000 + i, output_tokens=50 + i, cache_read_tokens=i * 10,
                          reasoning_tokens=i)
            cached = i % 5 == 4
            cost = price(Usage() if cached else usage, model=model)
            layers = (LayerReport(layer="templates", saved_input_tokens=i,
                                  saved_usd=None if cost is None else Decimal(i) / 10**7),
                      LayerReport(layer="cache" if cached else "budget",
                                  saved_input_tokens=1000 * cached, saved_output_tokens=7,
                                  saved_usd=None if cost is None else Decimal("0.0000123")))
            out.append(CallRecord(request_id=f"r{i}", model=model, tenant=f"t{i % 2}",
                                  usage=Usage() if cached else usage, cost=cost, cached=cached,
                                  started_at=1.7e9 + 86_400 * (i % 3), layers=layers,
                                  cache_score=0.9 if cached else None))
    return out


@pytest.mark.parametrize("by", ["model", "tenant", "day", "layer"])
def test_totals_equal_the_definition(target: str, by: Any) -> None:
    records = contract_records()
    ledger = open_ledger(target)
    for record in records:
        ledger.record(record)
    assert list(ledger.records()) == records  # rows round-trip, in order
    got = ledger.totals(by=by)
    assert got == totals_of(records, by)
    if by != "layer":
        assert sum(t.calls for t in got) == len(records)
        assert sum(t.unpriced_calls for t in got) == 4  # the house-model calls
        assert any(t.cost_usd is None for t in got)  # unknown, never $0
    only = ledger.totals(by=by, tenant="t1")
    assert only == totals_of([r for r in records if r.tenant == "t1"], by)
    ledger.close()


def test_postgres_ledger_comes_back_after_the_server_restarts(postgres_server: Any) -> None:
    """A killed PostgreSQL drops the ledger's connection: writes through write_record warn
    once and the calls go on; after the restart the ledger reconnects on its own."""
    from tokenlean.core import write_record

    ledger = open_ledger(postgres_server.dsn)
    rec = contract_records()[0]
    ledger.record(rec)
    postgres_server.kill()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            write_record(ledger, rec)
            write_record(ledger, rec)  # the same outage: silent
    finally:
        postgres_server.start()
    assert [str(w.message) for w in caught
            if issubclass(w.category, TokenleanWarning)][0].startswith("tokenlean sink")
    assert len([w for w in caught if issubclass(w.category, TokenleanWarning)]) == 1
    write_record(ledger, rec)  # reconnects, ends the outage
    assert [r.request_id for r in ledger.records()].count(rec.request_id) == 2
    ledger.close()
