"""The false-hit bound: serve a semantic hit only when the data says it is right.

``ResponseCache(max_false_hit_rate=delta)`` serves a semantic candidate only when
the share of wrong answers among the hits it serves is, by what the cache has
learned on *this deployment's* traffic, at most ``delta`` with confidence
``confidence`` (default 95%).

What it learns from (see :mod:`._labels`): each time the model is called for a
query that had a candidate (a miss, or an exploration), the fresh answer is
compared with the candidate's stored answer by an answer judge, and that says
whether serving the candidate would have been right. Misses label the matches
the cache did not serve; to learn about the ones it does serve, a share
``explore_rate`` of would-be hits is *explored*: the model is called anyway and
the comparison labels it. The app can also report a wrong hit it noticed.

How it decides, per candidate (the best one the search and the guard found).
It has two *channels*, two scores that may let a candidate through:

* ``verifier``: the guard's probability that the two queries mean the same
  (0 when the number rule says they differ). It is good at look-alikes
  (PAWS: same words, other meaning);
* ``cosine``: the search cosine (0 when the number rule fired). On some
  traffic (Quora questions, news sentences) its very top is purer than the
  verifier's.

Per *stratum* of the entry -- ``new`` (no label yet), ``vouched`` (only right
answers so far), ``disputed`` (at least one wrong answer) -- and per channel,
the threshold is the lowest score ``t`` such that the upper confidence bound
of the false-hit rate among labelled matches scoring at least ``t`` is at most
``delta``: a Wilson upper bound at a confidence corrected for choosing between
the two channels (Bonferroni). Every label counts once, whether it came from a
miss (all of them are labelled) or an exploration (a sample of the would-be
hits). Under a stable relation between score and correctness this is
conservative: the high-scoring matches the cache serves, the purest ones, are
under-counted. (An inverse-probability weighting, unbiased, was tried: with 5%
exploration two explored labels of weight 20 held a tenth of the effective
sample on PAWS and the threshold came and went.) It holds per threshold, not
for all thresholds at once: taking the lowest that passes favours a lucky one,
which is why the benchmark measures the false-hit rate the cache actually
served (``tokenlean bench cache --stream``), on streams it never tuned on.
(Fixed-sequence testing from the top, which would make it simultaneous, was
tried: the first few hundred top-scored pairs of every file hold a wrong one
or two, the first test fails, and the cache never serves.) Each stratum then
uses the channel that serves more (by its labelled matches above its
threshold). A stratum whose own labels support no threshold uses the pooled
one (``disputed`` never does), and a disputed entry is never served to a query
that is no closer to it, in both scores, than one it was wrong for (*veto*). A
candidate that passes is served, unless it is picked for exploration.

Until enough labels support a threshold (with no wrong labels, about
``z**2 * (1 - delta) / delta`` of them, z = 1.96 at 95% over two channels:
188 at ``delta = 0.02``) the cache serves no semantic hit at all: exact hits
only. The thresholds are kept as
weighted counts in a fixed grid of score bins, so a label costs O(1) and a
threshold O(bins).
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tokenlean.core import ConfigError

from ._labels import DEFAULT_KEEP_LABELS, Label, LabelLog, LabelSource

__all__ = ["CHANNELS", "DEFAULT_MAX_FALSE_HIT_RATE", "STRATA", "Decision", "FalseHitBound",
           "check_options", "exact_judge", "label_for", "wilson_upper"]

#: the false-hit rate a semantic cache with a guard promises unless told otherwise
DEFAULT_MAX_FALSE_HIT_RATE = 0.05
STRATA = ("new", "vouched", "disputed")
CHANNELS = ("verifier", "cosine")
_BINS = 200
_SYNC_EVERY_S = 1.0      # read other processes' labels at most this often
_ENTRIES_KEPT = 200_000  # per-entry histories kept in memory (oldest forgotten first)


def wilson_upper(wrong: float, total: float, z: float) -> float:
    """One-sided Wilson upper bound of a proportion ``wrong / total`` (1.0 with no data)."""
    if total <= 0:
        return 1.0
    p = wrong / total
    z2 = z * z
    centre = p + z2 / (2 * total)
    margin = z * math.sqrt(p * (1 - p) / total + z2 / (4 * total * total))
    return min(1.0, (centre + margin) / (1 + z2 / total))


def _z(confidence: float) -> float:
    """The standard normal quantile at ``confidence`` (bisection on erf; no scipy)."""
    lo, hi = 0.0, 10.0
    for _ in range(80):
        mid = (lo + hi) / 2
        if 0.5 * (1 + math.erf(mid / math.sqrt(2))) < confidence:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def exact_judge(fresh: str, stored: str) -> bool:
    """The default answer judge: the same text, whitespace aside. Strict on purpose:
    a fresh answer worded differently counts as *different*, which only makes the
    bound more careful (fewer hits), never less."""
    return " ".join(fresh.split()) == " ".join(stored.split())


def _bin(score: float) -> int:
    return min(_BINS - 1, max(0, int(score * _BINS)))


@dataclass
class _Counts:
    """Label counts per score bin, for one (channel, stratum)."""

    labelled: list[int] = field(default_factory=lambda: [0] * _BINS)
    wrong: list[int] = field(default_factory=lambda: [0] * _BINS)
    n: int = 0

    def add(self, label: Label, score: float) -> None:
        b = _bin(score)
        self.labelled[b] += 1
        self.wrong[b] += not label.correct
        self.n += 1

    def merged(self, other: _Counts) -> _Counts:
        return _Counts([a + b for a, b in zip(self.labelled, other.labelled, strict=True)],
                       [a + b for a, b in zip(self.wrong, other.wrong, strict=True)],
                       self.n + other.n)

    def threshold(self, delta: float, z: float) -> tuple[float, int] | None:
        """(threshold, right labels at or above it): the lowest bin edge holding labels
        whose matches' false-hit upper bound is at most ``delta``, or None."""
        best = None
        n = wrong = 0
        for b in range(_BINS - 1, -1, -1):
            n += self.labelled[b]
            wrong += self.wrong[b]
            if self.labelled[b] and wilson_upper(wrong, n, z) <= delta:
                best = (b / _BINS, n - wrong)
        return best


