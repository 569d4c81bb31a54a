"""Reliability scenarios for the stores: tenants, ledgers, hung servers, memory.

:func:`run_store_scenarios` runs each against the real parts (SQLite files, a
``redis-server`` it starts, embedded PostgreSQL when ``quick`` is False) and
returns what it counted; a scenario that cannot run here (no ``redis-server``)
says so under ``scenarios`` instead of counting zero.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import tracemalloc
import uuid
import warnings
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from tokenlean.bench._servers import redis_server

__all__ = ["LOOKALIKE_TENANTS", "run_store_scenarios"]

#: tenant names a careless key or pattern would confuse with "acme" (or with each other)
LOOKALIKE_TENANTS = ("acme", "Acme", "acme ", " acme", "acme:", "acme:*", "*", "acme*",
                     "acme\u200b", "ac", "acmeacme", "default", "a:b", "ä")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cross_tenant_hits(store: Any, semantic: bool) -> int:
    """Entries served to another tenant than the one that stored them."""
    import numpy as np

    from tokenlean.cache import Entry

    vector = np.ones(8, dtype=np.float32) / np.sqrt(8)
    for tenant in LOOKALIKE_TENANTS:
        store.put(Entry(id="same-key", tenant=tenant, model="m", context="ctx", query="q",
                        response=tenant, created_at=1.0), vector)
    wrong = 0
    for tenant in LOOKALIKE_TENANTS:
        got = store.get(tenant, "same-key", 2.0)
        wrong += got is None or got.response != tenant
        if semantic:
            found = store.search(tenant, "ctx", vector, 50, -1.0, 2.0)
            wrong += sum(e.response != tenant for e, _ in found)
    return wrong


_WRITER = textwrap.dedent("""
    import sys
    from tokenlean.core import CallRecord, Usage, open_ledger
    ledger = open_ledger(sys.argv[1])
    i = 0
    while True:
        ledger.record(CallRecord(request_id=f"r{i}", model="gpt-4o", tenant="t",
                                 usage=Usage(input_tokens=1, output_tokens=1)))
        print(i, flush=True)
        i += 1
""")


def _killed_writer_rows_lost(path: Path, run_s: float) -> int:
    """Rows a writer had written (it printed their number after ``record`` returned)
    that are missing after it was killed with SIGKILL mid-stream."""
    from tokenlean.core import open_ledger

    proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(path)], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    time.sleep(run_s)
    proc.send_signal(signal.SIGKILL)
    out, _ = proc.communicate(timeout=10)
    acknowledged = {f"r{n}" for n in out.split()}
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")  # a torn tail is repaired with a warning
        ledger = open_ledger(path)
        present = {r.request_id for r in ledger.records()}
        ledger.close()
    return len(acknowledged - present)


def _torn_tail_rows_lost(path: Path) -> int:
    """Rows lost when a write was torn (no newline) and the ledger is opened again."""
    from tokenlean.core import CallRecord, JSONLLedger, Usage

    def row(i: int) -> CallRecord:
        return CallRecord(request_id=f"r{i}", model="gpt-4o", tenant="t",
                          usage=Usage(input_tokens=1, output_tokens=1))

    ledger = JSONLLedger(path)
    ledger.record(row(1))
    ledger.close()
    with path.open("a", encoding="utf-8") as fh:
        fh.write('{"request_id": "torn", "mo')
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        ledger = JSONLLedger(path)
        ledger.record(row(2))
        present = {r.request_id for r in ledger.records()}
        ledger.close()
    return len({"r1", "r2"} - present)


def _hung_store_max_latency_s(url: str, proc: subprocess.Popen[bytes]) -> float:
    """The slowest of three calls through a cache whose redis-server is SIGSTOP'd."""
    from tokenlean.cache import RedisStore, ResponseCache
    from tokenlean.core import FunctionProvider, Message, Pipeline, Request, Response, Usage

    def answer(request: Request) -> Response:
        return Response(text="ok", model=request.model, usage=Usage(input_tokens=1,
                                                                    output_tokens=1))

    cache = ResponseCache(store=RedisStore(url), semantic=False)
    pipe = Pipeline(provider=FunctionProvider(answer), layers=[cache])
    ask = Request(messages=(Message(role="user", content="q"),), model="gpt-4o", temperature=0)
    pipe.run(ask)
    proc.send_signal(signal.SIGSTOP)
    try:
        with warnings.catch_warnings(record=True):
            warnings.simplefilter("always")  # the outage's one warning
            latencies = []
            for _ in range(3):
                started = time.perf_counter()
                pipe.run(ask)
                latencies.append(time.perf_counter() - started)
    finally:
        proc.send_signal(signal.SIGCONT)
    cache.close()
    return max(latencies)


