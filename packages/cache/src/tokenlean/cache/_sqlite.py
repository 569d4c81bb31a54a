"""The embedded store: one SQLite file (WAL) plus an in-process vector index.

Several processes may share one file: SQLite's WAL mode serialises writers and
lets readers run alongside; each process keeps its own vector index and, before
every search, appends the rows other processes wrote since (rows carry an
increasing ``seq``). That sync costs one ``PRAGMA data_version`` read when
nothing changed (SQLite bumps it only when another connection commits), so a
lookup is: the exact-key read, that check, the index search and one read of
the few candidate rows -- no statement that scans. Rows deleted elsewhere are
noticed when a candidate is fetched and dropped from the index then. Eviction
past ``max_entries`` removes the oldest entries first.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tokenlean.core import ConfigError, InvalidRequestError
from tokenlean.core.sqlite import open_shared_sqlite

from ._entry import Entry, invalidation_filter, invalidation_tenant
from ._index import VectorIndex

__all__ = ["SQLiteStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS tokenlean_cache (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant TEXT NOT NULL,
    key TEXT NOT NULL,
    model TEXT NOT NULL,
    context TEXT,
    query TEXT NOT NULL,
    response TEXT NOT NULL,
    vector BLOB,
    created_at REAL NOT NULL,
    expires_at REAL,
    UNIQUE (tenant, key)
);
CREATE INDEX IF NOT EXISTS tokenlean_cache_ctx ON tokenlean_cache (tenant, context);
CREATE INDEX IF NOT EXISTS tokenlean_cache_age ON tokenlean_cache (created_at);
CREATE TABLE IF NOT EXISTS tokenlean_cache_labels (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    scope TEXT NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS tokenlean_cache_labels_scope ON tokenlean_cache_labels (scope, seq);
"""
_TRIM_EVERY = 64  # label writes between two trims of a scope's log
_COLS = "tenant, key, model, context, query, response, created_at, expires_at"


def _entry(row: Sequence[Any]) -> Entry:
    return Entry(tenant=row[0], id=row[1], model=row[2], context=row[3], query=row[4],
                 response=row[5], created_at=row[6], expires_at=row[7])


