"""The label log: what the semantic cache learned about its own matches.

Every time the cache learns whether a stored answer was right for a new query
(the model was called on a miss or an exploration and its answer compared
with the stored one, or the app reported a wrong hit), it appends one
:class:`Label` to a log in its store. The false-hit bound
(:mod:`._bound`) is a function of that log, so every process sharing a store
shares what was learned, and a restarted process picks it up.

A store keeps the log per *scope* (the scorer the labels belong to: embedder
and verifier); a label is a small JSON document (no query text, no answer).
Stores that can hold a log implement :class:`LabelLog`:

* ``add_labels(scope, bodies, keep)`` appends, in order, and keeps at most
  ``keep`` newest labels of the scope (older ones may be dropped lazily);
* ``labels_after(scope, seq, limit)`` returns ``(seq, body)`` pairs with
  ``seq`` greater than the one given, in increasing order; ``seq`` values
  only grow, so a reader remembers the last it saw.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Literal, Protocol, runtime_checkable

__all__ = ["DEFAULT_KEEP_LABELS", "Label", "LabelLog", "LabelSource"]

#: labels a store keeps per scope (about 150 bytes each)
DEFAULT_KEEP_LABELS = 200_000

LabelSource = Literal["miss", "explore", "feedback", "warm"]


@dataclass(frozen=True, slots=True)
class Label:
    """One learned match: was ``entry`` the right answer for a query it scored ``score``?

    ``score`` and ``cosine`` are the two channels' scores (see :mod:`._bound`);
    ``stratum`` and ``vetoed`` are what the bound saw about the entry when it
    decided.
    """

    tenant: str
    entry: str           # the entry's exact key
    score: float         # the verifier's P(same meaning) of (stored query, new query)
    cosine: float        # the search cosine, clipped to [0, 1] (0 when the number rule fired)
    stratum: str         # "new" | "vouched" | "disputed" (see _bound.stratum_of)
    vetoed: bool         # the entry already had a wrong answer at a score at least this
    correct: bool
    source: LabelSource
    at: float

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> Label | None:
        """The label, or None for a body this version cannot read (skipped)."""
        try:
            data = json.loads(text)
            label = cls(tenant=str(data["tenant"]), entry=str(data["entry"]),
                        score=float(data["score"]), cosine=float(data["cosine"]),
                        stratum=str(data["stratum"]), vetoed=bool(data["vetoed"]),
                        correct=bool(data["correct"]),
                        source=data["source"], at=float(data["at"]))
        except (ValueError, TypeError, KeyError):
            return None
        if not 0.0 <= label.score <= 1.0 or not 0.0 <= label.cosine <= 1.0 or \
                label.source not in ("miss", "explore", "feedback", "warm"):
            return None
        return label


@runtime_checkable
class LabelLog(Protocol):
    """A store that can keep the cache's label log (see the module docstring)."""

    def add_labels(self, scope: str, bodies: Sequence[str], keep: int) -> None: ...

    def labels_after(self, scope: str, seq: int, limit: int) -> list[tuple[int, str]]: ...
