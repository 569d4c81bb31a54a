"""Redis store: the exact cache shared by many processes or machines, with TTLs.

Each entry is one Redis hash at ``{prefix}:{sha256(tenant)[:32]}:{exact key}``
with a server-side expiry when the entry has one. Redis does no vector search
here (``search`` returns nothing), so with this store the cache serves exact hits
only; put :class:`SQLiteStore` or PostgreSQL in front for semantic matching.

The label log (:mod:`._labels`) of a scope is one stream at
``{prefix}:labels:{sha256(scope)[:32]}`` whose entry ids are ``0-{seq}``: a Lua
script appends a batch atomically with the next ids after the stream's
last-generated id (which trimming keeps, so ``seq`` only grows, with no gaps a
reader could skip past) and trims the stream to exactly ``keep`` entries on every
add; ``labels_after`` is one ``XRANGE``. Label keys never match the entry keys'
pattern, so ``count`` and ``invalidate`` leave them alone.

A slow server is an outage: connecting times out after ``connect_timeout_s`` and
each command after ``timeout_s`` (both 0.25 s by default), with no retry, and the
cache passes the call through. (A ``client=`` you pass keeps its own settings.)
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from tokenlean.core import ConfigError, InvalidRequestError
from tokenlean.core._optional import require

from ._deadline import positive_seconds
from ._entry import Entry, invalidation_tenant

__all__ = ["RedisStore"]

_FIELDS = ("tenant", "key", "model", "context", "query", "response", "created_at",
           "expires_at")


#: KEYS[1] the scope's stream; ARGV[1] keep, ARGV[2..] the bodies. Appends them with ids
#: 0-(last+1), 0-(last+2), ... (last: the stream's last-generated id, kept by XTRIM) and
#: trims to the newest ``keep``; returns the last seq. One script, so a batch is
#: atomic and ids become visible in order (a reader never skips one).
_ADD_LABELS = """
local key, last = KEYS[1], 0
if redis.call('EXISTS', key) == 1 then
  local info = redis.call('XINFO', 'STREAM', key)
  for i = 1, #info, 2 do
    if info[i] == 'last-generated-id' then
      local ms, n = string.match(info[i + 1], '^(%d+)%-(%d+)$')
      if ms ~= '0' then
        return redis.error_reply('ERR ' .. key .. ' is not a tokenlean label log')
      end
      last = tonumber(n)
    end
  end
end
for i = 2, #ARGV do
  last = last + 1
  redis.call('XADD', key, string.format('0-%d', last), 'b', ARGV[i])
end
redis.call('XTRIM', key, 'MAXLEN', ARGV[1])
return last
"""


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


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
        self._add_labels = client.register_script(_ADD_LABELS)

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

    # ---- LabelLog (the false-hit bound's labels, see _labels.py) -----------------

    def _labels_name(self, scope: str) -> str:
        return f"{self.prefix}:labels:{_tenant_tag(scope)}"

    def add_labels(self, scope: str, bodies: Sequence[str], keep: int) -> None:
        """Append ``bodies`` in order (one round trip, atomic) and trim the scope's
        log to its ``keep`` newest labels (on every call, exactly)."""
        if keep < 0:
            raise InvalidRequestError(f"keep must be >= 0, got {keep}")
        if bodies:
            self._add_labels(keys=[self._labels_name(scope)], args=[int(keep), *bodies])

    def labels_after(self, scope: str, seq: int, limit: int) -> list[tuple[int, str]]:
        if limit <= 0:
            return []
        rows = self._r.xrange(self._labels_name(scope), min=f"0-{max(int(seq) + 1, 0)}",
                              max="+", count=int(limit))
        out: list[tuple[int, str]] = []
        for entry_id, fields in rows:
            body = fields.get(b"b", fields.get("b"))
            if body is not None:
                out.append((int(_text(entry_id).partition("-")[2]), _text(body)))
        return out

    def close(self) -> None:
        self._r.close()
