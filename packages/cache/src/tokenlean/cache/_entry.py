"""One stored answer, and the store interface every backend implements."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

from tokenlean.core import InvalidRequestError, Response, Usage

__all__ = ["CorruptEntry", "Entry", "Store", "invalidation_filter", "invalidation_tenant",
           "response_from_json", "response_to_json"]


class CorruptEntry(ValueError):
    """A stored entry could not be decoded; the cache treats it as a miss and removes it."""


@dataclass(frozen=True, slots=True)
class Entry:
    """A cached answer with the keys it was stored under."""

    id: str  # the exact key
    tenant: str
    model: str
    context: str | None
    query: str
    response: str  # JSON, see response_to_json
    created_at: float
    expires_at: float | None = None


def response_to_json(response: Response) -> str:
    """The stored form of ``response``: compact UTF-8 JSON, or ASCII-escaped JSON
    when the text holds lone surrogates (a provider can return them; UTF-8
    cannot store them, and escaping round-trips them exactly)."""
    u = response.usage
    body = {
        "text": response.text, "finish_reason": response.finish_reason, "model": response.model,
        "tool_calls": [dict(c) for c in response.tool_calls],
        "usage": {"input_tokens": u.input_tokens, "output_tokens": u.output_tokens,
                  "cache_read_tokens": u.cache_read_tokens,
                  "cache_write_tokens": u.cache_write_tokens,
                  "reasoning_tokens": u.reasoning_tokens},
        # a streamed answer's chunk texts, so a replay streams like the original
        **({"chunks": list(response.chunks)}
           if response.chunks and "".join(response.chunks) == response.text else {}),
    }
    blob = json.dumps(body, ensure_ascii=False)
    try:
        blob.encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(body, ensure_ascii=True)
    return blob


def response_from_json(blob: str | bytes, *, score: float, raw: Any = None) -> Response:
    """The cached :class:`Response` (``cached=True``, original usage); raises
    :class:`CorruptEntry` when ``blob`` is not what :func:`response_to_json` wrote.
    Entries written before chunks were kept (no ``"chunks"``) replay as one chunk."""
    try:
        data = json.loads(blob)
        chunks = data.get("chunks", [])
        if not isinstance(chunks, list) or (chunks and "".join(chunks) != data["text"]):
            raise ValueError("its chunks do not add up to its text")
        return Response(text=data["text"], finish_reason=data["finish_reason"],
                        usage=Usage(**data["usage"]), model=data["model"], cached=True,
                        cache_score=score, tool_calls=tuple(data["tool_calls"]), raw=raw,
                        chunks=tuple(chunks))
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise CorruptEntry(f"cached entry is corrupt: {exc}") from None


def invalidation_tenant(tenant: object, all_tenants: bool) -> str | None:
    """The tenant an ``invalidate`` call removes entries of (None: every tenant).

    A tenant is required: an empty or missing one is an :class:`InvalidRequestError`
    (it once meant "everyone" in one store and "no one" in another); removing every
    tenant's entries takes ``all_tenants=True``, said on purpose."""
    if all_tenants is True:
        if tenant is not None:
            raise InvalidRequestError(
                f"invalidate: give tenant= or all_tenants=True, not both (got tenant={tenant!r})")
        return None
    if not isinstance(tenant, str) or not tenant:
        raise InvalidRequestError(
            f"invalidate needs a tenant (a non-empty string), got {tenant!r}; nothing was "
            "removed. To remove every tenant's entries, pass all_tenants=True")
    return tenant


def invalidation_filter(placeholder: str, *, tenant: str | None, model: str | None,
                        older_than: float | None) -> tuple[str, list[Any]]:
    """``(" WHERE ..." or "", arguments)`` selecting the entries an ``invalidate``
    call names, for a SQL store whose parameter placeholder is ``placeholder``."""
    where, args = [], []
    for column, op, value in (("tenant", "=", tenant), ("model", "=", model),
                              ("created_at", "<", older_than)):
        if value is not None:
            where.append(f"{column} {op} {placeholder}")
            args.append(value)
    return (" WHERE " + " AND ".join(where) if where else ""), args


@runtime_checkable
class Store(Protocol):
    """Where entries live. ``vector`` may be None (exact-only stores ignore it).

    ``invalidate`` needs a tenant (or ``all_tenants=True``): an empty or missing
    one is an :class:`InvalidRequestError` that removes nothing.

    ``search`` returns the ``k`` entries of one tenant and context most similar
    to ``vector`` with their cosine scores, best first. A store that cannot
    search returns ``[]`` (exact matching still works).
    """

    def get(self, tenant: str, key: str, now: float) -> Entry | None: ...

    def put(self, entry: Entry, vector: np.ndarray | None) -> None: ...

    def search(self, tenant: str, context: str, vector: np.ndarray, k: int,
               min_score: float, now: float) -> list[tuple[Entry, float]]: ...

    def delete(self, tenant: str, keys: Sequence[str]) -> None: ...

    def invalidate(self, *, tenant: str | None = None, model: str | None = None,
                   older_than: float | None = None, all_tenants: bool = False) -> int:
        """Remove one tenant's entries (``model`` / ``older_than`` narrow it), or
        every tenant's with ``all_tenants=True``; see :func:`invalidation_tenant`."""

    def count(self, tenant: str | None = None) -> int: ...

    def close(self) -> None: ...
