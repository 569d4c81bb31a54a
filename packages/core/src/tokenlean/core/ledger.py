"""The cost ledger: one row per call, appended atomically, queried for totals.

Two stores share one interface:

* :class:`SQLiteLedger` (default): WAL journal, one transaction per row. A row
  is committed or absent; ``kill -9`` mid-write loses at most the row being
  written and never corrupts the file (SQLite's WAL guarantees this for
  process crashes with ``synchronous=NORMAL``). Several threads and processes
  may append at once.
* :class:`JSONLLedger`: one JSON object per line, each appended with a single
  ``write`` on an ``O_APPEND`` descriptor; a torn last line (power loss) is
  skipped on read with a warning.

``totals(by=...)`` groups by ``"model"``, ``"tenant"``, ``"day"`` or
``"layer"``. Pass ``tenant=`` to restrict every query to one tenant.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import threading
import warnings
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

from .errors import ConfigError, TokenleanWarning
from .records import CallRecord
from .sqlite import open_shared_sqlite

__all__ = [
    "JSONLLedger",
    "LedgerStore",
    "SQLiteLedger",
    "Totals",
    "default_ledger_path",
    "open_ledger",
]

GroupBy = Literal["model", "tenant", "day", "layer"]
_GROUPS = ("model", "tenant", "day", "layer")


def default_ledger_path() -> Path:
    """``$TOKENLEAN_HOME/ledger.sqlite``, by default ``~/.tokenlean/ledger.sqlite``."""
    home = Path(os.environ.get("TOKENLEAN_HOME", Path.home() / ".tokenlean"))
    return home / "ledger.sqlite"


@dataclass(frozen=True, slots=True)
class Totals:
    """Sums over a group of calls. ``cost_usd`` sums only priced calls;
    ``unpriced_calls`` says how many had no known price."""

    key: str
    calls: int
    input_tokens: int
    output_tokens: int
    cost_usd: Decimal
    unpriced_calls: int
    saved_tokens: int
    saved_usd: Decimal
    cached_calls: int


@runtime_checkable
class LedgerStore(Protocol):
    def record(self, record: CallRecord) -> None: ...

    async def arecord(self, record: CallRecord) -> None: ...

    def records(self, *, tenant: str | None = None) -> Iterator[CallRecord]: ...

    def totals(self, *, by: GroupBy = "model", tenant: str | None = None) -> list[Totals]: ...


def _check_group(by: str) -> None:
    if by not in _GROUPS:
        raise ConfigError(f"by must be one of {list(_GROUPS)}, got {by!r}")


def _totals(records: Iterator[CallRecord], by: GroupBy) -> list[Totals]:
    """Group records in Python: the one definition both stores agree with."""
    acc: dict[str, list[Any]] = defaultdict(lambda: [0, 0, 0, Decimal(0), 0, 0, Decimal(0), 0])
    for rec in records:
        if by == "layer":
            for rep in rec.layers:
                row = acc[rep.layer]
                row[0] += 1
                row[5] += rep.saved_input_tokens + rep.saved_output_tokens
                row[6] += rep.saved_usd or 0
                row[7] += int(rec.cached and rep.saved_output_tokens > 0)
            continue
        key = {"model": rec.model, "tenant": rec.tenant, "day": rec.day}[by]
        row = acc[key]
        row[0] += 1
        row[1] += rec.usage.input_tokens
        row[2] += rec.usage.output_tokens
        if rec.cost is None and not rec.cached:
            row[4] += 1
        else:
            row[3] += rec.cost_usd or 0
        row[5] += rec.saved_tokens
        row[6] += sum((r.saved_usd or Decimal(0) for r in rec.layers), Decimal(0))
        row[7] += int(rec.cached)
    return [Totals(key, *values) for key, values in sorted(acc.items())]


class SQLiteLedger:
    """Ledger in a SQLite file (WAL). Safe for many threads and processes."""

    _SCHEMA = """
    CREATE TABLE IF NOT EXISTS calls (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        request_id TEXT NOT NULL,
        tenant TEXT NOT NULL,
        model TEXT NOT NULL,
        day TEXT NOT NULL,
        started_at REAL NOT NULL,
        cost_usd TEXT,
        cached INTEGER NOT NULL,
        body TEXT NOT NULL
    );
    CREATE INDEX IF NOT EXISTS calls_tenant_day ON calls (tenant, day);
    CREATE INDEX IF NOT EXISTS calls_model ON calls (model);
    """

    def __init__(self, path: str | Path | None = None, *, timeout_s: float = 30.0) -> None:
        self.path = Path(path) if path is not None else default_ledger_path()
        try:
            self._conn = open_shared_sqlite(self.path, self._SCHEMA, timeout_s=timeout_s)
        except (OSError, sqlite3.Error) as exc:
            raise ConfigError(f"cannot open ledger {self.path}: {exc}") from exc
        self._lock = threading.Lock()

    def record(self, record: CallRecord) -> None:
        body = record.to_dict()
        with self._lock:
            self._conn.execute(
                "INSERT INTO calls (request_id, tenant, model, day, started_at, cost_usd, cached,"
                " body) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (record.request_id, record.tenant, record.model, record.day, record.started_at,
                 body["cost_usd"], int(record.cached), json.dumps(body, default=str)),
            )

    async def arecord(self, record: CallRecord) -> None:
        await asyncio.to_thread(self.record, record)

    def records(self, *, tenant: str | None = None) -> Iterator[CallRecord]:
        sql = "SELECT body FROM calls"
        args: tuple[str, ...] = ()
        if tenant is not None:
            sql, args = sql + " WHERE tenant = ?", (tenant,)
        with self._lock:
            rows = self._conn.execute(sql + " ORDER BY id", args).fetchall()
        for (body,) in rows:
            yield CallRecord.from_dict(json.loads(body))

    def count(self) -> int:
        with self._lock:
            return int(self._conn.execute("SELECT COUNT(*) FROM calls").fetchone()[0])

    def totals(self, *, by: GroupBy = "model", tenant: str | None = None) -> list[Totals]:
        _check_group(by)
        return _totals(self.records(tenant=tenant), by)

    def close(self) -> None:
        with self._lock:
            self._conn.close()


class JSONLLedger:
    """Ledger as JSON lines, one atomic ``O_APPEND`` write per call."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError as exc:
            raise ConfigError(f"cannot open ledger {self.path}: {exc}") from exc
        self._lock = threading.Lock()

    def record(self, record: CallRecord) -> None:
        line = (json.dumps(record.to_dict(), default=str) + "\n").encode()
        with self._lock:
            written = os.write(self._fd, line)
        if written != len(line):
            raise OSError(f"short write to {self.path} ({written}/{len(line)} bytes)")

    async def arecord(self, record: CallRecord) -> None:
        await asyncio.to_thread(self.record, record)

    def records(self, *, tenant: str | None = None) -> Iterator[CallRecord]:
        with self.path.open(encoding="utf-8", errors="replace") as fh:
            for number, line in enumerate(fh, 1):
                if not line.endswith("\n"):
                    warnings.warn(f"{self.path}:{number}: torn last line skipped",
                                  TokenleanWarning, stacklevel=2)
                    break
                try:
                    rec = CallRecord.from_dict(json.loads(line))
                except (ValueError, KeyError) as exc:
                    warnings.warn(f"{self.path}:{number}: unreadable row skipped ({exc})",
                                  TokenleanWarning, stacklevel=2)
                    continue
                if tenant is None or rec.tenant == tenant:
                    yield rec

    def count(self) -> int:
        return sum(1 for _ in self.records())

    def totals(self, *, by: GroupBy = "model", tenant: str | None = None) -> list[Totals]:
        _check_group(by)
        return _totals(self.records(tenant=tenant), by)

    def close(self) -> None:
        with self._lock:
            os.close(self._fd)


def open_ledger(path: str | Path | None = None) -> SQLiteLedger | JSONLLedger:
    """A JSONL ledger for ``*.jsonl`` paths, SQLite otherwise (default path if None)."""
    if path is not None and str(path).endswith(".jsonl"):
        return JSONLLedger(path)
    return SQLiteLedger(path)
