"""Open a SQLite file that several processes share (ledger, budget store, cache).

SQLite's busy timeout covers ordinary reads and writes, but two things fail
*immediately* with ``database is locked`` when another process opens the same
fresh file at the same moment: switching the journal to WAL and running the
first ``CREATE TABLE``. Both are idempotent, so we retry them with a short
back-off until the caller's timeout is spent.
"""

from __future__ import annotations

import random
import sqlite3
import time
from pathlib import Path

__all__ = ["open_shared_sqlite"]


def _is_locked(exc: sqlite3.OperationalError) -> bool:
    text = str(exc).lower()
    return "locked" in text or "busy" in text


def _retry(conn: sqlite3.Connection, script: str, deadline: float) -> None:
    delay = 0.005
    while True:
        try:
            conn.executescript(script)
            return
        except sqlite3.OperationalError as exc:
            if not _is_locked(exc) or time.monotonic() >= deadline:
                raise
        time.sleep(delay * (1 + random.random()))
        delay = min(delay * 2, 0.2)


def open_shared_sqlite(path: str | Path, schema: str, *, timeout_s: float) -> sqlite3.Connection:
    """Connect in autocommit mode, enable WAL for files, and create ``schema``.

    Raises ``sqlite3.Error``/``OSError``; callers wrap them in their own
    ``TokenleanError`` subclass so the message names their store.
    """
    path = str(path)
    if path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, timeout=timeout_s, check_same_thread=False,
                           isolation_level=None)
    try:
        conn.execute(f"PRAGMA busy_timeout={int(timeout_s * 1000)}")
        deadline = time.monotonic() + timeout_s
        if path != ":memory:":
            _retry(conn, "PRAGMA journal_mode=WAL;", deadline)
            conn.execute("PRAGMA synchronous=NORMAL")
        _retry(conn, schema, deadline)
    except BaseException:
        conn.close()
        raise
    return conn
