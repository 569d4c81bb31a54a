"""Budget state in Redis, for several processes or machines.

The same contract as :class:`~tokenlean.budget.SQLiteBudgetStore`, made
atomic with optimistic transactions: ``WATCH`` the accounts, read, decide,
check each claim against its limit, then ``MULTI``/``EXEC`` the increments;
if another client touched a watched account in between, ``EXEC`` fails and
the whole read-decide-write is retried. Layout (``prefix`` defaults to
``tokenlean:budget:``): ``{prefix}acct:{key}`` hashes (spent/reserved nano
and tokens), ``{prefix}res:{id}`` hashes (one field per key:
``"nano,tokens"``) and a ``{prefix}res_index`` sorted set by creation time,
swept for stale reservations like the SQLite store (charged, never $0).
The length predictor's calibration documents are strings at
``{prefix}cal:{key}``, rewritten with the same optimistic transactions.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from tokenlean.core import ConfigError
from tokenlean.core._optional import require

from ._store import Account, Claim, ClaimRejected, Decide

__all__ = ["RedisBudgetStore"]

_FIELDS = ("spent_nano", "spent_tokens", "reserved_nano", "reserved_tokens")


class RedisBudgetStore:
    """Budget store on a Redis server (``client`` or ``url``).

    A slow server is an outage: with ``url``, connecting and each reply time out
    after ``timeout_s`` (default 0.25 s, like the cache's Redis store; redis-py's
    retries off), and the layer passes the call through with one warning. A
    ``client`` you pass keeps its own timeouts.
    """

    def __init__(self, client: Any = None, *, url: str | None = None,
                 prefix: str = "tokenlean:budget:", stale_after_s: float = 3600.0,
                 max_retries: int = 1000, clock: Callable[[], float] = time.time,
                 timeout_s: float = 0.25) -> None:
        if isinstance(timeout_s, bool) or not isinstance(timeout_s, (int, float)) \
                or not 0 < timeout_s < float("inf"):
            raise ConfigError(f"timeout_s must be a positive number of seconds, got {timeout_s!r}")
        if stale_after_s <= 0:
            raise ConfigError("stale_after_s must be positive")
        if client is None:
            redis = require("redis", extra="budget-redis", feature="RedisBudgetStore")
            if url is None:
                raise ConfigError("RedisBudgetStore needs client= or url='redis://host:6379/0'")
            from redis.backoff import NoBackoff
            from redis.retry import Retry

            client = redis.Redis.from_url(url, socket_timeout=timeout_s,
                                          socket_connect_timeout=timeout_s,
                                          retry=Retry(NoBackoff(), 0))
        self._r = client
        self._prefix = prefix
        self._stale_after_s = stale_after_s
        self._max_retries = max_retries
        self._clock = clock
        self._watch_error = require("redis", extra="budget-redis",
                                    feature="RedisBudgetStore").WatchError

    def _acct(self, key: str) -> str:
        return f"{self._prefix}acct:{key}"

    def _res(self, rid: str) -> str:
        return f"{self._prefix}res:{rid}"

    @property
    def _index(self) -> str:
        return f"{self._prefix}res_index"

    @staticmethod
    def _account(key: str, raw: dict[Any, Any]) -> Account:
        values = {(k.decode() if isinstance(k, bytes) else k): int(v) for k, v in raw.items()}
        return Account(key, *(values.get(f, 0) for f in _FIELDS))

    def _retrying(self, body: Callable[[Any], Any]) -> Any:
        for _ in range(self._max_retries):
            with self._r.pipeline() as pipe:
                try:
                    return body(pipe)
                except self._watch_error:
                    continue
        raise ConfigError(f"Redis budget store: gave up after {self._max_retries} conflicts")

    def _sweep(self) -> None:
        cutoff = self._clock() - self._stale_after_s
        for rid in self._r.zrangebyscore(self._index, 0, cutoff):
            self.charge_reserved(rid.decode() if isinstance(rid, bytes) else rid)

    def reserve(self, reservation_id: str, keys: Sequence[str], decide: Decide) -> Sequence[Claim]:
        self._sweep()

        def body(pipe: Any) -> Sequence[Claim]:
            names = [self._acct(k) for k in keys]
            pipe.watch(*names)
            accounts = {k: self._account(k, pipe.hgetall(n)) for k, n in zip(keys, names,
                                                                             strict=True)}
            claims = decide(accounts)
            for claim in claims:
                acct = accounts.get(claim.key) or Account(claim.key)
                if claim.limit_nano is not None and \
                        acct.spent_nano + acct.reserved_nano + claim.nano > claim.limit_nano:
                    raise ClaimRejected(claim.key)
                if claim.limit_tokens is not None and \
                        acct.spent_tokens + acct.reserved_tokens + claim.tokens \
                        > claim.limit_tokens:
                    raise ClaimRejected(claim.key)
            pipe.multi()
            for claim in claims:
                pipe.hincrby(self._acct(claim.key), "reserved_nano", claim.nano)
                pipe.hincrby(self._acct(claim.key), "reserved_tokens", claim.tokens)
                pipe.hset(self._res(reservation_id), claim.key, f"{claim.nano},{claim.tokens}")
            if claims:
                pipe.zadd(self._index, {reservation_id: self._clock()})
            pipe.execute()
            return claims

        return self._retrying(body)

    def _finish(self, reservation_id: str, *, charge: bool, nano: int | None = None,
                tokens: int | None = None) -> None:
        def body(pipe: Any) -> None:
            pipe.watch(self._res(reservation_id))
            rows = pipe.hgetall(self._res(reservation_id))
            pipe.multi()
            for raw_key, raw_value in rows.items():
                key = raw_key.decode() if isinstance(raw_key, bytes) else raw_key
                value = raw_value.decode() if isinstance(raw_value, bytes) else raw_value
                r_nano, r_tokens = (int(v) for v in value.split(","))
                name = self._acct(key)
                pipe.hincrby(name, "reserved_nano", -r_nano)
                pipe.hincrby(name, "reserved_tokens", -r_tokens)
                if charge:
                    pipe.hincrby(name, "spent_nano", r_nano if nano is None else nano)
                    pipe.hincrby(name, "spent_tokens", r_tokens if tokens is None else tokens)
            pipe.delete(self._res(reservation_id))
            pipe.zrem(self._index, reservation_id)
            pipe.execute()

        self._retrying(body)

    def settle(self, reservation_id: str, nano: int, tokens: int) -> None:
        self._finish(reservation_id, charge=True, nano=nano, tokens=tokens)

    def charge_reserved(self, reservation_id: str) -> None:
        self._finish(reservation_id, charge=True)

    def release(self, reservation_id: str) -> None:
        self._finish(reservation_id, charge=False)

    def learn(self, key: str, value: int) -> None:
        """Record ``value`` on ``key``: its largest in ``spent_nano``, their count in
        ``spent_tokens`` (the layer's per-model overrun)."""
        name = self._acct(key)

        def body(pipe: Any) -> None:
            pipe.watch(name)
            known = int(pipe.hget(name, "spent_nano") or 0)
            pipe.multi()
            pipe.hset(name, "spent_nano", max(known, value))
            pipe.hincrby(name, "spent_tokens", 1)
            pipe.execute()

        self._retrying(body)

    def _cal(self, key: str) -> str:
        return f"{self._prefix}cal:{key}"

    def calibration(self, keys: Sequence[str]) -> dict[str, str]:
        """The calibration documents stored under ``keys`` (absent keys left out)."""
        values = self._r.mget([self._cal(k) for k in keys]) if keys else []
        return {k: v.decode() if isinstance(v, bytes) else str(v)
                for k, v in zip(keys, values, strict=True) if v is not None}

    def update_calibration(self, key: str, update: Callable[[str | None], str]) -> str:
        """Replace the document on ``key`` with ``update(current)`` atomically (retried
        when another client rewrote it in between); returns the new document."""
        name = self._cal(key)

        def body(pipe: Any) -> str:
            pipe.watch(name)
            raw = pipe.get(name)
            new = update(None if raw is None else
                         raw.decode() if isinstance(raw, bytes) else str(raw))
            pipe.multi()
            pipe.set(name, new)
            pipe.execute()
            return new

        return str(self._retrying(body))

    def accounts(self, keys: Sequence[str]) -> dict[str, Account]:
        return {k: self._account(k, self._r.hgetall(self._acct(k))) for k in keys}

    def reset(self, key: str) -> None:
        self._r.hset(self._acct(key), mapping={"spent_nano": 0, "spent_tokens": 0})

    def close(self) -> None:
        self._r.close()
