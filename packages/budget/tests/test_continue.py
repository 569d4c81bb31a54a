"""Truncation safety: ContinuingProvider alone and under a BudgetLayer."""

from __future__ import annotations

from decimal import Decimal

import pytest

from tokenlean.budget import Budget, BudgetLayer, ContinuingProvider, SQLiteBudgetStore
from tokenlean.core import (
    FunctionProvider,
    Message,
    ModelPrice,
    Pipeline,
    PriceTable,
    Request,
    Response,
    Usage,
    count_messages,
)

PRICES = PriceTable(overrides={
    "gpt-4o": ModelPrice(input_per_mtok=Decimal(1), output_per_mtok=Decimal(2))})
ANSWER = [f"w{i} " for i in range(250)]  # 250 "tokens" of answer


def cutting_provider() -> FunctionProvider:
    """Answers ANSWER from where the previous assistant turns stopped, max_tokens at a time."""

    def complete(request: Request) -> Response:
        done = sum(len(m.text.split()) for m in request.messages if m.role == "assistant")
        part = ANSWER[done:done + request.max_tokens]
        cut = done + len(part) < len(ANSWER)
        prompt = count_messages(request.messages, model=request.model).tokens
        return Response(text="".join(part), finish_reason="length" if cut else "stop",
                        usage=Usage(input_tokens=prompt, output_tokens=len(part)))

    return FunctionProvider(complete)


def req(max_tokens: int = 100) -> Request:
    return Request(messages=(Message(role="user", content="Tell me everything."),),
                   model="gpt-4o", max_tokens=max_tokens)


def test_continues_until_the_answer_stops() -> None:
    response = ContinuingProvider(cutting_provider(), max_continuations=2).complete(req())
    assert response.text == "".join(ANSWER)
    assert response.finish_reason == "stop" and response.usage.output_tokens == 250
    assert response.raw["tokenlean_continuation"]["parts"] == 3


def test_bounded_continuation_reports_the_truncation() -> None:
    response = ContinuingProvider(cutting_provider(), max_continuations=1).complete(req())
    assert response.finish_reason == "length"
    assert response.text == "".join(ANSWER[:200])


def test_under_a_budget_nothing_is_counted_twice(tmp_path) -> None:
    store = SQLiteBudgetStore(tmp_path / "b.sqlite")
    layer = BudgetLayer(budgets=[Budget(name="b", max_usd=1, scope="tenant")], store=store,
                        prices=PRICES)
    provider = ContinuingProvider(cutting_provider(), max_continuations=3, budget=layer)
    result = Pipeline(provider=provider, layers=[layer], prices=PRICES).run(req())
    assert result.response.text == "".join(ANSWER)
    probe = req()
    left = layer.remaining(probe)["b"]
    assert left["reserved_usd"] == 0
    usage = result.record.usage
    assert left["spent_usd"] == pytest.approx((usage.input_tokens + 2 * usage.output_tokens) / 1e6)
    store.close()


def test_budget_stops_continuations(tmp_path) -> None:
    store = SQLiteBudgetStore(tmp_path / "b.sqlite")
    prompt = count_messages(req().messages, model="gpt-4o").tokens
    # room for the first call's worst case and a bit, not for a continuation's
    limit = Decimal(prompt + 200 + 50) / Decimal(1_000_000)
    layer = BudgetLayer(budgets=[Budget(name="b", max_usd=limit, scope="tenant")], store=store,
                        prices=PRICES)
    provider = ContinuingProvider(cutting_provider(), max_continuations=3, budget=layer)
    result = Pipeline(provider=provider, layers=[layer], prices=PRICES).run(req())
    assert result.response.finish_reason == "length"
    assert result.response.raw["tokenlean_continuation"]["stopped_by_budget"] is True
    assert result.response.text == "".join(ANSWER[:100])
    assert layer.remaining(req())["b"]["reserved_usd"] == 0
    store.close()
