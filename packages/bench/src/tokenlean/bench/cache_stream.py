"""The pairs as traffic, for ``tokenlean bench cache --stream`` (issue #21).

``build_stream(rows, clustered)`` turns labelled pairs into a sequence of
:class:`Event` s, each a *store* (an answer the app already has, put in the
cache) or a *query* (a new request: looked up; on a miss or an exploration the
simulated model answers and the answer is stored). ``play(cache, stream)``
runs them through anything with the cache's ``lookup(request)`` /
``update(request, response)`` and counts what was served.

The simulated model answers each text with a canonical answer string: texts
joined by label-1 pairs (union-find within the unit) share one answer, every
other text has its own. A served hit is correct iff the stored answer equals
the query's canonical answer, and the cache learns a label only through the
``update`` that follows a miss or an exploration, as a deployment would (the
bench never calls ``report_wrong_hit``).

* Non-clustered: file order, one tenant per pair (``b`` can only match its own
  ``a``): store ``a``, query ``b``. The calibration is global to the cache, so it
  learns across the stream.
* Clustered: the connected components of texts (normalised: lower case, runs of
  whitespace as one space) over all pairs, so one cached entry gets many
  queries; components with fewer than two queries are dropped and larger ones
  than ``max_component`` texts are cut into chunks in order (the answers stay
  those of the whole component). One tenant per chunk: its first text is
  stored, the others arrive as queries in file order. Two texts of a component
  that no label-1 path joins get different answers; where no label-0 pair says
  so either, that is an *assumption*, and false hits resting on it are counted
  apart (``false_hits_unlabelled``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from tokenlean.core import Response, Usage

from .cache import _request

__all__ = ["MAX_COMPONENT", "Event", "Stream", "best_within", "build_stream", "normalise", "play",
           "summarise", "wilson"]

#: the most texts one clustered tenant holds (larger components are cut in chunks)
MAX_COMPONENT = 50
_Z95 = 1.959963984540054  # the two-sided 95% normal quantile


def normalise(text: str) -> str:
    """The identity of a text in the stream: lower case, whitespace runs as one space."""
    return " ".join(text.lower().split())


@dataclass(frozen=True, slots=True)
class Event:
    """One step of the traffic: ``store`` puts ``answer`` under ``text``; ``query``
    looks ``text`` up and, on a miss, stores the model's ``answer``."""

    kind: Literal["store", "query"]
    tenant: str
    text: str
    answer: str


@dataclass
class Stream:
    """The events, and what the bench reports about how they were built.

    ``negatives`` holds the answer pairs a label-0 pair separates (as frozensets
    of two answer strings): a false hit between two answers not in it rests on
    the assumption that texts no label-1 path joins differ.
    """

    events: list[Event]
    clustered: bool
    n_clusters: int
    label_conflicts: int
    dropped_texts: int = 0
    chunked_components: int = 0
    negatives: set[frozenset[str]] = field(default_factory=set)

    @property
    def n_queries(self) -> int:
        return sum(e.kind == "query" for e in self.events)

    def describe(self) -> dict[str, Any]:
        info: dict[str, Any] = {"mode": "clustered" if self.clustered else "pairs",
                                "n_queries": self.n_queries,
                                "label_conflicts": self.label_conflicts}
        if self.clustered:
            tenants = {e.tenant for e in self.events}
            info.update(n_clusters=self.n_clusters, n_tenants=len(tenants),
                        chunked_components=self.chunked_components,
                        dropped_texts=self.dropped_texts,
                        max_component=MAX_COMPONENT)
        return info


class _UnionFind:
    """Union-find over texts; a set's root is its earliest-added text, so the
    answers do not depend on the order of the edges."""

    def __init__(self, nodes: Iterable[str] = ()) -> None:
        self.parent: dict[str, str] = {}
        self.rank: dict[str, int] = {}
        for n in nodes:
            self.add(n)

    def add(self, x: str) -> None:
        if x not in self.parent:
            self.parent[x] = x
            self.rank[x] = len(self.rank)

    def find(self, x: str) -> str:
        root = x
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[x] != root:  # path compression
            self.parent[x], x = root, self.parent[x]
        return root

    def union(self, x: str, y: str) -> None:
        rx, ry = self.find(x), self.find(y)
        if rx != ry:
            first, later = sorted((rx, ry), key=self.rank.__getitem__)
            self.parent[later] = first


