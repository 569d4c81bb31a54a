"""The ledger as one PostgreSQL table, for an app that runs on many machines.

``pip install 'tokenlean[ledger-postgres]'`` (psycopg 3). Each call is one
transaction (its row and its layer reports), so a writer killed mid-write
leaves nothing half-written, and any number of processes on any number of
machines append at once. Totals are one SQL query with exact ``NUMERIC``
sums; the JSON body (``JSONB``) keeps the whole :class:`CallRecord`.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
from collections.abc import Iterator
from typing import Any

from ._optional import require
from .errors import ConfigError
from .ledger import GroupBy, RowSums, Totals, check_group, sorted_totals
from .records import CallRecord

__all__ = ["PostgresLedger"]

_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,40}$")


class PostgresLedger:
    """Ledger in the PostgreSQL table ``table`` (created if missing, with
    ``{table}_layers`` for the per-layer reports) at ``dsn``.

    Safe for many threads (one connection, one transaction per row) and many
    processes and machines. A connection the server dropped is opened again on
    the next call; the failed write raises, and the pipeline and the cost
    handlers turn that into one warning per outage.
    """

    def __init__(self, dsn: str, *, table: str = "tokenlean_calls",
                 timeout_s: float = 30.0) -> None:
        self._psycopg = require("psycopg", extra="ledger-postgres", feature="PostgresLedger")
        if not isinstance(dsn, str) or not dsn:
            raise ConfigError("dsn must be a PostgreSQL connection string, e.g. "
                              "'postgresql://user@host/db'")
        if not isinstance(table, str) or not _NAME.match(table):
            raise ConfigError(f"table must be a lower-case SQL name, got {table!r}")
        self.dsn, self.table, self.timeout_s = dsn, table, timeout_s
        self._lock = threading.Lock()
        self._conn: Any = None
        try:
            with self._lock:
                self._create_schema(self._connection())
        except self._psycopg.Error as exc:
            self.close()
            raise ConfigError(f"cannot open ledger table {table!r}: {exc}") from exc

    def __repr__(self) -> str:
        return f"PostgresLedger(table={self.table!r})"

    def _connection(self) -> Any:
        """The open connection (a new one if the server dropped the last)."""
        if self._conn is None or self._conn.closed or self._conn.broken:
            if self._conn is not None:
                self._conn.close()
            self._conn = self._psycopg.connect(self.dsn, autocommit=True,
                                               connect_timeout=max(1, int(self.timeout_s)))
        return self._conn

    def _create_schema(self, conn: Any) -> None:
        t = self.table
        with conn.transaction():
            # processes creating the table at once would collide in the catalog
            conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (t,))
            conn.execute(f"""
                CREATE TABLE IF NOT EXISTS {t} (
                    id BIGSERIAL PRIMARY KEY,
                    request_id TEXT NOT NULL,
                    tenant TEXT NOT NULL,
                    model TEXT NOT NULL,
                    day TEXT NOT NULL,
                    started_at DOUBLE PRECISION NOT NULL,
                    cost_usd NUMERIC,
                    cached BOOLEAN NOT NULL,
                    input_tokens BIGINT NOT NULL,
                    output_tokens BIGINT NOT NULL,
                    reasoning_tokens BIGINT NOT NULL,
                    saved_tokens BIGINT NOT NULL,
                    saved_usd NUMERIC NOT NULL,
                    unpriced_savings INTEGER NOT NULL,
                    body JSONB NOT NULL)""")
            self._add_reasoning_column(conn)
            conn.execute(f"CREATE INDEX IF NOT EXISTS {t}_tenant_day ON {t} (tenant, day)")
            conn.execute(f"CREATE INDEX IF NOT EXISTS {t}_model ON {t} (model)")
            conn.execute(f"""
                CREATE TABLE IF NOT EXISTS {t}_layers (
                    call_id BIGINT NOT NULL REFERENCES {t} (id) ON DELETE CASCADE,
                    layer TEXT NOT NULL,
                    saved_tokens BIGINT NOT NULL,
                    saved_usd NUMERIC,
                    answered BOOLEAN NOT NULL)""")
            conn.execute(f"CREATE INDEX IF NOT EXISTS {t}_layers_call ON {t}_layers (call_id)")

    def _add_reasoning_column(self, conn: Any) -> None:
        """A table written before reasoning was kept apart gets the column, filled from
        the rows' bodies (once: under the schema lock, only when it is missing)."""
        t = self.table
        missing = conn.execute(
            "SELECT NOT EXISTS (SELECT 1 FROM information_schema.columns WHERE "
            "table_schema = current_schema() AND table_name = %s AND "
            "column_name = 'reasoning_tokens')", (t,)).fetchone()[0]
        if missing:
            conn.execute(f"ALTER TABLE {t} ADD COLUMN reasoning_tokens BIGINT")
            conn.execute(f"UPDATE {t} SET reasoning_tokens = "
                         "COALESCE((body->>'reasoning_tokens')::bigint, 0)")
            conn.execute(f"ALTER TABLE {t} ALTER COLUMN reasoning_tokens SET NOT NULL")

    def record(self, record: CallRecord) -> None:
        body = record.to_dict()
        sums = RowSums.of(record)
        t = self.table
        with self._lock:
            conn = self._connection()
            with conn.transaction():
                (row_id,) = conn.execute(
                    f"INSERT INTO {t} (request_id, tenant, model, day, started_at, cost_usd, "
                    "cached, input_tokens, output_tokens, reasoning_tokens, saved_tokens, "
                    "saved_usd, unpriced_savings, body) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, "
                    "%s, %s, %s, %s, %s, %s::jsonb) RETURNING id",
                    (record.request_id, record.tenant, record.model, record.day,
                     record.started_at, body["cost_usd"], record.cached, sums.input_tokens,
                     sums.output_tokens, sums.reasoning_tokens, sums.saved_tokens, sums.saved_usd,
                     sums.unpriced_savings, json.dumps(body, default=str))).fetchone()
                if sums.layers:
                    with conn.cursor() as cursor:
                        cursor.executemany(
                            f"INSERT INTO {t}_layers (call_id, layer, saved_tokens, saved_usd, "
                            "answered) VALUES (%s, %s, %s, %s, %s)",
                            [(row_id, *layer) for layer in sums.layers])

    async def arecord(self, record: CallRecord) -> None:
        await asyncio.to_thread(self.record, record)

    def records(self, *, tenant: str | None = None) -> Iterator[CallRecord]:
        sql = f"SELECT body FROM {self.table}"
        args: tuple[str, ...] = ()
        if tenant is not None:
            sql, args = sql + " WHERE tenant = %s", (tenant,)
        with self._lock:
            conn = self._connection()
            with conn.transaction():
                rows = conn.execute(sql + " ORDER BY id", args).fetchall()
        for (body,) in rows:
            yield CallRecord.from_dict(body)

    def count(self) -> int:
        with self._lock:
            conn = self._connection()
            with conn.transaction():
                return int(conn.execute(f"SELECT COUNT(*) FROM {self.table}").fetchone()[0])

    def totals(self, *, by: GroupBy = "model", tenant: str | None = None) -> list[Totals]:
        """Totals computed by one SQL query (exact ``NUMERIC`` sums)."""
        check_group(by)
        t = self.table
        where, args = ("WHERE c.tenant = %s", (tenant,)) if tenant is not None else ("", ())
        if by == "layer":
            sql = ("SELECT l.layer, COUNT(*), 0, 0, 0, 0, SUM(l.saved_tokens), "
                   "SUM(l.saved_usd), COUNT(*) FILTER (WHERE l.saved_usd IS NULL "
                   "AND l.saved_tokens > 0), COUNT(*) FILTER (WHERE l.answered), 0 "
                   f"FROM {t}_layers l JOIN {t} c ON c.id = l.call_id {where} GROUP BY l.layer")
        else:
            sql = (f"SELECT c.{by}, COUNT(*), SUM(c.input_tokens), SUM(c.output_tokens), "
                   "SUM(c.cost_usd), COUNT(*) FILTER (WHERE c.cost_usd IS NULL AND NOT c.cached), "
                   "SUM(c.saved_tokens), SUM(c.saved_usd), SUM(c.unpriced_savings), "
                   "COUNT(*) FILTER (WHERE c.cached), SUM(c.reasoning_tokens) "
                   f"FROM {t} c {where} GROUP BY c.{by}")
        with self._lock:
            conn = self._connection()
            with conn.transaction():
                rows = conn.execute(sql, args).fetchall()
        return sorted_totals(rows)

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
