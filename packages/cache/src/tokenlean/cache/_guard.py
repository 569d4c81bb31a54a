"""The false-hit guard: a second look at the few candidates the vector search found.

A cosine between two pooled vectors cannot tell "flights from Paris to Rome"
from "from Rome to Paris", nor "is X bigger than Y" from "is Y bigger than X".
The guard re-reads each candidate (at most ``top_k`` per lookup):

1. **rules**: texts that each carry a number the other lacks are different
   questions (:mod:`._rules`);
2. **a cross-encoder**: MiniLM reads the stored question and the new one
   together and outputs P(same meaning); the candidate is served only when that
   clears ``threshold``. The model is all-MiniLM-L6-v2 from its wheel plus a
   ~1 MB LoRA delta trained on the development pairs
   (``scripts/train_cache_verifier.py``), see :mod:`._crossenc`.

Cost: one MiniLM forward pass over the candidate pairs, batched (a few ms per
pair on one CPU core); reported separately by ``tokenlean bench cache``.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tokenlean.core import ConfigError

from ._rules import conflicting_numbers

__all__ = ["FalseHitGuard", "GuardVerdict"]


@dataclass(frozen=True, slots=True)
class GuardVerdict:
    """The guard's reading of one candidate."""

    probability: float  # P(same meaning) from the verifier (0.0 when a rule rejected it)
    accepted: bool
    reason: str  # "verifier", "numbers"


class FalseHitGuard:
    """Decides whether a stored question may answer a new one.

    Args:
        threshold: overrides the verifier's tuned threshold (higher: fewer,
            safer hits).
        verifier: path of a trained ``crossenc.npz`` (default: the shipped one).
        rules: apply the number rule before the model.
    """

    def __init__(self, *, threshold: float | None = None, verifier: str | Path | None = None,
                 rules: bool = True) -> None:
        from ._crossenc import DEFAULT_CROSSENC

        self.path = Path(verifier) if verifier is not None else DEFAULT_CROSSENC
        if not self.path.is_file():
            raise ConfigError(f"cache verifier {self.path} not found; train one with "
                              "scripts/train_cache_verifier.py or use guard=None")
        if threshold is not None and not 0.0 <= threshold <= 1.0:
            raise ConfigError(f"guard threshold must be in [0, 1], got {threshold}")
        self._threshold = threshold
        self.rules = rules
        self._model: Any = None
        self._lock = threading.Lock()

    @property
    def model(self) -> Any:
        """The cross-encoder, loaded on first use."""
        with self._lock:
            if self._model is None:
                from ._crossenc import CrossEncoder

                self._model = CrossEncoder(path=self.path)
            return self._model

    @property
    def threshold(self) -> float:
        return self.model.threshold if self._threshold is None else self._threshold

    def probabilities(self, query: str, candidates: Sequence[str]) -> np.ndarray:
        """P(same meaning) of each stored question in ``candidates`` and ``query``."""
        return self.model.probabilities(list(candidates), [query] * len(candidates))

    def check(self, query: str, candidates: Sequence[str]) -> list[GuardVerdict]:
        """One verdict per candidate (stored question), same order."""
        verdicts: list[GuardVerdict | None] = [None] * len(candidates)
        todo = []
        for i, cand in enumerate(candidates):
            if self.rules and conflicting_numbers(cand, query):
                verdicts[i] = GuardVerdict(0.0, False, "numbers")
            else:
                todo.append(i)
        if todo:
            probs = self.probabilities(query, [candidates[i] for i in todo])
            threshold = self.threshold
            for i, p in zip(todo, probs, strict=True):
                verdicts[i] = GuardVerdict(float(p), bool(p >= threshold), "verifier")
        return [v for v in verdicts if v is not None]

    def describe(self) -> dict[str, Any]:
        return {"threshold": self.threshold, "rules": self.rules, **self.model.meta}