def _answers(nodes: list[str], edges: Iterable[tuple[str, str, int]],
             prefix: str) -> tuple[dict[str, str], int, set[frozenset[str]]]:
    """Canonical answers of ``nodes`` (union-find over the label-1 edges), how many
    label-0 edges join two texts of one answer, and the answer pairs the other
    label-0 edges separate."""
    order = {n: i for i, n in enumerate(nodes)}
    uf = _UnionFind(nodes)
    edges = list(edges)
    for x, y, label in edges:
        if label:
            uf.union(x, y)
    answer = {n: f"answer:{prefix}:{order[uf.find(n)]}" for n in nodes}
    conflicts = 0
    negatives: set[frozenset[str]] = set()
    for x, y, label in edges:
        if not label:
            if answer[x] == answer[y]:
                conflicts += 1
            else:
                negatives.add(frozenset((answer[x], answer[y])))
    return answer, conflicts, negatives


def build_stream(rows: list[dict[str, Any]], clustered: bool = False,
                 max_component: int = MAX_COMPONENT) -> Stream:
    """The traffic ``rows`` (``{id, a, b, label}``) make; see the module doc."""
    if not clustered:
        events: list[Event] = []
        conflicts = 0
        negatives: set[frozenset[str]] = set()
        for row in rows:
            tenant = f"pair:{row['id']}"
            a, b = normalise(row["a"]), normalise(row["b"])
            answer, bad, neg = _answers(list(dict.fromkeys((a, b))),
                                        [(a, b, int(row["label"]))], str(row["id"]))
            conflicts += bad
            negatives |= neg
            events.append(Event("store", tenant, row["a"], answer[a]))
            events.append(Event("query", tenant, row["b"], answer[b]))
        return Stream(events, clustered=False, n_clusters=len(rows),
                      label_conflicts=conflicts, negatives=negatives)

    # clustered: connected components of the texts over all pairs
    first_raw: dict[str, str] = {}  # normalised -> the first raw text seen
    edges: list[tuple[str, str, int]] = []
    links = _UnionFind()
    for row in rows:
        a, b = normalise(row["a"]), normalise(row["b"])
        for norm, raw in ((a, row["a"]), (b, row["b"])):
            if norm not in first_raw:
                first_raw[norm] = raw
                links.add(norm)
        edges.append((a, b, int(row["label"])))
        links.union(a, b)
    order = links.rank
    components: dict[str, list[str]] = {}
    for norm in first_raw:  # file order within each component
        components.setdefault(links.find(norm), []).append(norm)
    component_edges: dict[str, list[tuple[str, str, int]]] = {}
    for edge in edges:
        component_edges.setdefault(links.find(edge[0]), []).append(edge)

    events = []
    conflicts, dropped, chunked, n_clusters = 0, 0, 0, 0
    negatives = set()
    for number, (root, nodes) in enumerate(sorted(components.items(),
                                                  key=lambda kv: order[kv[0]])):
        if len(nodes) < 3:  # one stored text and fewer than two queries
            dropped += len(nodes)
            continue
        n_clusters += 1
        answer, bad, neg = _answers(nodes, component_edges[root], f"c{number}")
        conflicts += bad
        negatives |= neg
        chunks = [nodes[i:i + max_component] for i in range(0, len(nodes), max_component)]
        chunked += len(chunks) > 1
        for part, chunk in enumerate(chunks):
            if len(chunk) < 3:
                dropped += len(chunk)
                continue
            tenant = f"cluster:{number}:{part}"
            events.append(Event("store", tenant, first_raw[chunk[0]], answer[chunk[0]]))
            events.extend(Event("query", tenant, first_raw[n], answer[n]) for n in chunk[1:])
    return Stream(events, clustered=True, n_clusters=n_clusters, label_conflicts=conflicts,
                  dropped_texts=dropped, chunked_components=chunked, negatives=negatives)


def _answer(text: str) -> Response:
    return Response(text=text, usage=Usage(output_tokens=1))