def _semantic_peak_mb(chars: int) -> float:
    """tracemalloc peak (MB) of one lookup + store of a ``chars``-character prompt
    through the default semantic cache (models loaded beforehand)."""
    from tokenlean.cache import ResponseCache
    from tokenlean.core import Message, Request, Response, Usage

    cache = ResponseCache()
    cache.warm()
    text = ("the quarterly report lists revenue and costs per region " * (chars // 56 + 1))[:chars]
    request = Request(messages=(Message(role="system", content="s"),
                                Message(role="user", content=text)), model="gpt-4o",
                      temperature=0)
    tracemalloc.start()
    try:
        cache.process(request)
        cache.on_response(request, Response(text="ok", usage=Usage(input_tokens=1,
                                                                   output_tokens=1)))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    cache.close()
    return round(peak / 2**20, 1)


def _postgres_cross_tenant_hits(dsn: str) -> int | str:
    """Cross-tenant hits on a semantic PostgreSQL store in a new table at ``dsn``."""
    from tokenlean.cache import PostgresStore

    try:
        store = PostgresStore(dsn, dim=8, table=f"t{uuid.uuid4().hex}")
    except Exception as exc:  # the server is not reachable
        return f"skipped: PostgreSQL at the given DSN is not reachable ({exc})"
    try:
        return _cross_tenant_hits(store, semantic=True)
    finally:
        store.close()


def _timed(scenarios: dict[str, Any], name: str, fn: Callable[[], Any]) -> Any:
    started = time.perf_counter()
    value = fn()
    scenarios[name] = {"value": value, "seconds": round(time.perf_counter() - started, 2)}
    return value


def run_store_scenarios(quick: bool, postgres_dsn: str | None = None) -> dict[str, Any]:
    """Run every store scenario; ``quick`` (under a minute) kills each ledger writer
    once and measures memory on 2M characters only. PostgreSQL runs when
    ``postgres_dsn`` names a server (pgvector installed), whatever ``quick`` says."""
    from tokenlean.cache import SQLiteStore

    scenarios: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="tokenlean-stores-") as tmp:
        root = Path(tmp)
        cross = _timed(scenarios, "cross_tenant_sqlite",
                       lambda: _cross_tenant_hits(SQLiteStore(root / "c.sqlite"), semantic=True))
        lost = 0
        runs = 1 if quick else 3
        for kind in ("jsonl", "sqlite"):
            for n in range(runs):
                path = root / f"killed-{n}.{kind}"
                lost += _timed(scenarios, f"ledger_kill9_{kind}_{n}",
                               partial(_killed_writer_rows_lost, path, 0.8))
        lost += _timed(scenarios, "ledger_torn_tail_jsonl",
                       lambda: _torn_tail_rows_lost(root / "torn.jsonl"))
        hang: float | None = None
        with redis_server(root) as redis:
            if redis is None:
                scenarios["redis"] = "skipped: redis-server not installed"
            else:
                from tokenlean.cache import RedisStore

                url, proc = redis.url, redis.proc
                assert proc is not None
                store = RedisStore(url, prefix=f"bench{uuid.uuid4().hex}")
                cross += _timed(scenarios, "cross_tenant_redis",
                                lambda: _cross_tenant_hits(store, semantic=False))
                store.close()
                hang = _timed(scenarios, "redis_sigstop_max_call_s",
                              lambda: round(_hung_store_max_latency_s(url, proc), 3))
        if postgres_dsn is None:
            scenarios["postgres"] = "skipped: no PostgreSQL given (--postgres-dsn)"
        else:
            pg = _timed(scenarios, "cross_tenant_postgres",
                        lambda: _postgres_cross_tenant_hits(postgres_dsn))
            cross += pg if isinstance(pg, int) else 0
        sizes = (2_000_000,) if quick else (2_000_000, 5_000_000)
        memory = {f"{n // 1_000_000}M_chars": _timed(scenarios, f"semantic_peak_mb_{n}",
                                                      partial(_semantic_peak_mb, n))
                  for n in sizes}
    return {"cross_tenant_hits": cross, "ledger_rows_lost": lost,
            "store_hang_max_call_s": hang, "semantic_peak_mb": memory,
            "scenarios": scenarios}