class SQLiteStore:
    """SQLite file + vector index. ``path=":memory:"`` keeps it in this process."""

    def __init__(self, path: str | Path = ":memory:", *, max_entries: int | None = None,
                 ann_from: int = 5_000, timeout_s: float = 5.0) -> None:
        if max_entries is not None and max_entries < 1:
            raise ConfigError("max_entries must be a positive integer or None")
        self.path = str(path)
        self.max_entries = max_entries
        try:
            self._db = open_shared_sqlite(self.path, _SCHEMA, timeout_s=timeout_s)
        except (OSError, sqlite3.Error) as exc:
            raise ConfigError(f"cannot open cache store {self.path}: {exc}") from exc
        self._lock = threading.RLock()
        self._index = VectorIndex(ann_from=ann_from)
        self._seen = 0
        self._puts = 0
        self._version: int | None = None  # PRAGMA data_version at the last sync
        self._dirty = True  # this connection wrote since the last sync
        self._label_writes: dict[str, int] = {}  # per scope, for trimming

    def __repr__(self) -> str:
        return f"SQLiteStore({self.path!r}, max_entries={self.max_entries})"

    # ---- index sync ---------------------------------------------------------

    def _sync(self) -> None:
        version = self._db.execute("PRAGMA data_version").fetchone()[0]
        if version == self._version and not self._dirty:
            return  # no commit by anyone since the last sync
        self._version, self._dirty = version, False
        rows = self._db.execute(
            "SELECT seq, tenant, context, key, vector FROM tokenlean_cache "
            "WHERE seq > ? AND vector IS NOT NULL ORDER BY seq", (self._seen,)).fetchall()
        groups: dict[tuple[str, str, int], tuple[list[str], list[bytes]]] = {}
        for seq, tenant, context, key, blob in rows:
            self._seen = max(self._seen, seq)
            if context is None or not blob or len(blob) % 4:
                continue
            keys, blobs = groups.setdefault((tenant, context, len(blob)), ([], []))
            keys.append(key)
            blobs.append(blob)
        for (tenant, context, size), (keys, blobs) in groups.items():
            matrix = np.frombuffer(b"".join(blobs), dtype=np.float32).reshape(len(keys), size // 4)
            self._index.add_many(tenant, context, keys, matrix)

    # ---- Store --------------------------------------------------------------

    def get(self, tenant: str, key: str, now: float) -> Entry | None:
        with self._lock:
            row = self._db.execute(
                f"SELECT {_COLS} FROM tokenlean_cache WHERE tenant = ? AND key = ?",
                (tenant, key)).fetchone()
        if row is None:
            return None
        entry = _entry(row)
        if entry.expires_at is not None and entry.expires_at <= now:
            return None
        return entry

    def put(self, entry: Entry, vector: np.ndarray | None) -> None:
        blob = None if vector is None else np.asarray(vector, dtype=np.float32).tobytes()
        with self._lock:
            self._db.execute(
                f"INSERT OR REPLACE INTO tokenlean_cache ({_COLS}, vector) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (entry.tenant, entry.id, entry.model, entry.context, entry.query,
                 entry.response, entry.created_at, entry.expires_at, blob))
            self._dirty = True
            self._puts += 1
            if self.max_entries is not None and self._puts % 16 == 0:
                self._evict()

    def _evict(self) -> None:
        over = self.count() - (self.max_entries or 0)
        if over > 0:
            self._db.execute(
                "DELETE FROM tokenlean_cache WHERE seq IN "
                "(SELECT seq FROM tokenlean_cache ORDER BY created_at, seq LIMIT ?)", (over,))

    def search(self, tenant: str, context: str, vector: np.ndarray, k: int,
               min_score: float, now: float) -> list[tuple[Entry, float]]:
        with self._lock:
            self._sync()
            found = self._index.search(tenant, context, vector, k, min_score)
            if not found:
                return []
            rows = self._rows(tenant, [key for key, _ in found])
            out = []
            for key, score in found:
                row = rows.get(key)
                if row is None or row[3] != context:  # deleted (maybe by another process)
                    self._index.remove(tenant, context, key)
                    continue
                entry = _entry(row)
                if entry.expires_at is not None and entry.expires_at <= now:
                    continue
                out.append((entry, score))
            return out

    def _rows(self, tenant: str, keys: Sequence[str]) -> dict[str, Sequence[Any]]:
        """The rows of ``keys`` in one indexed query (the search's candidates)."""
        marks = ", ".join("?" * len(keys))
        return {row[1]: row for row in self._db.execute(
            f"SELECT {_COLS} FROM tokenlean_cache WHERE tenant = ? AND key IN ({marks})",
            (tenant, *keys))}

    def delete(self, tenant: str, keys: Sequence[str]) -> None:
        with self._lock:
            self._db.executemany("DELETE FROM tokenlean_cache WHERE tenant = ? AND key = ?",
                                 [(tenant, k) for k in keys])
            self._dirty = True

    def invalidate(self, *, tenant: str | None = None, model: str | None = None,
                   older_than: float | None = None, all_tenants: bool = False) -> int:
        tenant = invalidation_tenant(tenant, all_tenants)
        where, args = invalidation_filter("?", tenant=tenant, model=model, older_than=older_than)
        sql = f"DELETE FROM tokenlean_cache{where}"
        with self._lock:
            removed = self._db.execute(sql, args).rowcount
            self._index.clear()
            self._seen, self._dirty = 0, True
        return removed

    def purge_expired(self, now: float) -> int:
        with self._lock:
            return self._db.execute(
                "DELETE FROM tokenlean_cache WHERE expires_at IS NOT NULL AND expires_at <= ?",
                (now,)).rowcount

    def count(self, tenant: str | None = None) -> int:
        with self._lock:
            if tenant is None:
                return int(self._db.execute("SELECT COUNT(*) FROM tokenlean_cache").fetchone()[0])
            return int(self._db.execute("SELECT COUNT(*) FROM tokenlean_cache WHERE tenant = ?",
                                        (tenant,)).fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # ---- LabelLog (the false-hit bound's labels, see _labels.py) -----------------

    def add_labels(self, scope: str, bodies: Sequence[str], keep: int) -> None:
        if isinstance(keep, bool) or not isinstance(keep, int) or keep < 0:
            raise InvalidRequestError(f"keep must be a non-negative integer, got {keep!r}")
        with self._lock:
            self._db.execute("BEGIN")
            try:
                self._db.executemany(
                    "INSERT INTO tokenlean_cache_labels (scope, body) VALUES (?, ?)",
                    [(scope, body) for body in bodies])
                writes = self._label_writes[scope] = self._label_writes.get(scope, 0) + 1
                if writes % _TRIM_EVERY == 0 or len(bodies) >= _TRIM_EVERY:
                    self._db.execute(  # all but the `keep` newest of the scope
                        "DELETE FROM tokenlean_cache_labels WHERE scope = ? AND seq <= ("
                        "SELECT seq FROM tokenlean_cache_labels WHERE scope = ? "
                        "ORDER BY seq DESC LIMIT 1 OFFSET ?)", (scope, scope, keep))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def labels_after(self, scope: str, seq: int, limit: int) -> list[tuple[int, str]]:
        with self._lock:
            return [(int(s), str(b)) for s, b in self._db.execute(
                "SELECT seq, body FROM tokenlean_cache_labels WHERE scope = ? AND seq > ? "
                "ORDER BY seq LIMIT ?", (scope, seq, limit))]

    def put_many(self, items: Sequence[tuple[Entry, np.ndarray | None]]) -> None:
        """Bulk insert in one transaction (loading, benchmarks)."""
        with self._lock:
            self._db.execute("BEGIN")
            try:
                for entry, vector in items:
                    blob = None if vector is None else np.asarray(vector, np.float32).tobytes()
                    self._db.execute(
                        f"INSERT OR REPLACE INTO tokenlean_cache ({_COLS}, vector) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (entry.tenant, entry.id, entry.model, entry.context, entry.query,
                         entry.response, entry.created_at, entry.expires_at, blob))
                self._db.execute("COMMIT")
                self._dirty = True
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
