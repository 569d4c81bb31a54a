"""``LengthPredictor``: ``max_tokens`` for a prompt from a small JSON artefact.

The artefact holds gradient-boosted regression trees (one ensemble per
quantile) predicting ``log1p`` of the answer's length in gpt-4o tokens, plus
a conformal offset per quantile measured on a calibration split, so that
*held-out* coverage matches the quantile. Inference is numpy only; training
(``scripts/train_length_predictor.py`` / :func:`tokenlean.budget.train`)
needs scikit-learn.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from tokenlean.core import ConfigError, InvalidRequestError, Message

from ._features import FEATURE_NAMES, FEATURE_VERSION, features

__all__ = ["DEFAULT_ARTEFACT", "LengthPredictor"]

DEFAULT_ARTEFACT = Path(__file__).parent / "_data" / "length_predictor_v1.json"
FORMAT = "tokenlean.length_predictor"


class _Ensemble:
    """Boosted trees: ``init + learning_rate * sum(tree(x)) + offset``."""

    def __init__(self, spec: Mapping[str, Any]) -> None:
        self.init = float(spec["init"])
        self.learning_rate = float(spec["learning_rate"])
        self.offset = float(spec.get("offset", 0.0))
        trees = spec["trees"]
        self.depth = max(int(t.get("depth", 8)) for t in trees) if trees else 0
        # one flat node table for all trees: node ids shifted per tree
        feature, threshold, left, right, value, roots = [], [], [], [], [], []
        base = 0
        for tree in trees:
            n = len(tree["value"])
            roots.append(base)
            feature += tree["feature"]
            threshold += tree["threshold"]
            left += [c + base if c >= 0 else -1 for c in tree["left"]]
            right += [c + base if c >= 0 else -1 for c in tree["right"]]
            value += tree["value"]
            base += n
        self.feature = np.asarray(feature, dtype=np.int64)
        self.threshold = np.asarray(threshold, dtype=np.float64)
        self.left = np.asarray(left, dtype=np.int64)
        self.right = np.asarray(right, dtype=np.int64)
        self.value = np.asarray(value, dtype=np.float64)
        self.roots = np.asarray(roots, dtype=np.int64)

    def raw(self, x: np.ndarray) -> np.ndarray:
        """Predictions (log space, before the offset) for rows of ``x``."""
        n = x.shape[0]
        total = np.full(n, self.init)
        if self.roots.size == 0:
            return total
        nodes = np.broadcast_to(self.roots, (n, self.roots.size)).copy()
        rows = np.arange(n)[:, None]
        for _ in range(self.depth + 1):
            leaf = self.left[nodes] < 0
            if leaf.all():
                break
            feat = np.where(leaf, 0, self.feature[nodes])
            go_left = x[rows, feat] <= self.threshold[nodes]
            nodes = np.where(leaf, nodes, np.where(go_left, self.left[nodes], self.right[nodes]))
        return total + self.learning_rate * self.value[nodes].sum(axis=1)


class LengthPredictor:
    """Predicts an output length covering ``quantile`` of good answers.

    ``LengthPredictor.default()`` loads the shipped artefact;
    ``LengthPredictor.load(path)`` a retrained one. ``quantile`` must be one
    of the artefact's (``available_quantiles``). Predictions are clipped to
    ``[min_tokens, max_tokens]``.
    """

    def __init__(self, artefact: Mapping[str, Any], *, quantile: float | None = None,
                 min_tokens: int = 16, max_tokens: int = 16384,
                 count_model: str = "gpt-4o") -> None:
        if artefact.get("format") != FORMAT:
            raise ConfigError(f"not a length-predictor artefact (format {artefact.get('format')!r})")
        if artefact.get("feature_version") != FEATURE_VERSION or \
                tuple(artefact.get("feature_names", ())) != FEATURE_NAMES:
            raise ConfigError(
                f"the artefact was trained on feature version {artefact.get('feature_version')}, "
                f"this tokenlean-budget computes version {FEATURE_VERSION}; retrain it with "
                "scripts/train_length_predictor.py")
        self.artefact = artefact
        self.version = str(artefact.get("version", ""))
        self._ensembles = {float(q): spec for q, spec in artefact["quantiles"].items()}
        q = float(artefact.get("default_quantile", 0.9)) if quantile is None else float(quantile)
        if q not in self._ensembles:
            raise ConfigError(f"quantile {q} is not in the artefact; available: "
                              f"{self.available_quantiles}")
        if not 1 <= min_tokens <= max_tokens:
            raise ConfigError("need 1 <= min_tokens <= max_tokens")
        self.quantile = q
        self.min_tokens, self.max_tokens = min_tokens, max_tokens
        self.count_model = count_model
        self._built: dict[float, _Ensemble] = {}

    @property
    def available_quantiles(self) -> list[float]:
        return sorted(self._ensembles)

    @classmethod
    def load(cls, path: str | Path, **options: Any) -> LengthPredictor:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot read length-predictor artefact {path}: {exc}") from exc
        return cls(data, **options)

    @classmethod
    def default(cls, **options: Any) -> LengthPredictor:
        """The artefact shipped with tokenlean-budget."""
        return cls(_default_artefact(), **options)

    def with_quantile(self, quantile: float) -> LengthPredictor:
        return LengthPredictor(self.artefact, quantile=quantile, min_tokens=self.min_tokens,
                               max_tokens=self.max_tokens, count_model=self.count_model)

    def _ensemble(self, quantile: float) -> _Ensemble:
        if quantile not in self._built:
            self._built[quantile] = _Ensemble(self._ensembles[quantile])
        return self._built[quantile]

    def featurize(self, chats: Sequence[Sequence[Message]]) -> np.ndarray:
        return np.asarray([features(c, count_model=self.count_model) for c in chats],
                          dtype=np.float64).reshape(len(chats), len(FEATURE_NAMES))

    def predict_matrix(self, x: np.ndarray, *, quantile: float | None = None) -> np.ndarray:
        """Token predictions for a feature matrix (rows of :func:`features`)."""
        q = self.quantile if quantile is None else float(quantile)
        if q not in self._ensembles:
            raise ConfigError(f"quantile {q} is not in the artefact; available: "
                              f"{self.available_quantiles}")
        # no quantile crossing: a higher quantile never predicts less than a lower one
        logs = np.max([self._ensemble(lower).raw(x) + self._ensemble(lower).offset
                       for lower in self.available_quantiles if lower <= q], axis=0)
        tokens = np.ceil(np.expm1(np.clip(logs, 0, math.log(self.max_tokens + 1))))
        return np.clip(tokens, self.min_tokens, self.max_tokens).astype(np.int64)

    def predict_many(self, chats: Sequence[Sequence[Message]], *,
                     quantile: float | None = None) -> list[int]:
        if not chats:
            return []
        return [int(v) for v in self.predict_matrix(self.featurize(chats), quantile=quantile)]

    def predict(self, messages: Sequence[Message], *, quantile: float | None = None) -> int:
        """``max_tokens`` for one chat."""
        messages = tuple(m if isinstance(m, Message) else Message.from_openai(m) for m in messages)
        if not messages:
            raise InvalidRequestError("predict needs at least one message")
        return self.predict_many([messages], quantile=quantile)[0]


@lru_cache(maxsize=1)
def _default_artefact() -> Mapping[str, Any]:
    try:
        return json.loads(DEFAULT_ARTEFACT.read_text(encoding="utf-8"))
    except OSError as exc:  # pragma: no cover - a broken install
        raise ConfigError(f"the shipped length predictor is missing ({exc}); "
                          "reinstall tokenlean-budget") from exc
