"""The cost ledger: one row per call, appended atomically, queried for totals.

Three stores share one interface (and one contract test: concurrent writers,
``kill -9`` mid-write, totals):

* :class:`SQLiteLedger` (default): WAL journal, one transaction per row (the
  call and its layer reports). A row is committed or absent; ``kill -9``
  mid-write loses at most the row being written and never corrupts the file.
  Several threads and processes may append at once.
* :class:`JSONLLedger`: one JSON object per line, each appended with a single
  ``write`` on an ``O_APPEND`` descriptor. A torn last line (a write cut by a
  crash or power loss: no newline at the end of the file) is repaired when the
  ledger is opened: the fragment is moved to ``<path>.torn`` and the file cut
  back to its last complete row, with one warning, so the next row starts on
  its own line instead of being glued to the fragment (and lost). A reader of a
  file torn since it was opened skips the fragment with a warning.
* :class:`~tokenlean.core.PostgresLedger`: one PostgreSQL table, for an app
  that runs on many machines (``pip install 'tokenlean[ledger-postgres]'``).

``totals(by=...)`` groups by ``"model"``, ``"tenant"``, ``"day"`` or
``"layer"``; pass ``tenant=`` to restrict it to one tenant. The SQL stores
compute totals in SQL (exact decimal sums); :func:`totals_of` is the
definition they agree with, and what the JSONL store runs. A group's cost is
``None`` (unknown, never $0) as soon as one of its calls has no known price.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import sqlite3
import threading
import warnings
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

from ._tally import unpriced, unpriced_saving
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
    "totals_of",
]

GroupBy = Literal["model", "tenant", "day", "layer"]
GROUPS: tuple[GroupBy, ...] = ("model", "tenant", "day", "layer")
POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def default_ledger_path() -> Path:
    """``$TOKENLEAN_HOME/ledger.sqlite``, by default ``~/.tokenlean/ledger.sqlite``."""
    home = Path(os.environ.get("TOKENLEAN_HOME", Path.home() / ".tokenlean"))
    return home / "ledger.sqlite"


@dataclass(frozen=True, slots=True)
class Totals:
    """Sums over a group of calls (or, grouped by layer, of one layer's reports).

    ``cost_usd`` is ``None`` (unknown) when ``unpriced_calls`` of the group had
    no known price, else the group's spend; ``priced_cost_usd`` always sums the
    priced calls. ``saved_usd`` / ``priced_saved_usd`` / ``unpriced_savings``
    say the same of the savings. Grouped by layer, ``calls`` counts the calls
    the layer reported on and ``cached_calls`` those it answered.
    """

    key: str
    calls: int
    input_tokens: int
    output_tokens: int
    priced_cost_usd: Decimal
    unpriced_calls: int
    saved_tokens: int
    priced_saved_usd: Decimal
    unpriced_savings: int
    cached_calls: int
    reasoning_tokens: int = 0  # of output_tokens: the reasoning share (billed as output)

    @property
    def cost_usd(self) -> Decimal | None:
        return None if self.unpriced_calls else self.priced_cost_usd

    @property
    def saved_usd(self) -> Decimal | None:
        return None if self.unpriced_savings else self.priced_saved_usd

    @classmethod
    def from_row(cls, row: Iterable[Any]) -> Totals:
        """From a SQL result row in field order (NULL sums are 0, money as Decimal)."""
        key, calls, tin, tout, cost, unpriced_n, saved, saved_usd, unpriced_s, cached, \
            reasoning = row
        return cls(str(key), int(calls), int(tin or 0), int(tout or 0),
                   Decimal(str(cost or 0)), int(unpriced_n or 0), int(saved or 0),
                   Decimal(str(saved_usd or 0)), int(unpriced_s or 0), int(cached or 0),
                   int(reasoning or 0))


@runtime_checkable
class LedgerStore(Protocol):
    def record(self, record: CallRecord) -> None: ...

    async def arecord(self, record: CallRecord) -> None: ...

    def records(self, *, tenant: str | None = None) -> Iterator[CallRecord]: ...

    def totals(self, *, by: GroupBy = "model", tenant: str | None = None) -> list[Totals]: ...

    def close(self) -> None: ...


def check_group(by: str) -> None:
    if by not in GROUPS:
        raise ConfigError(f"by must be one of {list(GROUPS)}, got {by!r}")


@dataclass(frozen=True, slots=True)
class RowSums:
    """What the SQL stores keep in columns beside a row's JSON body, so totals are
    computed in SQL: per call, and per layer report ``(layer, saved_tokens,
    saved_usd, answered)``."""

    input_tokens: int
    output_tokens: int
    reasoning_tokens: int
    saved_tokens: int
    saved_usd: Decimal
    unpriced_savings: int
    layers: tuple[tuple[str, int, Decimal | None, bool], ...]

    @classmethod
    def of(cls, record: CallRecord) -> RowSums:
        last = len(record.layers) - 1
        return cls(
            input_tokens=record.usage.input_tokens, output_tokens=record.usage.output_tokens,
            reasoning_tokens=record.usage.reasoning_tokens, saved_tokens=record.saved_tokens,
            saved_usd=sum((r.saved_usd or Decimal(0) for r in record.layers), Decimal(0)),
            unpriced_savings=sum(unpriced_saving(r) for r in record.layers),
            layers=tuple((r.layer, r.saved_input_tokens + r.saved_output_tokens, r.saved_usd,
                          record.cached and i == last) for i, r in enumerate(record.layers)))


def totals_of(records: Iterable[CallRecord], by: GroupBy) -> list[Totals]:
    """Totals of ``records`` grouped ``by`` a key: the definition every store agrees with."""
    check_group(by)
    acc: dict[str, list[Any]] = defaultdict(
        lambda: [0, 0, 0, Decimal(0), 0, 0, Decimal(0), 0, 0, 0])
    for rec in records:
        sums = RowSums.of(rec)
        if by == "layer":
            for layer, saved, saved_usd, answered in sums.layers:
                row = acc[layer]
                row[0] += 1
                row[5] += saved
                row[6] += saved_usd or 0
                row[7] += int(saved_usd is None and saved > 0)
                row[8] += int(answered)
            continue
        row = acc[{"model": rec.model, "tenant": rec.tenant, "day": rec.day}[by]]
        row[0] += 1
        row[1] += sums.input_tokens
        row[2] += sums.output_tokens
        row[3] += rec.cost_usd or 0
        row[4] += int(unpriced(rec))
        row[5] += sums.saved_tokens
        row[6] += sums.saved_usd
        row[7] += sums.unpriced_savings
        row[8] += int(rec.cached)
        row[9] += sums.reasoning_tokens
    return [Totals(key, *values) for key, values in sorted(acc.items())]


def sorted_totals(rows: Iterable[Iterable[Any]]) -> list[Totals]:
    """SQL result rows as :class:`Totals`, sorted by key the way :func:`totals_of` sorts
    (code points, whatever the database's collation)."""
    return sorted((Totals.from_row(row) for row in rows), key=lambda t: t.key)


class _DecimalSum:
    """SQLite aggregate: the exact sum of decimal strings (SQLite has no decimal type)."""

    def __init__(self) -> None:
        self.total = Decimal(0)

    def step(self, value: str | None) -> None:
        if value is not None:
            self.total += Decimal(value)

    def finalize(self) -> str:
        return str(self.total)


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
        body TEXT NOT NULL,
        input_tokens INTEGER,
        output_tokens INTEGER,
        reasoning_tokens INTEGER,
        saved_tokens INTEGER,
        saved_usd TEXT,
        unpriced_savings INTEGER
    );
    CREATE INDEX IF NOT EXISTS calls_tenant_day ON calls (tenant, day);
    CREATE INDEX IF NOT EXISTS calls_model ON calls (model);
    CREATE TABLE IF NOT EXISTS call_layers (
        call_id INTEGER NOT NULL,
        layer TEXT NOT NULL,
        saved_tokens INTEGER NOT NULL,
        saved_usd TEXT,
        answered INTEGER NOT NULL
    );
    CREATE INDEX IF NOT EXISTS call_layers_call ON call_layers (call_id);
    """
    # the sum columns a ledger written before totals moved into SQL lacks (version 2),
    # and the reasoning column one written before reasoning was kept apart lacks (3)
    _SUM_COLUMNS = {"input_tokens": "INTEGER", "output_tokens": "INTEGER",
                    "saved_tokens": "INTEGER", "saved_usd": "TEXT", "unpriced_savings": "INTEGER",
                    "reasoning_tokens": "INTEGER"}
    _VERSION = 3

    def __init__(self, path: str | Path | None = None, *, timeout_s: float = 30.0) -> None:
        self.path = Path(path) if path is not None else default_ledger_path()
        try:
            self._conn = open_shared_sqlite(self.path, self._SCHEMA, timeout_s=timeout_s)
            # typeshed's aggregate protocol is int-only; SQLite passes the TEXT values through
            self._conn.create_aggregate("decimal_sum", 1, _DecimalSum)  # type: ignore[arg-type]
            self._upgrade()
        except (OSError, sqlite3.Error) as exc:
            raise ConfigError(f"cannot open ledger {self.path}: {exc}") from exc
        self._lock = threading.Lock()

    def _upgrade(self) -> None:
        """Give a ledger written by an older tokenlean its sum columns and its reasoning
        column (once, in one transaction; the rows' bodies are read this one time)."""
        if self._conn.execute("PRAGMA user_version").fetchone()[0] >= self._VERSION:
            return
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            if self._conn.execute("PRAGMA user_version").fetchone()[0] < self._VERSION:
                have = {row[1] for row in self._conn.execute("PRAGMA table_info(calls)")}
                for name, kind in self._SUM_COLUMNS.items():
                    if name not in have:
                        self._conn.execute(f"ALTER TABLE calls ADD COLUMN {name} {kind}")
                old = self._conn.execute(
                    "SELECT id, body FROM calls WHERE input_tokens IS NULL").fetchall()
                for row_id, body in old:
                    self._write_sums(row_id, RowSums.of(CallRecord.from_dict(json.loads(body))))
                # rows that had their sums but not the reasoning column: from the body
                self._conn.execute(
                    "UPDATE calls SET reasoning_tokens = "
                    "COALESCE(json_extract(body, '$.reasoning_tokens'), 0) "
                    "WHERE reasoning_tokens IS NULL")
                self._conn.execute(f"PRAGMA user_version = {self._VERSION}")
            self._conn.execute("COMMIT")
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise

    def _write_sums(self, row_id: int, sums: RowSums) -> None:
        self._conn.execute(
            "UPDATE calls SET input_tokens = ?, output_tokens = ?, reasoning_tokens = ?, "
            "saved_tokens = ?, saved_usd = ?, unpriced_savings = ? WHERE id = ?",
            (sums.input_tokens, sums.output_tokens, sums.reasoning_tokens, sums.saved_tokens,
             str(sums.saved_usd), sums.unpriced_savings, row_id))
        self._conn.executemany(
            "INSERT INTO call_layers (call_id, layer, saved_tokens, saved_usd, answered) "
            "VALUES (?, ?, ?, ?, ?)",
            [(row_id, layer, saved, None if usd is None else str(usd), int(answered))
             for layer, saved, usd, answered in sums.layers])

    def record(self, record: CallRecord) -> None:
        body = record.to_dict()
        sums = RowSums.of(record)
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                cursor = self._conn.execute(
                    "INSERT INTO calls (request_id, tenant, model, day, started_at, cost_usd,"
                    " cached, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (record.request_id, record.tenant, record.model, record.day,
                     record.started_at, body["cost_usd"], int(record.cached),
                     json.dumps(body, default=str)))
                assert cursor.lastrowid is not None
                self._write_sums(cursor.lastrowid, sums)
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise

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
        """Totals computed by one SQL query (exact decimal sums of the money columns)."""
        check_group(by)
        where, args = ("WHERE c.tenant = ?", (tenant,)) if tenant is not None else ("", ())
        if by == "layer":
            sql = ("SELECT l.layer, COUNT(*), 0, 0, '0', 0, SUM(l.saved_tokens), "
                   "decimal_sum(l.saved_usd), SUM(l.saved_usd IS NULL AND l.saved_tokens > 0), "
                   "SUM(l.answered), 0 FROM call_layers l JOIN calls c ON c.id = l.call_id "
                   f"{where} GROUP BY l.layer")
        else:
            sql = (f"SELECT c.{by}, COUNT(*), SUM(c.input_tokens), SUM(c.output_tokens), "
                   "decimal_sum(c.cost_usd), SUM(c.cost_usd IS NULL AND NOT c.cached), "
                   "SUM(c.saved_tokens), decimal_sum(c.saved_usd), SUM(c.unpriced_savings), "
                   f"SUM(c.cached), SUM(c.reasoning_tokens) FROM calls c {where} "
                   f"GROUP BY c.{by}")
        with self._lock:
            rows = self._conn.execute(sql, args).fetchall()
        return sorted_totals(rows)

    def close(self) -> None:
        with self._lock:
            self._conn.close()


_TAIL_BLOCK = 1 << 16


def _last_newline_end(fd: int, size: int) -> int:
    """The offset just past the last newline in the first ``size`` bytes (0: none)."""
    end = size
    while end > 0:
        start = max(0, end - _TAIL_BLOCK)
        block = os.pread(fd, end - start, start)
        at = block.rfind(b"\n")
        if at >= 0:
            return start + at + 1
        end = start
    return 0


def repair_torn_tail(path: Path) -> int:
    """Cut a torn last line (no newline at the end) off the JSONL file ``path``,
    appending it to ``<path>.torn``; one :class:`TokenleanWarning` says so. Returns
    the bytes moved aside (0: the file ends with a complete row). Runs under an
    exclusive ``flock`` that every :class:`JSONLLedger` write holds shared, so a
    row another process is appending is never cut."""
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        size = os.fstat(fd).st_size
        if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
            return 0
        keep = _last_newline_end(fd, size)
        fragment = os.pread(fd, size - keep, keep)
        aside = path.with_name(path.name + ".torn")
        with aside.open("ab") as fh:
            fh.write(fragment + b"\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.ftruncate(fd, keep)
    finally:
        os.close(fd)  # releases the lock
    warnings.warn(f"{path}: its last line was torn (an interrupted write, {len(fragment)} "
                  f"bytes); moved it to {aside} so the next row starts on its own line",
                  TokenleanWarning, stacklevel=3)
    return len(fragment)


class JSONLLedger:
    """Ledger as JSON lines, one atomic ``O_APPEND`` write per call; a torn last
    line is moved aside when the ledger is opened (:func:`repair_torn_tail`)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            repair_torn_tail(self.path)
        except OSError as exc:
            raise ConfigError(f"cannot open ledger {self.path}: {exc}") from exc
        self._lock = threading.Lock()

    def record(self, record: CallRecord) -> None:
        line = (json.dumps(record.to_dict(), default=str) + "\n").encode()
        with self._lock:
            fcntl.flock(self._fd, fcntl.LOCK_SH)  # a repair in another process waits
            try:
                written = os.write(self._fd, line)
            finally:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
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
        """Totals by reading every line (a JSONL file has no index): :func:`totals_of`."""
        return totals_of(self.records(tenant=tenant), by)

    def close(self) -> None:
        with self._lock:
            os.close(self._fd)


def open_ledger(path: str | Path | None = None) -> LedgerStore:
    """The ledger ``path`` names: a :class:`~tokenlean.core.PostgresLedger` for a
    ``postgresql://`` URL, a :class:`JSONLLedger` for ``*.jsonl``, else a
    :class:`SQLiteLedger` (the default path if None)."""
    if path is not None and str(path).startswith(POSTGRES_SCHEMES):
        from ._postgres import PostgresLedger

        return PostgresLedger(str(path))
    if path is not None and str(path).endswith(".jsonl"):
        return JSONLLedger(path)
    return SQLiteLedger(path)