def check_options(max_false_hit_rate: object, explore_rate: object, confidence: object) -> None:
    """A :class:`~tokenlean.core.ConfigError` naming the first bad option."""
    if isinstance(max_false_hit_rate, bool) or not isinstance(
            max_false_hit_rate, (int, float)) or not 0 < max_false_hit_rate < 1:
        raise ConfigError(f"max_false_hit_rate must be in (0, 1), got "
                          f"{max_false_hit_rate!r}")
    if isinstance(explore_rate, bool) or not isinstance(explore_rate, (int, float)) \
            or not 0 < explore_rate <= 0.5:
        raise ConfigError(f"explore_rate must be in (0, 0.5], got {explore_rate!r}: "
                          "without exploration the cache cannot learn about the hits "
                          "it serves")
    if isinstance(confidence, bool) or not isinstance(confidence, (int, float)) \
            or not 0.5 <= confidence < 1:
        raise ConfigError(f"confidence must be in [0.5, 1), got {confidence!r}")


@dataclass
class _EntryHistory:
    right: int = 0
    wrong_at: tuple[float, float] | None = None  # highest (score, cosine) it was wrong at


@dataclass(frozen=True, slots=True)
class Decision:
    """What the bound made of one candidate."""

    serve: bool
    explore: bool
    score: float
    cosine: float
    stratum: str
    vetoed: bool
    channel: str | None  # the channel that let it through (None: neither)


