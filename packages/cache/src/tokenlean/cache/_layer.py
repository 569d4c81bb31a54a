"""The cache layer: answer a request from a stored answer, or let it through.

``process(request)`` returns a cached :class:`Response` on a hit (exact first,
then semantic), else the request unchanged; ``on_response`` stores the
provider's answer, or says why it did not (a :class:`LayerNote` whose
``detail["not_cached"]`` the pipeline puts in the call's record: one of
:data:`NOT_CACHED`). The pipeline records a hit as a call that cost nothing and
saved the original call's tokens (layer ``cache``).

A *sampled* call (temperature above 0 or unknown, and no seed) is never answered
from the cache, nor stored, unless ``cache_sampled=True``: two askings of it may
rightly get two answers, and a cache that replays one changes what the app
gets.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from tokenlean.core import (
    ConfigError,
    InvalidRequestError,
    LayerNote,
    Request,
    Response,
    TokenleanError,
)
from tokenlean.core.outage import Outage

from ._bound import (
    CHANNELS,
    DEFAULT_MAX_FALSE_HIT_RATE,
    Decision,
    FalseHitBound,
    check_options,
    exact_judge,
    label_for,
)
from ._embed import Embedder, get_embedder
from ._entry import CorruptEntry, Entry, Store, response_from_json, response_to_json
from ._guard import FalseHitGuard
from ._keys import RequestKeys, keys_for
from ._labels import Label, LabelLog
from ._sqlite import SQLiteStore

__all__ = ["DEFAULT_MEMORY_ENTRIES", "MAX_QUERY_CHARS", "NOT_CACHED", "SEMANTIC_SKIPPED",
           "CacheHit", "ResponseCache"]

_PENDING = 4096  # candidates waiting for the model's answer to be labelled

_log = logging.getLogger("tokenlean.cache")
_RECENT_KEYS = 8
# finish reasons of a complete answer, and of one cut by max_tokens (OpenAI's, Anthropic's)
_COMPLETE = frozenset({"stop", "tool_calls", "end_turn", "stop_sequence", "tool_use"})
_TRUNCATED = frozenset({"length", "max_tokens"})


def _cut_at_the_apps_cap(keys: RequestKeys, response: Response) -> bool:
    """Whether a cut answer used all of the app's own ``max_tokens`` (the cap in the
    key): then a repeat, asking the same with the same cap, is cut the same way and
    the answer may be replayed. One cut shorter hit a lower cap a layer set (a
    budget), which a repeat may not get; with no cap from the app, the cut is
    someone else's too."""
    return keys.max_tokens is not None and response.usage.output_tokens >= keys.max_tokens
#: the longest last user turn (characters) the semantic cache embeds and matches; a
#: longer one gets the exact cache only (see ResponseCache's ``max_query_chars``)
MAX_QUERY_CHARS = 2_000
#: why the semantic lookup was skipped, as ``detail["semantic_skipped"]`` of the cache's report
SEMANTIC_SKIPPED: dict[str, str] = {
    "long_query": "the last user turn is longer than max_query_chars: it was matched "
                  "exactly only (never embedded), so memory per call stays bounded and a "
                  "long prompt never matches another that only shares its beginning",
}
#: entries the default in-memory store keeps (oldest evicted first)
DEFAULT_MEMORY_ENTRIES = 10_000
#: why an answer was not stored, as ``detail["not_cached"]`` of the record's cache report
NOT_CACHED: dict[str, str] = {
    "sampled": "the call samples (temperature above 0 or unknown, no seed) and "
               "cache_sampled is off",
    "truncated": "the answer was cut short of the app's own max_tokens (by a lower cap a "
                 "layer set, or with no cap from the app): a repeat may not be cut there",
    "content_filter": "the provider filtered the answer (finish_reason 'content_filter')",
    "error": "the answer is an error (finish_reason 'error')",
    "unknown_finish_reason": "the provider gave a finish_reason that does not say the "
                             "answer is complete",
    "store_error": "the store failed (see the TokenleanWarning)",
}


