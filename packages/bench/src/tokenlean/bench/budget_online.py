"""``tokenlean bench budget FILE --online``: the calibrated layer learning on a stream.

Rows go through the real :class:`~tokenlean.budget.BudgetLayer` (calibration on)
and a real :class:`~tokenlean.budget.SQLiteBudgetStore` in a temporary folder,
in file order. For each row the layer decides the ``max_tokens`` to send; the
simulated provider answers the row's ``response`` (its length in gpt-4o tokens,
as ``load_examples`` counts it), cut at that cap with ``finish_reason="length"``
when it is longer -- so the layer learns from exactly what a deployment sees,
censored answers included.
"""

from __future__ import annotations

import math
import tempfile
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tokenlean.budget import BudgetLayer, Calibration, LengthPredictor, SQLiteBudgetStore
from tokenlean.budget._features import model_key
from tokenlean.core import InvalidRequestError, Message, Request, Response, Usage

from .budget_train import Example, train

__all__ = ["ScaledPrior", "leave_one_model_out", "online_run"]


class ScaledPrior:
    """A deliberately mis-specified prior: ``scale`` x another predictor's figure."""

    def __init__(self, base: LengthPredictor, scale: float) -> None:
        if not scale > 0:
            raise InvalidRequestError(f"--prior-scale must be positive, got {scale}")
        self.base, self.scale, self.quantile = base, scale, base.quantile

    def predict(self, messages: Sequence[Message], model: str | None = None) -> int:
        return max(1, round(self.scale * self.base.predict(messages, model=model)))


def _oracle_constant(actual: Sequence[int], coverage: float) -> float | None:
    """Width of the best *constant* bound for these answers, chosen knowing all of them:
    the ``coverage`` quantile of their lengths over their mean. A diagnostic, not a
    method: when a model's lengths are this spread, any bound must pay about this much
    unless its prompts predict the lengths."""
    if not actual or not sum(actual):
        return None
    ranked = sorted(actual)
    quantile = ranked[min(len(ranked) - 1, math.ceil(coverage * len(ranked)) - 1)]
    return round(quantile / (sum(actual) / len(actual)), 3)


def _summary(rows: Sequence[Mapping[str, Any]], coverage: float) -> dict[str, Any]:
    after = [r for r in rows if r["after_warmup"]]
    def mean(key: str, group: Sequence[Mapping[str, Any]]) -> float | None:
        values = [r[key] for r in group if r[key] is not None]
        return round(sum(values) / len(values), 1) if values else None
    out: dict[str, Any] = {
        "rows": len(rows), "rows_after_warmup": len(after),
        "coverage": round(sum(r["fitted"] for r in rows) / len(rows), 4) if rows else None,
        "coverage_after_warmup": round(sum(r["fitted"] for r in after) / len(after), 4)
        if after else None,
        "mean_predicted": mean("cap", after), "mean_actual": mean("actual", after),
        "prior_coverage_after_warmup": round(sum(r["actual"] <= r["prior"] for r in after)
                                             / len(after), 4) if after else None,
        "prior_mean_predicted": mean("prior", after),
    }
    if out["mean_predicted"] is not None and out["mean_actual"]:
        out["predicted_over_actual_after_warmup"] = round(
            out["mean_predicted"] / out["mean_actual"], 3)
        out["prior_over_actual_after_warmup"] = round(
            out["prior_mean_predicted"] / out["mean_actual"], 3)
        out["oracle_constant_over_actual_after_warmup"] = _oracle_constant(
            [r["actual"] for r in after], coverage)
    return out


def online_run(examples: Sequence[Example], predictor: Any, *, warmup: int,
               app_cap: int | None = None, step: float = 0.05) -> dict[str, Any]:
    """Stream ``examples`` (file order) through a calibrated layer on a fresh SQLite store."""
    if not examples:
        raise InvalidRequestError("no rows to stream")
    calibration = Calibration(warmup=warmup, step=step)
    rows: list[dict[str, Any]] = []
    seen: dict[str, int] = defaultdict(int)
    with tempfile.TemporaryDirectory(prefix="tokenlean-bench-budget-") as folder:
        store = SQLiteBudgetStore(Path(folder) / "budget.sqlite")
        layer = BudgetLayer(predictor=predictor, store=store, calibration=calibration)
        try:
            for ex in examples:
                sent = layer.process(Request(messages=ex.messages, model=ex.model,
                                             max_tokens=app_cap))
                cap = sent.output_cap
                cut = cap is not None and ex.response_tokens > cap
                billed = min(ex.response_tokens, cap) if cap is not None else ex.response_tokens
                layer.on_response(sent, Response(
                    text="", finish_reason="length" if cut else "stop",
                    usage=Usage(input_tokens=1, output_tokens=billed)))
                detail = sent.notes[-1].detail
                rows.append({"model": ex.model, "cap": cap, "actual": ex.response_tokens,
                             "fitted": not cut, "prior": int(detail["prior_max_tokens"]),
                             "after_warmup": seen[ex.model] >= warmup})
                seen[ex.model] += 1
        finally:
            store.close()
    by_model: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        by_model[row["model"]].append(row)
    target = calibration.target(predictor)
    return {"online": True, "warmup": warmup, "coverage_target": target,
            "app_cap": app_cap, "step": step, **_summary(rows, target),
            "per_model": {m: _summary(group, target) for m, group in sorted(by_model.items())}}


def leave_one_model_out(examples: Sequence[Example], prior_rows: Sequence[Example], *,
                        quantile: float, warmup: int, app_cap: int | None = None,
                        step: float = 0.05, prior_scale: float = 1.0) -> dict[str, Any]:
    """For each model of ``examples``: retrain the prior on ``prior_rows`` without that
    model (every version of it: rows are grouped by normalised name, so gpt-4-0314
    leaves gpt-4-0613 out too), then stream that model's rows through the calibrated
    layer with the new prior."""
    groups: dict[str, list[Example]] = defaultdict(list)
    for ex in examples:
        groups[ex.model].append(ex)
    runs: dict[str, Any] = {}
    for model, rows in sorted(groups.items()):
        key = model_key(model)
        kept = [e for e in prior_rows if model_key(e.model) != key]
        prior = LengthPredictor(train(kept, quantiles=[quantile], default_quantile=quantile,
                                      version=f"lomo-{key}"), quantile=quantile)
        if prior.knows_model(model):  # cannot happen: its rows were left out by that key
            raise InvalidRequestError(f"the retrained prior still knows {model!r}")
        run = online_run(rows, prior if prior_scale == 1.0 else ScaledPrior(prior, prior_scale),
                         warmup=warmup, app_cap=app_cap, step=step)
        run.pop("per_model")
        runs[model] = run
    covs = [r["coverage_after_warmup"] for r in runs.values()
            if r["coverage_after_warmup"] is not None]
    ratios = [r["predicted_over_actual_after_warmup"] for r in runs.values()
              if r.get("predicted_over_actual_after_warmup") is not None]
    return {"online": True, "leave_one_model_out": True, "warmup": warmup,
            "quantile": quantile, "prior_scale": prior_scale, "app_cap": app_cap, "step": step,
            "prior_rows": len(prior_rows),
            "min_coverage_after_warmup": min(covs) if covs else None,
            "max_predicted_over_actual_after_warmup": max(ratios) if ratios else None,
            "per_model": runs}
