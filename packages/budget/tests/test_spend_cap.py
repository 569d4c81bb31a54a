"""Invariant: the budget layer may lower the app's output cap, never raise it.

Whatever the policy, wherever the app put its cap (``max_tokens``, or the
provider's own name for it in ``params``), the request the layer returns
sends one cap, no higher than the app's. Where the app gave none the layer
may set one (the predictor's, else ``default_max_tokens``).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from tokenlean.budget import Budget, BudgetLayer, LengthPredictor
from tokenlean.core import Message, ModelPrice, PriceTable, Request

PRICES = PriceTable(overrides={
    "gpt-4o": ModelPrice(input_per_mtok=Decimal(1), output_per_mtok=Decimal(2)),
    "gpt-4o-mini": ModelPrice(input_per_mtok=Decimal("0.1"), output_per_mtok=Decimal("0.2")),
})
CAP = 30
CAP_KEYS = ("max_tokens", "max_completion_tokens", "max_output_tokens")
# one budget per policy, each roomy enough for the call (a tight one is below)
BUDGETS = {
    "none": (),
    "raise": (Budget(name="b", max_tokens=100_000, scope="call"),),
    "clamp": (Budget(name="b", max_tokens=100_000, scope="call", policy="clamp"),),
    "route": (Budget(name="b", max_usd=10, scope="call", policy="route",
                     route_to=("gpt-4o-mini",)),),
    "warn": (Budget(name="b", max_tokens=100_000, scope="call", policy="warn"),),
}
APP_CAPS: dict[str, dict[str, Any]] = {
    "max_tokens": {"max_tokens": CAP},
    "max_completion_tokens": {"params": {"max_completion_tokens": CAP}},
    "max_output_tokens": {"params": {"max_output_tokens": CAP}},
}


def request(**cap: Any) -> Request:
    text = "Write a long, detailed essay on the history of Lisbon and its 1755 earthquake."
    return Request(messages=(Message(role="user", content=text),), model="gpt-4o", **cap)


def sent_caps(out: Request) -> dict[str, int]:
    body = out.to_openai()
    return {key: body[key] for key in CAP_KEYS if key in body}


@pytest.mark.parametrize("policy", sorted(BUDGETS))
@pytest.mark.parametrize("where", sorted(APP_CAPS))
@pytest.mark.parametrize("concise", [False, True])
def test_the_layer_never_raises_the_apps_cap(policy: str, where: str, concise: bool) -> None:
    layer = BudgetLayer(budgets=BUDGETS[policy], prices=PRICES, concise=concise,
                        predictor=LengthPredictor.default())
    assert layer.predict_max_tokens(request()) > CAP  # the prediction alone would raise it
    caps = sent_caps(layer.process(request(**APP_CAPS[where])))
    assert len(caps) == 1, f"the request must send one output cap, got {caps}"
    assert next(iter(caps.values())) <= CAP


def test_a_tight_clamp_lowers_the_cap() -> None:
    layer = BudgetLayer(budgets=[Budget(name="b", max_tokens=40, scope="call", policy="clamp",
                                        min_output_tokens=1)], prices=PRICES)
    asked = request(params={"max_completion_tokens": CAP})
    prompt = layer.process(request()).notes[-1].detail["prompt_tokens"]
    caps = sent_caps(layer.process(asked))
    assert list(caps.values()) == [40 - prompt] and 40 - prompt < CAP


def test_with_no_cap_the_layer_may_set_one() -> None:
    layer = BudgetLayer(predictor=LengthPredictor.default(), prices=PRICES)
    caps = sent_caps(layer.process(request()))
    assert list(caps.values()) == [layer.predict_max_tokens(request())]
