"""``lean(..., budget=...)``: the layer a keyword asks for (the ``tokenlean.layers``
entry point; see :mod:`tokenlean.core.presets`)."""

from __future__ import annotations

from tokenlean.core import ConfigError

from ._layer import BudgetLayer
from ._predictor import LengthPredictor


def make_layer(choice: bool | str) -> BudgetLayer:
    """``True`` / ``"predict"``: predicted ``max_tokens``; ``"concise"``: that plus the
    length instruction."""
    if choice not in {True, "predict", "concise"}:
        raise ConfigError(f"budget= takes True, 'predict' or 'concise', got {choice!r}")
    return BudgetLayer(predictor=LengthPredictor.default(), concise=choice == "concise")
