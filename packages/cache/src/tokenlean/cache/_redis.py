"""Redis store: the exact cache shared by many processes or machines, with TTLs.

Each entry is one Redis hash at ``{prefix}:{sha256(tenant)[:32]}:{exact key}``
with a server-side expiry when the entry has one. Redis does no vector search
here (``search`` returns nothing), so with this store the cache serves exact hits
only; put :class:`SQLiteStore` or PostgreSQL in front for semantic matching.

A slow server is an outage: connecting times out after ``connect_timeout_s`` and
each command after ``timeout_s`` (both 0.25 s by default), with no retry, and the
cache passes the call through. (A ``client=`` you pass keeps its own settings.)
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from tokenlean.core import ConfigError
from tokenlean.core._optional import require

from ._deadline import positive_seconds
from ._entry import Entry, invalidation_tenant

__all__ = ["RedisStore"]

_FIELDS = ("tenant", "key", "model", "context", "query", "response", "created_at",
           "expires_at")


def _glob_literal(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


def _tenant_tag(tenant: str) -> str:
    return hashlib.sha256(tenant.encode("utf-8")).hexdigest()[:32]


class RedisStore:
    """``url`` like ``redis://localhost:6379/0``, or an existing ``redis.Redis`` client."""

    def __init__(self, url: str | None = None, *, client: Any = None,
                 prefix: str = "tokenlean:cache", timeout_s: float = 0.25,
                 connect_timeout_s: float | None = None) -> None:
        if (url is None) == (client is None):
            raise ConfigError("give RedisStore a url or a client (one of them)")
        self.timeout_s = positive_seconds("timeout_s", timeout_s)
        self.connect_timeout_s = positive_seconds(
            "connect_timeout_s", timeout_s if connect_timeout_s is None else connect_timeout_s)
        if client is None:
            redis = require("redis", extra="redis", feature="RedisStore")
            from redis.backoff import NoBackoff
            from redis.retry import Retry

            # no retry: redis-py retries a timed-out command 3 times by default, which
            # would make one hung server cost 4 timeouts per call
            client = redis.Redis.from_url(url, socket_timeout=self.timeout_s,
                                          socket_connect_timeout=self.connect_timeout_s,
                                          retry=Retry(NoBackoff(), 0))
        self._r = client
        self.prefix = prefix

    def _name(self, tenant: str, key: str) -> str:
        return f"{self.prefix}:{_tenant_tag(tenant)}:{key}"

    def get(self, tenant: str, key: str, now: float) -> Entry | None:
        data = self._r.hgetall(self._name(tenant, key))
        if not data:
            return None
        d = {k.decode(): v.decode("utf-8") for k, v in data.items()}
        try:
            entry = Entry(tenant=d["tenant"], id=d["key"], model=d["model"],
                          context=d.get("context") or None, query=d.get("query", ""),
                          response=d["response"], created_at=float(d["created_at"]),
                          expires_at=float(d["expires_at"]) if d.get("expires_at") else None)
        except (KeyError, ValueError):
            self._r.delete(self._name(tenant, key))  # corrupt: remove, miss
            return None
        if entry.tenant != tenant or (entry.expires_at is not None and entry.expires_at <= now):
            return None
        return entry

    def put(self, entry: Entry, vector: np.ndarray | None) -> None:
        name = self._name(entry.tenant, entry.id)
        mapping = {"tenant": entry.tenant, "key": entry.id, "model": entry.model,
                   "context": entry.context or "", "query": entry.query,
                   "response": entry.response, "created_at": repr(entry.created_at),
                   "expires_at": "" if entry.expires_at is None else repr(entry.expires_at)}
        pipe = self._r.pipeline(transaction=True)
        pipe.delete(name)
        pipe.hset(name, mapping=mapping)
        if entry.expires_at is not None:
            ttl_ms = max(1, int((entry.expires_at - entry.created_at) * 1000))
            pipe.pexpire(name, ttl_ms)
        pipe.execute()

    def search(self, tenant: str, context: str, vector: np.ndarray, k: int,
               min_score: float, now: float) -> list[tuple[Entry, float]]:
        return []

    def delete(self, tenant: str, keys: Sequence[str]) -> None:
        if keys:
            self._r.delete(*(self._name(tenant, k) for k in keys))

    def _scan(self, tenant: str | None) -> Any:
        # the prefix is matched literally (glob characters escaped) and a tenant tag is
        # exactly 32 characters, so another prefix that extends this one never matches
        tag = "?" * 32 if tenant is None else _tenant_tag(tenant)
        pattern = f"{_glob_literal(self.prefix)}:{tag}:*"
        return self._r.scan_iter(match=pattern, count=500)

    def invalidate(self, *, tenant: str | None = None, model: str | None = None,
                   older_than: float | None = None, all_tenants: bool = False) -> int:
        tenant = invalidation_tenant(tenant, all_tenants)
        removed = 0
        for name in self._scan(tenant):
            if model is not None or older_than is not None:
                got_model, created = self._r.hmget(name, "model", "created_at")
                if model is not None and (got_model or b"").decode() != model:
                    continue
                if older_than is not None and created and float(created) >= older_than:
                    continue
            removed += int(self._r.delete(name))
        return removed

    def count(self, tenant: str | None = None) -> int:
        return sum(1 for _ in self._scan(tenant))

    def close(self) -> None:
        self._r.close()
