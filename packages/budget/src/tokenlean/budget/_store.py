"""Where budget state lives: spent and reserved amounts per budget key.

Every store implements the same four operations, each atomic:

* ``reserve(reservation_id, keys, decide)`` reads the accounts of ``keys``,
  calls ``decide(accounts) -> claims`` (which may raise to refuse the call)
  and adds the claims to the accounts' *reserved* amounts, all in one
  transaction. A claim carries its limits and is applied with a guarded
  ``UPDATE ... WHERE spent + reserved + amount <= limit``, so no interleaving
  of callers can push an account past its limit.
* ``settle(reservation_id, nano, tokens)`` drops the reservation and adds
  what the call really cost to *spent*.
* ``release(reservation_id)`` drops the reservation (the call never ran).
* ``accounts(keys)`` reads accounts.
* ``learn(key, value)`` (optional) keeps the largest ``value`` and a count on
  ``key``: the layer's record of how far a model overran its output bound.
* ``calibration(keys)`` and ``update_calibration(key, update)`` (optional) read
  and atomically rewrite small text documents: the length predictor's
  calibration per (model, route) (:mod:`tokenlean.budget._calibration`).

Money is in whole nano-dollars (integers); tokens are integers.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeVar, runtime_checkable

from tokenlean.core import ConfigError, default_ledger_path
from tokenlean.core.sqlite import open_shared_sqlite

__all__ = ["Account", "BudgetStore", "Claim", "SQLiteBudgetStore"]

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class Account:
    """Spent and reserved amounts of one budget key."""

    key: str
    spent_nano: int = 0
    spent_tokens: int = 0
    reserved_nano: int = 0
    reserved_tokens: int = 0

    @property
    def spent_usd(self) -> float:
        return self.spent_nano / 1e9

    @property
    def reserved_usd(self) -> float:
        return self.reserved_nano / 1e9


@dataclass(frozen=True, slots=True)
class Claim:
    """An amount to reserve on ``key``; limits ``None`` mean unguarded (policy "warn")."""

    key: str
    nano: int
    tokens: int
    limit_nano: int | None = None
    limit_tokens: int | None = None


class ClaimRejected(Exception):
    """A guarded claim did not fit (internal: the decide step is the public refusal)."""


Decide = Callable[[Mapping[str, Account]], Sequence[Claim]]


@runtime_checkable
class BudgetStore(Protocol):
    def reserve(self, reservation_id: str, keys: Sequence[str], decide: Decide) -> Sequence[Claim]:
        ...

    def settle(self, reservation_id: str, nano: int, tokens: int) -> None: ...

    def charge_reserved(self, reservation_id: str) -> None: ...

    def release(self, reservation_id: str) -> None: ...

    def accounts(self, keys: Sequence[str]) -> dict[str, Account]: ...


class SQLiteBudgetStore:
    """Budget state in a SQLite file (WAL), shared by threads and processes.

    ``path`` defaults to the ledger's file (``$TOKENLEAN_HOME/ledger.sqlite``);
    ``":memory:"`` keeps state in this process only. A reservation older than
    ``stale_after_s`` (its process died mid-call) is charged as spent on the
    next reservation: an unknown outcome is never counted as $0.
    """

    _SCHEMA = """
    CREATE TABLE IF NOT EXISTS budget_accounts (
        key TEXT PRIMARY KEY,
        spent_nano INTEGER NOT NULL DEFAULT 0,
        spent_tokens INTEGER NOT NULL DEFAULT 0,
        reserved_nano INTEGER NOT NULL DEFAULT 0,
        reserved_tokens INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE IF NOT EXISTS budget_reservations (
        id TEXT NOT NULL,
        key TEXT NOT NULL,
        nano INTEGER NOT NULL,
        tokens INTEGER NOT NULL,
        created_at REAL NOT NULL,
        PRIMARY KEY (id, key)
    );
    CREATE INDEX IF NOT EXISTS budget_reservations_created ON budget_reservations (created_at);
    CREATE TABLE IF NOT EXISTS budget_calibration (
        key TEXT PRIMARY KEY,
        state TEXT NOT NULL,
        updated_at REAL NOT NULL
    );
    """

    def __init__(self, path: str | Path | None = None, *, timeout_s: float = 30.0,
                 stale_after_s: float = 3600.0, clock: Callable[[], float] = time.time) -> None:
        if stale_after_s <= 0:
            raise ConfigError("stale_after_s must be positive")
        self.path = str(path) if path is not None else str(default_ledger_path())
        try:
            self._conn = open_shared_sqlite(self.path, self._SCHEMA, timeout_s=timeout_s)
        except (OSError, sqlite3.Error) as exc:
            raise ConfigError(f"cannot open budget store {self.path}: {exc}") from exc
        self._lock = threading.Lock()
        self._stale_after_s = stale_after_s
        self._clock = clock

    # one transaction, BEGIN IMMEDIATE: the write lock is taken before reading,
    # so the read -> decide -> guarded update sequence is serialised across
    # threads (self._lock) and processes (SQLite's lock).
    def _transaction(self, body: Callable[[sqlite3.Connection], _T]) -> _T:
        with self._lock:
            conn = self._conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = body(conn)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            return result

    def _sweep(self, conn: sqlite3.Connection) -> None:
        cutoff = self._clock() - self._stale_after_s
        stale = conn.execute("SELECT id FROM budget_reservations WHERE created_at < ?",
                             (cutoff,)).fetchall()
        for (rid,) in {row for row in stale}:
            self._finish(conn, rid, charge=True)

    @staticmethod
    def _read(conn: sqlite3.Connection, keys: Sequence[str]) -> dict[str, Account]:
        out = {}
        for key in keys:
            row = conn.execute("SELECT spent_nano, spent_tokens, reserved_nano, reserved_tokens "
                               "FROM budget_accounts WHERE key = ?", (key,)).fetchone()
            out[key] = Account(key, *row) if row else Account(key)
        return out

    def reserve(self, reservation_id: str, keys: Sequence[str], decide: Decide) -> Sequence[Claim]:
        def body(conn: sqlite3.Connection) -> Sequence[Claim]:
            self._sweep(conn)
            claims = decide(self._read(conn, keys))
            now = self._clock()
            for claim in claims:
                conn.execute("INSERT OR IGNORE INTO budget_accounts (key) VALUES (?)", (claim.key,))
                cur = conn.execute(
                    "UPDATE budget_accounts SET reserved_nano = reserved_nano + :nano, "
                    "reserved_tokens = reserved_tokens + :tokens WHERE key = :key "
                    "AND (:ln IS NULL OR spent_nano + reserved_nano + :nano <= :ln) "
                    "AND (:lt IS NULL OR spent_tokens + reserved_tokens + :tokens <= :lt)",
                    {"nano": claim.nano, "tokens": claim.tokens, "key": claim.key,
                     "ln": claim.limit_nano, "lt": claim.limit_tokens},
                )
                if cur.rowcount != 1:
                    raise ClaimRejected(claim.key)
                conn.execute(
                    "INSERT INTO budget_reservations (id, key, nano, tokens, created_at) "
                    "VALUES (?, ?, ?, ?, ?) ON CONFLICT (id, key) DO UPDATE SET "
                    "nano = nano + excluded.nano, tokens = tokens + excluded.tokens",
                    (reservation_id, claim.key, claim.nano, claim.tokens, now),
                )
            return claims

        return self._transaction(body)

    @staticmethod
    def _finish(conn: sqlite3.Connection, reservation_id: str, *, charge: bool,
                nano: int | None = None, tokens: int | None = None) -> None:
        rows = conn.execute("SELECT key, nano, tokens FROM budget_reservations WHERE id = ?",
                            (reservation_id,)).fetchall()
        for key, r_nano, r_tokens in rows:
            add_nano = (r_nano if nano is None else nano) if charge else 0
            add_tokens = (r_tokens if tokens is None else tokens) if charge else 0
            conn.execute(
                "UPDATE budget_accounts SET reserved_nano = MAX(0, reserved_nano - ?), "
                "reserved_tokens = MAX(0, reserved_tokens - ?), spent_nano = spent_nano + ?, "
                "spent_tokens = spent_tokens + ? WHERE key = ?",
                (r_nano, r_tokens, add_nano, add_tokens, key),
            )
        conn.execute("DELETE FROM budget_reservations WHERE id = ?", (reservation_id,))

    def settle(self, reservation_id: str, nano: int, tokens: int) -> None:
        self._transaction(lambda conn: self._finish(conn, reservation_id, charge=True,
                                                    nano=nano, tokens=tokens))

    def charge_reserved(self, reservation_id: str) -> None:
        """Settle at the reserved amounts (the outcome is unknown, e.g. an aborted stream)."""
        self._transaction(lambda conn: self._finish(conn, reservation_id, charge=True))

    def release(self, reservation_id: str) -> None:
        self._transaction(lambda conn: self._finish(conn, reservation_id, charge=False))

    def learn(self, key: str, value: int) -> None:
        """Record ``value`` on ``key``: its largest in ``spent_nano``, their count in
        ``spent_tokens`` (the layer's per-model overrun)."""
        def body(conn: sqlite3.Connection) -> None:
            conn.execute("INSERT OR IGNORE INTO budget_accounts (key) VALUES (?)", (key,))
            conn.execute("UPDATE budget_accounts SET spent_nano = MAX(spent_nano, ?), "
                         "spent_tokens = spent_tokens + 1 WHERE key = ?", (value, key))

        self._transaction(body)

    def calibration(self, keys: Sequence[str]) -> dict[str, str]:
        """The calibration documents stored under ``keys`` (absent keys left out)."""
        with self._lock:
            out = {}
            for key in keys:
                row = self._conn.execute("SELECT state FROM budget_calibration WHERE key = ?",
                                         (key,)).fetchone()
                if row is not None:
                    out[key] = str(row[0])
            return out

    def update_calibration(self, key: str, update: Callable[[str | None], str]) -> str:
        """Replace the document on ``key`` with ``update(current)`` in one transaction
        (concurrent learners never lose an observation); returns the new document."""
        def body(conn: sqlite3.Connection) -> str:
            row = conn.execute("SELECT state FROM budget_calibration WHERE key = ?",
                               (key,)).fetchone()
            new = update(None if row is None else str(row[0]))
            conn.execute("INSERT INTO budget_calibration (key, state, updated_at) "
                         "VALUES (?, ?, ?) ON CONFLICT (key) DO UPDATE SET "
                         "state = excluded.state, updated_at = excluded.updated_at",
                         (key, new, self._clock()))
            return new

        return self._transaction(body)

    def accounts(self, keys: Sequence[str]) -> dict[str, Account]:
        with self._lock:
            return self._read(self._conn, keys)

    def all_accounts(self) -> list[Account]:
        """Every account in the store, by key."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT key, spent_nano, spent_tokens, reserved_nano, reserved_tokens "
                "FROM budget_accounts ORDER BY key").fetchall()
        return [Account(*row) for row in rows]

    def reset(self, key: str) -> None:
        """Forget what ``key`` has spent (an operator's top-up); reservations stay."""
        self._transaction(lambda conn: conn.execute(
            "UPDATE budget_accounts SET spent_nano = 0, spent_tokens = 0 WHERE key = ?", (key,)))

    def close(self) -> None:
        with self._lock:
            self._conn.close()