@dataclass(frozen=True, slots=True)
class CacheHit:
    """What a lookup found: the stored answer and how it matched."""

    response: Response
    kind: Literal["exact", "semantic"]
    score: float  # 1.0 for exact; the search cosine for semantic hits
    verifier: float | None  # the guard's probability (semantic hits with a guard)
    matched_query: str
    hit_id: str | None = None  # for report_wrong_hit (semantic hits under a false-hit bound)


@dataclass(frozen=True, slots=True)
class _Pending:
    """A candidate that was not served, waiting for the model's answer to label it."""

    decision: Decision
    entry: Entry


def _hit_id(tenant: str, entry: str, decision: Decision) -> str:
    """A self-contained token naming a served semantic hit (any process can take the
    report of it back)."""
    body = json.dumps({"t": tenant, "e": entry, "s": decision.score, "c": decision.cosine,
                       "k": decision.stratum},
                      separators=(",", ":"))
    return base64.urlsafe_b64encode(body.encode()).decode().rstrip("=")


class ResponseCache:
    """Exact + semantic response cache, tenant-scoped.

    Args:
        store: a :class:`Store`, or a path for an embedded :class:`SQLiteStore`
            (default: in memory, the newest :data:`DEFAULT_MEMORY_ENTRIES`
            entries; they are lost when the process exits, see the docs).
        semantic: match the last user turn by meaning (within identical context).
        embedder: ``"wordllama"`` (default), ``"minilm"``, an :class:`Embedder`,
            a LangChain ``Embeddings`` or a LlamaIndex embedding.
        guard: ``"default"`` (the shipped false-hit verifier), a
            :class:`FalseHitGuard`, or ``None`` for plain cosine matching.
        max_false_hit_rate: the share of wrong answers among semantic hits the
            cache may serve (default :data:`~tokenlean.cache._bound.DEFAULT_MAX_FALSE_HIT_RATE`,
            0.02, when there is a guard; ``None``: the guard's fixed thresholds, or
            plain cosine at ``min_score`` without a guard). The cache learns
            online what it may serve (see :mod:`tokenlean.cache._bound`): until
            its own labels show the bound holds it serves exact hits only.
        explore_rate: the share of would-be semantic hits sent to the model
            anyway, to learn whether they would have been right (default 0.05).
        answer_judge: ``judge(fresh_answer, stored_answer) -> bool``: whether the
            model's fresh answer agrees with a candidate's stored one (default:
            the same text, whitespace aside -- strict, so it errs towards fewer hits).
        confidence: how sure the bound must be (default 0.95).
        seed: seeds the exploration draws (reproducible runs).
        min_score: cosine below which the vector search returns no candidate.
            With a guard this is only a floor (default 0.5); without one it *is*
            the match threshold (default 0.9).
        top_k: candidates the guard reads per lookup (bounds its cost).
        ttl_s: seconds an entry lives (None: until evicted or invalidated).
        cache_sampled: also answer (and store) *sampled* calls: temperature
            above 0 or unknown (``None``), and no seed. Off by default: such a
            call may rightly get a new answer each time.
        max_query_chars: the longest last user turn (characters, default
            :data:`MAX_QUERY_CHARS`) matched semantically. A longer one is looked
            up and stored exactly only, never embedded (the cache's report says
            ``semantic_skipped: "long_query"``): embedding costs memory in
            proportion to the text (914 MB for 2M characters), and a truncated
            embedding would match other long prompts that only share a prefix.
    """

    name = "cache"

    def __init__(self, *, store: Store | str | Path | None = None, semantic: bool = True,
                 embedder: str | Embedder | Any = "wordllama",
                 guard: FalseHitGuard | Literal["default"] | None = "default",
                 min_score: float | None = None, top_k: int = 4, ttl_s: float | None = None,
                 cache_sampled: bool = False, max_query_chars: int = MAX_QUERY_CHARS,
                 max_false_hit_rate: float | None | Literal["default"] = "default",
                 explore_rate: float = 0.05,
                 answer_judge: Callable[[str, str], bool] | None = None,
                 confidence: float = 0.95, seed: int | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        if not isinstance(cache_sampled, bool):
            raise ConfigError(f"cache_sampled must be True or False, got {cache_sampled!r}")
        if isinstance(max_query_chars, bool) or not isinstance(max_query_chars, int) \
                or max_query_chars < 1:
            raise ConfigError(
                f"max_query_chars must be a positive integer, got {max_query_chars!r}")
        self.max_query_chars = max_query_chars
        if top_k < 1:
            raise ConfigError("top_k must be >= 1")
        if ttl_s is not None and ttl_s <= 0:
            raise ConfigError("ttl_s must be positive or None")
        if store is None:
            store = SQLiteStore(max_entries=DEFAULT_MEMORY_ENTRIES)
        elif isinstance(store, (str, Path)):
            store = SQLiteStore(store)
        if not isinstance(store, Store):
            raise ConfigError(f"{store!r} is not a cache store (see tokenlean.cache.Store)")
        self.store: Store = store
        self.semantic = semantic
        self.cache_sampled = cache_sampled
        self._logged_memory_hit = False
        self.top_k = top_k
        self.ttl_s = ttl_s
        self._clock = clock
        self._embedder_spec = embedder
        self._embedder: Embedder | None = None
        if guard == "default":
            guard = FalseHitGuard() if semantic else None
        elif guard is not None and not isinstance(guard, FalseHitGuard):
            raise ConfigError("guard must be 'default', a FalseHitGuard or None")
        self.guard: FalseHitGuard | None = guard
        if min_score is None:
            min_score = 0.5 if guard is not None else 0.9
        if not -1.0 <= min_score <= 1.0:
            raise ConfigError(f"min_score must be a cosine in [-1, 1], got {min_score}")
        self.min_score = float(min_score)
        if max_false_hit_rate == "default":
            max_false_hit_rate = DEFAULT_MAX_FALSE_HIT_RATE if semantic and guard is not None \
                else None
        if answer_judge is not None and not callable(answer_judge):
            raise ConfigError(f"answer_judge must be callable, got {answer_judge!r}")
        self.answer_judge = answer_judge or exact_judge
        self._bound_options: dict[str, Any] | None = None
        if max_false_hit_rate is not None and semantic:
            # checked now (a bad value fails here), built on first use (it needs the embedder)
            check_options(max_false_hit_rate, explore_rate, confidence)
            self._bound_options = {"max_false_hit_rate": max_false_hit_rate,
                                   "explore_rate": explore_rate, "confidence": confidence,
                                   "seed": seed}
        self.max_false_hit_rate: float | None = \
            None if self._bound_options is None else float(max_false_hit_rate)  # type: ignore[arg-type]
        self._bound: FalseHitBound | None = None
        # candidates not served, by (tenant, exact key) of the request: the answer that
        # update() gets for the same request (the same object, or -- LangChain's
        # BaseCache -- one built anew from the same prompt) labels them
        self._pending: OrderedDict[tuple[str, str], _Pending] = OrderedDict()
        self._outage = Outage("tokenlean cache", "calls go to the model uncached until the "
                              "store recovers")
        self._lock = threading.Lock()
        # the keys of requests looked up lately: on_response gets the same request object
        # back, and a long prompt is not hashed twice
        self._recent_keys: OrderedDict[int, tuple[Request, RequestKeys]] = OrderedDict()

    def __repr__(self) -> str:
        return (f"ResponseCache(store={self.store_description}, semantic={self.semantic}, "
                f"cache_sampled={self.cache_sampled})")

    @property
    def in_memory(self) -> bool:
        """True when the entries live in this process only (lost when it exits)."""
        return isinstance(self.store, SQLiteStore) and self.store.path == ":memory:"

    @property
    def store_description(self) -> str:
        if self.in_memory:
            return "in memory (entries are lost when the process exits)"
        return repr(self.store)

    # ---- helpers shared by sync and async ------------------------------------

    @property
    def embedder(self) -> Embedder:
        with self._lock:
            if self._embedder is None:
                self._embedder = get_embedder(self._embedder_spec)
            return self._embedder

    @property
    def bound(self) -> FalseHitBound | None:
        """The learned false-hit bound (None without ``max_false_hit_rate``)."""
        if self._bound_options is None:
            return None
        emb = self.embedder
        with self._lock:
            if self._bound is None:
                self._bound = FalseHitBound(scope=self._scope(emb), log=(
                    self.store if isinstance(self.store, LabelLog) else None),
                    channels=CHANNELS if self.guard is not None else ("cosine",),
                    **self._bound_options)
            return self._bound

    def _scope(self, emb: Embedder) -> str:
        """What the labels belong to: the embedder and the scorer (another verifier
        or threshold starts learning afresh)."""
        scorer = "cosine" if self.guard is None else (
            f"{hashlib.sha256(self.guard.path.read_bytes()).hexdigest()[:16]}"
            f"|{self.guard.second_threshold:.6g}|{int(self.guard.rules)}")
        return f"{emb.name}|{emb.dim}|{scorer}"

    def _keys(self, request: Request) -> RequestKeys:
        with self._lock:
            known = self._recent_keys.get(id(request))
        if known is not None and known[0] is request:
            return known[1]
        keys = keys_for(request)
        with self._lock:
            self._recent_keys[id(request)] = (request, keys)
            while len(self._recent_keys) > _RECENT_KEYS:
                self._recent_keys.popitem(last=False)
        return keys

    def _space(self, keys: RequestKeys) -> str:
        """Partition of the vector index: the context, per embedder."""
        emb = self.embedder
        raw = f"{keys.context}|{emb.name}|{emb.dim}"
        return hashlib.sha256(raw.encode()).hexdigest()

    def _semantic_skipped(self, keys: RequestKeys) -> str | None:
        """Why a semantic lookup of ``keys`` is skipped (a key of
        :data:`SEMANTIC_SKIPPED`), or None when it runs or cannot apply."""
        if self.semantic and keys.context is not None and len(keys.query) > self.max_query_chars:
            return "long_query"
        return None

    def _matches_semantically(self, keys: RequestKeys) -> bool:
        return (self.semantic and keys.context is not None
                and self._semantic_skipped(keys) is None)

    def _decode(self, entry: Entry, kind: Literal["exact", "semantic"], score: float,
                verifier: float | None, hit_id: str | None = None) -> CacheHit | None:
        raw = {"cache": {"kind": kind, "similarity": score, "verifier": verifier,
                         "matched_query": entry.query,
                         **({"hit_id": hit_id} if hit_id is not None else {})}}
        try:
            response = response_from_json(entry.response, score=score, raw=raw)
        except CorruptEntry:
            self.store.delete(entry.tenant, [entry.id])
            return None
        return CacheHit(response, kind, score, verifier, entry.query, hit_id)

    def _lookup(self, request: Request) -> CacheHit | None:
        keys = self._keys(request)
        if keys.sampled and not self.cache_sampled:
            return None
        now = self._clock()
        entry = self.store.get(keys.tenant, keys.exact, now)
        if entry is not None and entry.tenant == keys.tenant:
            hit = self._decode(entry, "exact", 1.0, None)
            if hit is not None:
                return hit
        if not self._matches_semantically(keys):
            return None
        vector = self.embedder.embed([keys.query])[0]
        space = self._space(keys)
        found = [(e, s) for e, s in self.store.search(keys.tenant, space, vector, self.top_k,
                                                      self.min_score, now)
                 if e.tenant == keys.tenant and e.context == space]
        if not found:
            return None
        bound = self.bound
        if bound is not None:
            return self._bounded(request, keys, found, bound)
        if self.guard is None:
            entry, score = found[0]
            return self._decode(entry, "semantic", score, None)
        verdicts = self.guard.check(keys.query, [e.query for e, _ in found])
        ranked = sorted(zip(found, verdicts, strict=True), key=lambda fv: -fv[1].probability)
        for (entry, score), verdict in ranked:
            if not verdict.accepted:
                continue
            hit = self._decode(entry, "semantic", score, verdict.probability)
            if hit is not None:
                return hit
        return None

    def _bounded(self, request: Request, keys: RequestKeys, found: list[tuple[Entry, float]],
                 bound: FalseHitBound) -> CacheHit | None:
        """Serve the best candidate if the bound allows it; else remember it, so the
        model's answer to this request labels it (a miss or an exploration)."""
        scores, cosines = self._channel_scores(keys.query, [e.query for e, _ in found],
                                               [cosine for _, cosine in found])
        best = max(range(len(found)), key=lambda i: (scores[i], cosines[i]))
        entry, cosine = found[best]
        decision = bound.decide(keys.tenant, entry.id, scores[best], cosines[best])
        if decision.serve:
            hit = self._decode(entry, "semantic", cosine, decision.score,
                               _hit_id(keys.tenant, entry.id, decision))
            if hit is not None:
                return hit
        with self._lock:
            self._pending[keys.tenant, keys.exact] = _Pending(decision, entry)
            while len(self._pending) > _PENDING:
                self._pending.popitem(last=False)
        return None

    def _channel_scores(self, query: str, stored: list[str],
                        cosines: list[float]) -> tuple[list[float], list[float]]:
        """The bound's two scores of each stored question for ``query``: the verifier's
        probability (the cosine without a guard) and the cosine, both 0 where the
        guard's number rule says they differ."""
        cosines = [max(0.0, min(1.0, c)) for c in cosines]
        if self.guard is None:
            return cosines, cosines
        probabilities, differ = self.guard.scores(query, stored)
        return ([float(p) for p in probabilities],
                [0.0 if d else c for d, c in zip(differ, cosines, strict=True)])

    def _label_pending(self, request: Request, response: Response) -> None:
        """Judge the model's answer against the candidate this request was not served."""
        keys = self._keys(request)
        with self._lock:
            pending = self._pending.pop((keys.tenant, keys.exact), None)
        bound = self._bound
        if pending is None or bound is None or response.finish_reason not in _COMPLETE:
            return
        try:
            stored = response_from_json(pending.entry.response, score=0.0).text
        except CorruptEntry:
            return
        source: Literal["explore", "miss"] = "explore" if pending.decision.explore else "miss"
        bound.learn(label_for(pending.decision, tenant=keys.tenant, entry=pending.entry.id,
                              correct=bool(self.answer_judge(response.text, stored)),
                              source=source, at=self._clock()))

    def _why_not(self, keys: RequestKeys, response: Response) -> str | None:
        """Why ``response`` must not be stored (a key of :data:`NOT_CACHED`), or None."""
        if keys.sampled and not self.cache_sampled:
            return "sampled"
        if response.finish_reason in _COMPLETE:
            return None
        if response.finish_reason in _TRUNCATED:
            return None if _cut_at_the_apps_cap(keys, response) else "truncated"
        if response.finish_reason in ("content_filter", "error"):
            return response.finish_reason
        return "unknown_finish_reason"

    def _entry_for(self, keys: RequestKeys, response: Response) -> Entry:
        now = self._clock()
        space = self._space(keys) if self._matches_semantically(keys) else None
        return Entry(id=keys.exact, tenant=keys.tenant, model=keys.model, context=space,
                     query=keys.query, response=response_to_json(response), created_at=now,
                     expires_at=None if self.ttl_s is None else now + self.ttl_s)

    def _store(self, keys: RequestKeys, response: Response) -> None:
        entry = self._entry_for(keys, response)
        vector = None if entry.context is None else self.embedder.embed([keys.query])[0]
        self.store.put(entry, vector)

    def _note_hit(self, hit: CacheHit | None) -> None:
        if hit is not None and self.in_memory and not self._logged_memory_hit:
            self._logged_memory_hit = True
            _log.info("tokenlean cache: answered from the in-memory cache; its entries are "
                      "lost when the process exits (ResponseCache(store=PATH) keeps them)")

    # ---- public API ------------------------------------------------------------

    def lookup(self, request: Request) -> CacheHit | None:
        """The stored answer for ``request``, or None. A failing store is a miss
        (one :class:`TokenleanWarning` per outage)."""
        seen = self._outage.begin()
        try:
            hit = self._lookup(request)
        except TokenleanError:
            raise
        except Exception as exc:
            self._outage.failed(seen, exc, "lookup")
            return None
        self._outage.ok(seen)
        self._note_hit(hit)
        return hit

    async def alookup(self, request: Request) -> CacheHit | None:
        return await asyncio.to_thread(self.lookup, request)

    def update(self, request: Request, response: Response) -> str | None:
        """Store ``response`` as the answer to ``request``. Returns None when it was
        stored (or is a hit, which is never stored again), else why not: a key of
        :data:`NOT_CACHED` (a sampled call, a truncated or failed answer, a store
        outage)."""
        if response.cached:
            return None  # a hit's update never reaches the store: it proves nothing
        keys = self._keys(request)
        why = self._why_not(keys, response)
        if why is not None:
            with self._lock:
                self._pending.pop((keys.tenant, keys.exact), None)
            return why
        seen = self._outage.begin()
        try:
            self._store(keys, response)
        except TokenleanError:
            raise
        except Exception as exc:
            self._outage.failed(seen, exc, "store")
            with self._lock:
                self._pending.pop((keys.tenant, keys.exact), None)
            return "store_error"
        try:  # the answer is stored: a failing label log costs a label, not the answer
            self._label_pending(request, response)
        except TokenleanError:
            raise
        except Exception as exc:
            self._outage.failed(seen, exc, "label")
            return None
        self._outage.ok(seen)
        return None

    async def aupdate(self, request: Request, response: Response) -> str | None:
        return await asyncio.to_thread(self.update, request, response)

    def report_wrong_hit(self, hit: CacheHit | Response | str) -> bool:
        """Tell the cache a semantic hit it served was wrong for the query (``hit``: the
        :class:`CacheHit`, the cached :class:`Response`, or its ``hit_id`` from
        ``response.raw["cache"]["hit_id"]``). The entry is not served again to a
        query that scores as low, and the bound counts the wrong hit. Returns False
        (and learns nothing) for an exact hit, or a hit served without a bound."""
        bound = self.bound
        hit_id = hit if isinstance(hit, str) else hit.hit_id if isinstance(hit, CacheHit) \
            else ((hit.raw or {}).get("cache") or {}).get("hit_id") \
            if isinstance(hit, Response) and isinstance(hit.raw, dict) else None
        if bound is None or not isinstance(hit_id, str):
            return False
        try:
            data = json.loads(base64.urlsafe_b64decode(hit_id + "=" * (-len(hit_id) % 4)))
            tenant, entry, score, cosine, stratum = (
                str(data["t"]), str(data["e"]), float(data["s"]), float(data["c"]),
                str(data["k"]))
        except (ValueError, TypeError, KeyError) as exc:
            raise InvalidRequestError(f"report_wrong_hit: {hit_id!r} is not a hit id this "
                                      "cache gave") from exc
        bound.learn(Label(tenant=tenant, entry=entry, score=min(1.0, max(0.0, score)),
                          cosine=min(1.0, max(0.0, cosine)), stratum=stratum, vetoed=False,
                          correct=False, source="feedback", at=self._clock()))
        return True

    async def areport_wrong_hit(self, hit: CacheHit | Response | str) -> bool:
        return await asyncio.to_thread(self.report_wrong_hit, hit)

    def warm_start(self, pairs: Iterable[tuple[str, str, bool]]) -> int:
        """Learn from labelled pairs ``(stored question, new question, same meaning)``
        before any traffic (optional). They count like labelled misses of new entries,
        so they shorten the cold start; pairs unlike the deployment's own traffic can
        mislead the bound until its own labels outweigh them. Returns how many."""
        bound = self.bound
        if bound is None:
            raise ConfigError("warm_start needs a false-hit bound (max_false_hit_rate=...)")
        labels = []
        for stored, query, same in pairs:
            vectors = self.embedder.embed([stored, query])
            (score,), (cosine,) = self._channel_scores(query, [stored],
                                                       [float(vectors[0] @ vectors[1])])
            labels.append(Label(tenant="", entry="", score=score, cosine=cosine,
                                stratum="new", vetoed=False, correct=bool(same),
                                source="warm", at=self._clock()))
        bound.learn_many(labels)
        return len(labels)

    def bound_stats(self) -> dict[str, Any]:
        """What the false-hit bound has learned (``{"max_false_hit_rate": None}``
        without one)."""
        bound = self.bound
        return {"max_false_hit_rate": None} if bound is None else bound.stats()

    def invalidate(self, *, tenant: str | None = None, model: str | None = None,
                   older_than_s: float | None = None, all_tenants: bool = False) -> int:
        """Remove a tenant's entries, narrowed to a model and/or to entries older than
        ``older_than_s`` seconds (all given conditions must hold); returns how many.
        ``tenant`` is required: an empty or missing one is an
        :class:`~tokenlean.core.InvalidRequestError` that removes nothing;
        ``all_tenants=True`` (without ``tenant``) removes every tenant's entries."""
        cutoff = None if older_than_s is None else self._clock() - older_than_s
        return self.store.invalidate(tenant=tenant, model=model, older_than=cutoff,
                                     all_tenants=all_tenants)

    async def ainvalidate(self, *, tenant: str | None = None, model: str | None = None,
                          older_than_s: float | None = None, all_tenants: bool = False) -> int:
        return await asyncio.to_thread(self.invalidate, tenant=tenant, model=model,
                                       older_than_s=older_than_s, all_tenants=all_tenants)

    def close(self) -> None:
        self.store.close()

    # ---- the layer contract ----------------------------------------------------

    def process(self, request: Request) -> Request | Response:
        hit = self.lookup(request)
        return request if hit is None else hit.response

    async def aprocess(self, request: Request) -> Request | Response:
        hit = await self.alookup(request)
        return request if hit is None else hit.response

    def _note(self, request: Request, why: str | None) -> LayerNote | None:
        """What the pipeline adds to this call's record: why its answer was not stored,
        and why the semantic lookup was skipped."""
        detail = {} if why is None else {"not_cached": why}
        skipped = self._semantic_skipped(self._keys(request))
        if skipped is not None:
            detail["semantic_skipped"] = skipped
        return LayerNote(layer=self.name, detail=detail) if detail else None

    def on_response(self, request: Request, response: Response) -> LayerNote | None:
        return self._note(request, self.update(request, response))

    async def aon_response(self, request: Request, response: Response) -> LayerNote | None:
        return self._note(request, await self.aupdate(request, response))

    def warm(self) -> None:
        """Load the embedder and the guard's model now instead of on first use."""
        self.embedder.embed(["warm up"])
        if self.guard is not None:
            self.guard.check("warm up", ["warm up"])
