"""``LengthPredictor``: ``max_tokens`` for a prompt from a small JSON artefact.

The artefact holds gradient-boosted regression trees (one ensemble per
quantile) predicting ``log1p`` of the answer's length in gpt-4o tokens, plus
a conformal offset per quantile measured on a calibration split, so that
*held-out* coverage matches the quantile (on every source it was calibrated
on, not only on their mix).

Since version 2 the artefact also holds a *model table*: the typical answer
length (log) of each model seen in training, looked up by the request's model
name (:func:`~tokenlean.budget._features.model_key`). The model is known
before the call and explains much of the spread (the same prompt gets 200
tokens from one model and 600 from another). An unknown model gets the
``unknown`` value, which training also saw (every training row once more
with its model hidden), and its own, wider conformal offset. Inference is numpy only; training
(``scripts/train_length_predictor.py``, :mod:`tokenlean.bench.budget_train` in tokenlean-bench)
needs scikit-learn (``tokenlean[budget-train]``).
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

from ._features import FEATURE_NAMES, FEATURE_VERSION, features, model_key

__all__ = ["DEFAULT_ARTEFACT", "LengthPredictor"]

DEFAULT_ARTEFACT = Path(__file__).parent / "_data" / "length_predictor_v2.json"
FORMAT = "tokenlean.length_predictor"
MODEL_FEATURE = "model_log_length"
UNKNOWN_MODEL = -1.0  # the model column's value for a model not in the table (lengths are >= 0)


def model_column(table: Mapping[str, float] | None, models: Sequence[str | None]) -> np.ndarray:
    """The model feature for each row: the table's value, or ``UNKNOWN_MODEL``."""
    table = table or {}
    return np.asarray([table.get(model_key(m), UNKNOWN_MODEL) if m else UNKNOWN_MODEL
                       for m in models], dtype=np.float64)


class _Ensemble:
    """Boosted trees: ``init + learning_rate * sum(tree(x)) + offset``."""

    def __init__(self, spec: Mapping[str, Any]) -> None:
        self.init = float(spec["init"])
        self.learning_rate = float(spec["learning_rate"])
        self.offset = float(spec.get("offset", 0.0))
        self.offset_unknown = float(spec.get("offset_unknown", self.offset))
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
            raise ConfigError(
                f"not a length-predictor artefact (format {artefact.get('format')!r})")
        table = artefact.get("model_table")
        expected = FEATURE_NAMES + ((MODEL_FEATURE,) if table is not None else ())
        if artefact.get("feature_version") != FEATURE_VERSION or \
                tuple(artefact.get("feature_names", ())) != expected:
            raise ConfigError(
                f"the artefact was trained on feature version {artefact.get('feature_version')}, "
                f"this tokenlean-budget computes version {FEATURE_VERSION}; retrain it with "
                "scripts/train_length_predictor.py")
        self.artefact = artefact
        self.model_table: dict[str, float] | None = None if table is None else {
            str(k): float(v) for k, v in table.items()}
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

    def knows_model(self, model: str | None) -> bool:
        """Whether ``model`` is in the artefact's model table (else: the model-agnostic path)."""
        return bool(model) and model_key(model) in (self.model_table or {})

    def with_model_column(self, x: np.ndarray, models: Sequence[str | None] | None) -> np.ndarray:
        """``x`` (prompt features) with the model column appended when the artefact has one."""
        if self.model_table is None:
            return x
        column = model_column(self.model_table, models or [None] * x.shape[0])
        return np.column_stack([x, column])

    def featurize(self, chats: Sequence[Sequence[Message]],
                  models: Sequence[str | None] | None = None) -> np.ndarray:
        """The predictor's input rows: prompt features (+ the model column)."""
        if models is not None and len(models) != len(chats):
            raise InvalidRequestError("models must have one entry per chat")
        x = np.asarray([features(c, count_model=self.count_model) for c in chats],
                       dtype=np.float64).reshape(len(chats), len(FEATURE_NAMES))
        return self.with_model_column(x, models)

    def predict_matrix(self, x: np.ndarray, *, quantile: float | None = None) -> np.ndarray:
        """Token predictions for rows of :meth:`featurize`."""
        q = self.quantile if quantile is None else float(quantile)
        if q not in self._ensembles:
            raise ConfigError(f"quantile {q} is not in the artefact; available: "
                              f"{self.available_quantiles}")
        unknown = x[:, -1] == UNKNOWN_MODEL if self.model_table is not None else \
            np.zeros(x.shape[0], dtype=bool)

        def bound(lower: float) -> np.ndarray:
            ensemble = self._ensemble(lower)
            return ensemble.raw(x) + np.where(unknown, ensemble.offset_unknown, ensemble.offset)

        # no quantile crossing: a higher quantile never predicts less than a lower one
        logs = np.max([bound(lower) for lower in self.available_quantiles if lower <= q], axis=0)
        tokens = np.ceil(np.expm1(np.clip(logs, 0, math.log(self.max_tokens + 1))))
        return np.clip(tokens, self.min_tokens, self.max_tokens).astype(np.int64)

    def predict_many(self, chats: Sequence[Sequence[Message]], *, quantile: float | None = None,
                     models: Sequence[str | None] | None = None) -> list[int]:
        """``max_tokens`` per chat; ``models``: the model answering each (None: unknown)."""
        if not chats:
            return []
        return [int(v) for v in self.predict_matrix(self.featurize(chats, models),
                                                    quantile=quantile)]

    def predict(self, messages: Sequence[Message | Mapping[str, Any]], *,
                quantile: float | None = None, model: str | None = None) -> int:
        """``max_tokens`` for one chat answered by ``model`` (None or unknown: model-agnostic);
        ``messages`` may also be OpenAI-style dicts."""
        chat = tuple(m if isinstance(m, Message) else Message.from_openai(m) for m in messages)
        if not chat:
            raise InvalidRequestError("predict needs at least one message")
        return self.predict_many([chat], quantile=quantile, models=[model])[0]


@lru_cache(maxsize=1)
def _default_artefact() -> Mapping[str, Any]:
    try:
        return json.loads(DEFAULT_ARTEFACT.read_text(encoding="utf-8"))
    except OSError as exc:  # pragma: no cover - a broken install
        raise ConfigError(f"the shipped length predictor is missing ({exc}); "
                          "reinstall tokenlean-budget") from exc
