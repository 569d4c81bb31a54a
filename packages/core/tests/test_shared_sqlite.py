"""Many processes opening one fresh SQLite file at once (ledger, budget store, cache).

Switching to WAL and the first CREATE TABLE fail at once with "database is
locked" when raced, whatever the busy timeout; this once broke CI.
"""

from __future__ import annotations

import multiprocessing as mp
import sqlite3

from tokenlean.core.sqlite import open_shared_sqlite

SCHEMA = "CREATE TABLE IF NOT EXISTS t (a INTEGER); CREATE INDEX IF NOT EXISTS t_a ON t (a);"


def _open_and_write(path: str, barrier, results) -> None:
    barrier.wait()
    try:
        conn = open_shared_sqlite(path, SCHEMA, timeout_s=10)
        conn.execute("INSERT INTO t VALUES (1)")
        mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
        conn.close()
        results.put(mode)
    except Exception as exc:  # reported to the parent, which fails the test
        results.put(repr(exc))


def test_eight_processes_open_one_fresh_file_at_once(tmp_path):
    ctx = mp.get_context("fork")
    for trial in range(5):
        path = str(tmp_path / f"race{trial}.sqlite")
        barrier, results = ctx.Barrier(8), ctx.Queue()
        procs = [ctx.Process(target=_open_and_write, args=(path, barrier, results))
                 for _ in range(8)]
        for p in procs:
            p.start()
        outcomes = [results.get(timeout=60) for _ in procs]
        for p in procs:
            p.join(timeout=60)
        results.close()
        results.join_thread()
        assert outcomes == ["wal"] * 8
        with sqlite3.connect(path) as check:
            assert check.execute("SELECT count(*) FROM t").fetchone()[0] == 8


def test_memory_database_skips_wal_and_still_gets_the_schema():
    conn = open_shared_sqlite(":memory:", SCHEMA, timeout_s=1)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "memory"
    conn.execute("INSERT INTO t VALUES (2)")
    conn.close()


def test_a_non_lock_error_is_raised_at_once(tmp_path):
    import pytest

    with pytest.raises(sqlite3.OperationalError, match="syntax"):
        open_shared_sqlite(tmp_path / "bad.sqlite", "CREATE TABLEX nope;", timeout_s=10)