class FalseHitBound:
    """The learned serving rule of one cache (see the module docstring).

    ``log``: where labels are kept and shared (the cache's store when it is a
    :class:`LabelLog`; None: this process only). ``scope``: names the scorer the
    labels belong to (labels of another embedder or verifier are not mixed in).
    """

    def __init__(self, max_false_hit_rate: float, *, scope: str, log: LabelLog | None,
                 channels: tuple[str, ...] = CHANNELS,
                 explore_rate: float = 0.05, confidence: float = 0.95,
                 seed: int | None = None, keep_labels: int = DEFAULT_KEEP_LABELS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        check_options(max_false_hit_rate, explore_rate, confidence)
        self.delta = float(max_false_hit_rate)
        self.explore_rate = float(explore_rate)
        self.confidence = float(confidence)
        self.scope = scope
        self.log = log
        self.keep_labels = keep_labels
        self._z = _z(1 - (1 - self.confidence) / len(channels))  # Bonferroni over channels
        self._rng = random.Random(seed)
        self._clock = clock
        self._lock = threading.Lock()
        if not channels or set(channels) - set(CHANNELS):
            raise ConfigError(f"channels must be some of {CHANNELS}, got {channels!r}")
        self.channels = tuple(channels)
        self._counts = {(c, s): _Counts() for c in self.channels for s in STRATA}
        self._entries: OrderedDict[tuple[str, str], _EntryHistory] = OrderedDict()
        self._rules: dict[str, tuple[str, float] | None] = dict.fromkeys(STRATA)
        self._seen_seq = 0
        self._synced_at = -math.inf
        self._by_source: dict[str, int] = {}
        self.explored = 0
        self.served = 0

    # ---- learning ---------------------------------------------------------------

    def _apply(self, label: Label) -> None:
        """Count ``label`` (caller holds the lock)."""
        self._by_source[label.source] = self._by_source.get(label.source, 0) + 1
        stratum = label.stratum if label.stratum in STRATA else "new"
        if not label.vetoed:
            if "verifier" in self.channels:
                self._counts["verifier", stratum].add(label, label.score)
            if "cosine" in self.channels:
                self._counts["cosine", stratum].add(label, label.cosine)
        if label.source == "warm":
            return  # pairs from elsewhere: no entry of this cache
        key = (label.tenant, label.entry)
        history = self._entries.pop(key, None) or _EntryHistory()
        if label.correct:
            history.right += 1
        else:
            old = history.wrong_at or (0.0, 0.0)
            history.wrong_at = (max(old[0], label.score), max(old[1], label.cosine))
        self._entries[key] = history
        while len(self._entries) > _ENTRIES_KEPT:
            self._entries.popitem(last=False)

    def _refresh_thresholds(self) -> None:
        """Each stratum's rule: the channel serving the most, at its threshold."""
        for stratum in STRATA:
            options = []
            for channel in self.channels:
                found = self._counts[channel, stratum].threshold(self.delta, self._z)
                if found is None and stratum != "disputed":
                    counts = [self._counts[channel, s] for s in STRATA]
                    found = counts[0].merged(counts[1]).merged(counts[2]).threshold(
                        self.delta, self._z)
                if found is not None:
                    options.append((found[1], channel, found[0]))
            self._rules[stratum] = max(options)[1:] if options else None

    def sync(self, *, force: bool = False) -> None:
        """Read the labels other processes (or this one) added to the shared log."""
        if self.log is None:
            return
        now = self._clock()
        with self._lock:
            if not force and now - self._synced_at < _SYNC_EVERY_S:
                return
            self._synced_at = now
            changed = False
            while True:
                rows = self.log.labels_after(self.scope, self._seen_seq, 10_000)
                for seq, body in rows:
                    self._seen_seq = max(self._seen_seq, seq)
                    label = Label.from_json(body)
                    if label is not None:
                        self._apply(label)
                        changed = True
                if len(rows) < 10_000:
                    break
            if changed:
                self._refresh_thresholds()

    def learn(self, label: Label) -> None:
        """Add one label (to the shared log when there is one)."""
        if self.log is None:
            with self._lock:
                self._apply(label)
                self._refresh_thresholds()
            return
        self.log.add_labels(self.scope, [label.to_json()], self.keep_labels)
        self.sync(force=True)

    def learn_many(self, labels: list[Label]) -> None:
        """Add labels in one write (a warm start)."""
        if self.log is None:
            with self._lock:
                for label in labels:
                    self._apply(label)
                self._refresh_thresholds()
            return
        for start in range(0, len(labels), 1000):
            self.log.add_labels(self.scope, [lb.to_json() for lb in labels[start:start + 1000]],
                                self.keep_labels)
        self.sync(force=True)

    # ---- deciding ---------------------------------------------------------------

    def stratum_of(self, tenant: str, entry: str) -> tuple[str, tuple[float, float] | None]:
        """(stratum, the highest (score, cosine) it was wrong at) of an entry."""
        with self._lock:
            history = self._entries.get((tenant, entry))
        if history is None or (history.right == 0 and history.wrong_at is None):
            return "new", None
        if history.wrong_at is not None:
            return "disputed", history.wrong_at
        return "vouched", None

    def decide(self, tenant: str, entry: str, score: float, cosine: float) -> Decision:
        """Whether to serve ``entry`` for a query it scored ``score`` (verifier) and
        ``cosine``, or to explore it."""
        self.sync()
        stratum, wrong_at = self.stratum_of(tenant, entry)
        vetoed = wrong_at is not None and score <= wrong_at[0] and cosine <= wrong_at[1]
        with self._lock:
            rule = self._rules[stratum]
        channel = None
        if rule is not None and not vetoed:
            value = score if rule[0] == "verifier" else cosine
            channel = rule[0] if value >= rule[1] else None
        if channel is None:
            return Decision(False, False, score, cosine, stratum, vetoed, None)
        with self._lock:
            explore = self._rng.random() < self.explore_rate
            if explore:
                self.explored += 1
            else:
                self.served += 1
        return Decision(not explore, explore, score, cosine, stratum, vetoed, channel)

    def stats(self) -> dict[str, Any]:
        """What the bound has learned, for reports and benchmarks."""
        self.sync()
        with self._lock:
            return {"max_false_hit_rate": self.delta, "confidence": self.confidence,
                    "explore_rate": self.explore_rate, "scope": self.scope,
                    "labelled": sum(self._by_source.values()),
                    "labelled_by_source": dict(self._by_source),
                    "labelled_by_stratum": {
                        s: self._counts[self.channels[-1], s].n for s in STRATA},
                    "thresholds": {s: None if r is None else {"channel": r[0], "threshold": r[1]}
                                   for s, r in self._rules.items()},
                    "explored": self.explored,
                    "served": self.served, "entries_known": len(self._entries),
                    "shared": self.log is not None}


def label_for(decision: Decision, *, tenant: str, entry: str, correct: bool,
              source: LabelSource, at: float) -> Label:
    """The label of a decided candidate once its answer is known."""
    return Label(tenant=tenant, entry=entry, score=decision.score, cosine=decision.cosine,
                 stratum=decision.stratum, vetoed=decision.vetoed, correct=correct,
                 source=source, at=at)
