"""Training and evaluating the length predictor (training needs scikit-learn).

Data: JSONL rows of the *prompts* shape ``{"id", "messages", "response",
"model", "source"}`` -- the shared evaluation files, or a user's own log of
prompts and the answers they got. Rows with the same messages are one
*prompt*; splits are by prompt (a hash of its messages), so no prompt is in
two splits: buckets 0-5 train, 6-7 calibrate (the conformal offset), 8-9 test.

Besides the prompt features the model gets the answering model's typical
length (a table fitted on the training rows, looked up by model name); each
training row is used twice, once with its model and once with the model
hidden, so the same trees also serve models not in the table. Conformal
offsets are taken per *source family* of the calibration rows (the part of
``source`` before ``/``) and the largest is kept, so the quantile holds on
each kind of traffic, not only on the mix.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from tokenlean.budget import LengthPredictor
from tokenlean.budget._features import FEATURE_NAMES, FEATURE_VERSION, features, model_key
from tokenlean.budget._predictor import (
    FORMAT,
    MODEL_FEATURE,
    UNKNOWN_MODEL,
    _Ensemble,
    model_column,
)
from tokenlean.core import (
    InvalidRequestError,
    Message,
    MissingExtraError,
    count_tokens,
    read_prompts,
)

__all__ = ["Example", "evaluate", "load_examples", "split_of", "train"]

TRAIN, CALIBRATE, TEST = "train", "calibrate", "test"
DEFAULT_QUANTILES = (0.5, 0.8, 0.9, 0.95)


def split_of(messages: Sequence[Message]) -> str:
    """The split a prompt belongs to (stable: a hash of its messages)."""
    body = json.dumps([[m.role, m.text] for m in messages], ensure_ascii=False)
    bucket = int(hashlib.sha1(body.encode()).hexdigest()[:8], 16) % 10
    return TRAIN if bucket < 6 else CALIBRATE if bucket < 8 else TEST


@dataclass(frozen=True, slots=True)
class Example:
    messages: tuple[Message, ...]
    response_tokens: int
    model: str
    source: str
    prompt_key: str
    split: str


def load_examples(paths: Iterable[str | Path], *, count_model: str = "gpt-4o",
                  limit: int | None = None) -> list[Example]:
    """Rows with a non-empty response, their length counted with ``count_model``."""
    out: list[Example] = []
    for path in paths:
        for row, messages in read_prompts(path):
            response = row.get("response")
            if not isinstance(response, str) or not response.strip() or not messages:
                continue
            key = hashlib.sha1(json.dumps([[m.role, m.text] for m in messages],
                                          ensure_ascii=False).encode()).hexdigest()
            out.append(Example(messages, max(1, count_tokens(response, model=count_model).tokens),
                               str(row.get("model", "")), str(row.get("source", "")), key,
                               split_of(messages)))
            if limit is not None and len(out) >= limit:
                return out
    return out


def _matrix(examples: Sequence[Example], count_model: str) -> np.ndarray:
    cache: dict[str, list[float]] = {}
    rows = []
    for ex in examples:
        if ex.prompt_key not in cache:
            cache[ex.prompt_key] = features(ex.messages, count_model=count_model)
        rows.append(cache[ex.prompt_key])
    return np.asarray(rows, dtype=np.float64).reshape(len(examples), len(FEATURE_NAMES))


def _export(model: Any) -> list[dict[str, Any]]:
    trees = []
    for estimator in model.estimators_[:, 0]:
        t = estimator.tree_
        trees.append({
            "depth": int(t.max_depth),
            "feature": [int(f) if f >= 0 else 0 for f in t.feature],
            "threshold": [round(float(v), 6) for v in t.threshold],
            "left": [int(c) for c in t.children_left],
            "right": [int(c) for c in t.children_right],
            "value": [round(float(v), 6) for v in t.value[:, 0, 0]],
        })
    return trees


def _conformal(residuals: np.ndarray, q: float) -> float:
    """Split-conformal offset: the ceil((n+1)q)/n empirical quantile of residuals."""
    n = residuals.size
    if n == 0:
        return 0.0
    level = min(1.0, math.ceil((n + 1) * q) / n)
    return float(np.quantile(residuals, level, method="higher"))


def _group_conformal(residuals: np.ndarray, groups: Sequence[str], q: float,
                     min_rows: int) -> float:
    """The largest conformal offset over the pooled rows and each group of >= min_rows."""
    labels = np.asarray(groups)
    offsets = [_conformal(residuals, q)]
    for group in sorted(set(groups)):
        mask = labels == group
        if mask.sum() >= min_rows:
            offsets.append(_conformal(residuals[mask], q))
    return max(offsets)


def _model_table(examples: Sequence[Example], min_rows: int,
                 shrink: float = 20.0) -> dict[str, float]:
    """Mean log1p(length) per model (shrunk toward the overall mean), models with >= min_rows."""
    y = np.log1p([e.response_tokens for e in examples])
    overall = float(y.mean())
    by_model: dict[str, list[float]] = {}
    for ex, value in zip(examples, y, strict=True):
        if ex.model:
            by_model.setdefault(model_key(ex.model), []).append(float(value))
    return {key: round((sum(v) + shrink * overall) / (len(v) + shrink), 4)
            for key, v in sorted(by_model.items()) if len(v) >= min_rows}


def train(examples: Sequence[Example], *, quantiles: Sequence[float] = DEFAULT_QUANTILES,
          default_quantile: float = 0.9, n_estimators: int = 150, max_depth: int = 3,
          learning_rate: float = 0.05, count_model: str = "gpt-4o",
          version: str = "1", sources: Sequence[str] = (), use_model: bool = True,
          min_model_rows: int = 30, min_group_rows: int = 100) -> dict[str, Any]:
    """Fit one boosted-tree ensemble per quantile; returns the artefact (a dict).

    ``use_model``: add the model table and the model column (see the module
    docstring); ``min_model_rows``: training rows a model needs to get an
    entry; ``min_group_rows``: calibration rows a source family needs to get
    its own conformal offset.
    """
    try:
        from sklearn.ensemble import GradientBoostingRegressor
    except ImportError as exc:
        raise MissingExtraError(feature="training the length predictor", extra="budget-train",
                                module="sklearn") from exc
    if default_quantile not in quantiles:
        raise InvalidRequestError("default_quantile must be one of quantiles")
    fit = [e for e in examples if e.split == TRAIN]
    cal = [e for e in examples if e.split == CALIBRATE]
    if len(fit) < 50:
        raise InvalidRequestError(f"need at least 50 training rows, got {len(fit)}")
    x_fit, x_cal = _matrix(fit, count_model), _matrix(cal, count_model)
    y_fit = np.log1p([e.response_tokens for e in fit])
    y_cal = np.log1p([e.response_tokens for e in cal])
    table = _model_table(fit, min_model_rows) if use_model else None
    x_cal_unknown = x_cal
    if table is not None:
        # every training row twice: with its model's value and with the model hidden
        x_fit = np.vstack([
            np.column_stack([x_fit, model_column(table, [e.model for e in fit])]),
            np.column_stack([x_fit, np.full(len(fit), UNKNOWN_MODEL)])])
        y_fit = np.concatenate([y_fit, y_fit])
        x_cal_unknown = np.column_stack([x_cal, np.full(len(cal), UNKNOWN_MODEL)])
        x_cal = np.column_stack([x_cal, model_column(table, [e.model for e in cal])])
    groups = [e.source.split("/", 1)[0] for e in cal]
    ensembles: dict[str, Any] = {}
    for q in quantiles:
        model = GradientBoostingRegressor(loss="quantile", alpha=q, n_estimators=n_estimators,
                                          max_depth=max_depth, learning_rate=learning_rate,
                                          subsample=0.8, min_samples_leaf=20, random_state=0)
        model.fit(x_fit, y_fit)
        init = float(model.init_.constant_[0][0]) if hasattr(model.init_, "constant_") else \
            float(np.quantile(y_fit, q))
        spec = {"init": init, "learning_rate": learning_rate, "offset": 0.0,
                "trees": _export(model)}
        if len(cal):
            ensemble = _Ensemble(spec)
            spec["offset"] = round(_group_conformal(y_cal - ensemble.raw(x_cal), groups, q,
                                                    min_group_rows), 6)
            if table is not None:
                spec["offset_unknown"] = round(_group_conformal(
                    y_cal - ensemble.raw(x_cal_unknown), groups, q, min_group_rows), 6)
        ensembles[str(q)] = spec
    artefact: dict[str, Any] = {
        "format": FORMAT,
        "version": version,
        "feature_version": FEATURE_VERSION,
        "feature_names": list(FEATURE_NAMES) + ([MODEL_FEATURE] if table is not None else []),
        "target": f"log1p(response tokens, {count_model} tokenizer)",
        "default_quantile": default_quantile,
        "quantiles": ensembles,
        # the honest baseline: one max_tokens for every prompt (same rows, same quantile)
        "constant_baseline": {str(q): int(np.ceil(np.quantile(
            [e.response_tokens for e in (*fit, *cal)], q))) for q in quantiles},
        "training": {
            "created": datetime.now(UTC).strftime("%Y-%m-%d"),
            "sources": list(sources),
            "rows_train": len(fit), "rows_calibrate": len(cal),
            "prompts_train": len({e.prompt_key for e in fit}),
            "split": "sha1(messages) % 10: 0-5 train, 6-7 calibrate, 8-9 test",
            "model": f"sklearn GradientBoostingRegressor(loss='quantile', n_estimators="
                     f"{n_estimators}, max_depth={max_depth}, learning_rate={learning_rate})",
            "calibration": f"split conformal, largest offset over source families with >= "
                           f"{min_group_rows} calibration rows and the pooled rows",
        },
    }
    if table is not None:
        artefact["model_table"] = table
    return artefact


def evaluate(predictor: LengthPredictor, examples: Sequence[Example], *,
             fixed_cap: int = 4096, quantile: float | None = None,
             use_model: bool = True) -> dict[str, Any]:
    """Coverage and budget size of ``predictor`` on ``examples`` (one row = one answer).

    ``use_model=False`` hides each row's model from the predictor (its
    model-agnostic path, as for a model it has never seen).
    """
    if not examples:
        raise InvalidRequestError("no examples to evaluate")
    x = predictor.with_model_column(_matrix(examples, predictor.count_model),
                                    [e.model for e in examples] if use_model else None)
    predicted = predictor.predict_matrix(x, quantile=quantile).astype(np.float64)
    actual = np.asarray([e.response_tokens for e in examples], dtype=np.float64)
    covered = actual <= predicted
    shortest: dict[str, float] = {}
    for ex in examples:
        shortest[ex.prompt_key] = min(shortest.get(ex.prompt_key, math.inf), ex.response_tokens)
    per_prompt_pred: dict[str, float] = {}
    for ex, p in zip(examples, predicted, strict=True):
        per_prompt_pred[ex.prompt_key] = p
    keys = list(shortest)
    mean_shortest = float(np.mean([shortest[k] for k in keys]))
    mean_pred_prompt = float(np.mean([per_prompt_pred[k] for k in keys]))
    fixed = np.full_like(actual, float(fixed_cap))
    q_used = predictor.quantile if quantile is None else float(quantile)
    constant = (predictor.artefact.get("constant_baseline") or {}).get(str(q_used))
    baseline = None if constant is None else {
        "max_tokens": constant,
        "coverage": round(float((actual <= constant).mean()), 4),
        "predicted_over_actual": round(float(constant / actual.mean()), 3),
    }
    return {
        "rows": int(actual.size),
        "prompts": len(keys),
        "quantile": q_used,
        "model_known_share": round(float(np.mean(
            [use_model and predictor.knows_model(e.model) for e in examples])), 4),
        "coverage": round(float(covered.mean()), 4),
        "truncation_rate": round(float(1 - covered.mean()), 4),
        "mean_predicted": round(float(predicted.mean()), 1),
        "median_predicted": float(np.median(predicted)),
        "mean_actual": round(float(actual.mean()), 1),
        "median_actual": float(np.median(actual)),
        "predicted_over_actual": round(float(predicted.mean() / actual.mean()), 3),
        "fixed_cap": fixed_cap,
        "fixed_cap_coverage": round(float((actual <= fixed).mean()), 4),
        "allocated_vs_fixed": round(float(predicted.mean() / fixed_cap), 4),
        "allocation_saving_vs_fixed": round(float(1 - predicted.mean() / fixed_cap), 4),
        "output_tokens_cut_share": round(float(np.maximum(actual - predicted, 0).sum()
                                               / actual.sum()), 4),
        "mean_shortest_answer": round(mean_shortest, 1),
        "shortest_answer_coverage": round(float(np.mean(
            [shortest[k] <= per_prompt_pred[k] for k in keys])), 4),
        "mean_predicted_per_prompt": round(mean_pred_prompt, 1),
        "constant_baseline": baseline,
    }