def play(cache: Any, stream: Stream, windows: int = 4,
         snapshot: Callable[[], Any] | None = None) -> dict[str, Any]:
    """Run ``stream`` through ``cache`` (``lookup`` / ``update``, the same Request
    object for both) and count: ``hits`` (semantic answers served), ``false_hits``
    (of them, wrong), ``exact_hits`` / ``exact_false_hits``, ``true_duplicates``
    (queries whose answer was stored in their tenant when they came) and
    ``served_duplicates`` (of them, answered right from the cache), and the same
    per ``windows`` consecutive stretches of the queries; with ``snapshot``, what
    it returns at the end of each stretch (``after``: the bound's thresholds)."""
    stored: dict[str, set[str]] = {}
    counts = dict(n_queries=0, hits=0, false_hits=0, false_hits_unlabelled=0, exact_hits=0,
                  exact_false_hits=0, true_duplicates=0, served_duplicates=0)
    n_queries = stream.n_queries
    per_window: list[dict[str, Any]] = [dict(queries=0, hits=0, false_hits=0)
                                        for _ in range(max(1, windows))]
    current = 0
    for event in stream.events:
        answers = stored.setdefault(event.tenant, set())
        request = _request(event.text, event.tenant)
        if event.kind == "store":
            cache.update(request, _answer(event.answer))
            answers.add(event.answer)
            continue
        at = counts["n_queries"] * len(per_window) // max(1, n_queries)
        if snapshot is not None and at != current:
            per_window[current]["after"] = snapshot()
            current = at
        window = per_window[at]
        counts["n_queries"] += 1
        window["queries"] += 1
        duplicate = event.answer in answers
        counts["true_duplicates"] += duplicate
        hit = cache.lookup(request)
        if hit is None:  # a miss or an exploration: the model answers, the cache stores it
            cache.update(request, _answer(event.answer))
            answers.add(event.answer)
            continue
        served = hit.response.text
        right = served == event.answer
        counts["served_duplicates"] += right
        if hit.kind == "exact":
            counts["exact_hits"] += 1
            counts["exact_false_hits"] += not right
            continue
        counts["hits"] += 1
        window["hits"] += 1
        if not right:
            counts["false_hits"] += 1
            window["false_hits"] += 1
            if frozenset((served, event.answer)) not in stream.negatives:
                counts["false_hits_unlabelled"] += 1
    if snapshot is not None and n_queries:
        per_window[current]["after"] = snapshot()
    return {**counts, "windows": per_window}


def wilson(k: int, n: int, z: float = _Z95) -> tuple[float, float] | None:
    """Wilson score interval for ``k`` successes in ``n`` trials (two-sided 95%
    by default); None when ``n`` is 0."""
    if n <= 0:
        return None
    if not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n, got k={k}, n={n}")
    p = k / n
    z2 = z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z / (1 + z2 / n) * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def _rate(k: int, n: int) -> float | None:
    return round(k / n, 4) if n else None


def summarise(counts: dict[str, Any]) -> dict[str, Any]:
    """The rates the bench prints from :func:`play`'s counts."""
    ci = wilson(counts["false_hits"], counts["hits"])
    return {
        "realized_false_hit_rate": _rate(counts["false_hits"], counts["hits"]),
        "false_hit_rate_ci95": None if ci is None else [round(ci[0], 4), round(ci[1], 4)],
        "error_rate_per_query": _rate(counts["false_hits"], counts["n_queries"]),
        "hit_rate": _rate(counts["served_duplicates"], counts["true_duplicates"]),
        "hits": counts["hits"], "false_hits": counts["false_hits"],
        "false_hits_unlabelled": counts["false_hits_unlabelled"],
        "exact_hits": counts["exact_hits"], "exact_false_hits": counts["exact_false_hits"],
        "true_duplicates": counts["true_duplicates"],
        "served_duplicates": counts["served_duplicates"],
        "by_window": [{**w, "false_hit_rate": _rate(w["false_hits"], w["hits"])}
                      for w in counts["windows"]],
    }


def best_within(delta: float | None,
                baselines: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    """The highest ``hit_rate`` among ``baselines`` whose realized false-hit rate is
    at most ``delta`` (one serving nothing counts, at hit rate 0)."""
    if delta is None:
        return None
    best: dict[str, Any] | None = None
    for name, out in baselines.items():
        fhr = out["realized_false_hit_rate"]
        if fhr is not None and fhr > delta:
            continue
        rate = out["hit_rate"] or 0.0
        if best is None or rate > best["hit_rate"]:
            best = {"name": name, "hit_rate": rate, "realized_false_hit_rate": fhr}
    return best
