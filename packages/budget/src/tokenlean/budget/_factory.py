"""``lean(..., budget=...)``: the layer a keyword asks for (the ``tokenlean.layers``
entry point; see :mod:`tokenlean.core.presets`)."""

from __future__ import annotations

from collections.abc import Sequence

from tokenlean.core import ConfigError

from ._layer import BudgetLayer
from ._predictor import LengthPredictor
from ._store import SQLiteBudgetStore


def make_layer(choice: bool | str,
               concise_task_types: Sequence[str] | None = None) -> BudgetLayer:
    """``True`` / ``"predict"``: predicted ``max_tokens``, calibrated on the app's own
    completions per (model, route) in the embedded store (the ledger's SQLite file):
    until a model has warmed up, the app's own cap is left as it is; ``"concise"``:
    that plus the length instruction on the task types where it is safe, and on
    ``concise_task_types`` (e.g. ``("code", "math")``)."""
    if choice not in {True, "predict", "concise"}:
        raise ConfigError(f"budget= takes True, 'predict' or 'concise', got {choice!r}")
    if concise_task_types is not None and choice != "concise":
        raise ConfigError(f"concise_task_types={concise_task_types!r} needs budget='concise' "
                          f"(got budget={choice!r})")
    return BudgetLayer(predictor=LengthPredictor.default(), calibration=True,
                       store=SQLiteBudgetStore(), concise=choice == "concise",
                       concise_task_types=concise_task_types)
