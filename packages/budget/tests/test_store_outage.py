"""A failing budget store fails open: calls go on, one warning per outage."""

from __future__ import annotations

import warnings
from decimal import Decimal

import pytest

from tokenlean.budget import Budget, BudgetLayer, SQLiteBudgetStore
from tokenlean.core import (
    BudgetExceeded,
    FunctionProvider,
    Message,
    ModelPrice,
    Pipeline,
    PriceTable,
    Request,
    Response,
    TokenleanWarning,
    Usage,
)

PRICES = PriceTable(overrides={
    "gpt-4o": ModelPrice(input_per_mtok=Decimal(1), output_per_mtok=Decimal(2))})


class FlakyStore(SQLiteBudgetStore):
    """A real SQLite budget store whose every operation fails while ``down``."""

    down = False

    def _check(self) -> None:
        if self.down:
            raise OSError("disk I/O error (injected)")

    def reserve(self, *args, **kwargs):
        self._check()
        return super().reserve(*args, **kwargs)

    def settle(self, *args, **kwargs):
        self._check()
        return super().settle(*args, **kwargs)

    def release(self, *args, **kwargs):
        self._check()
        return super().release(*args, **kwargs)


def _answer(request: Request) -> Response:
    return Response(text="ok", model=request.model,
                    usage=Usage(input_tokens=1000, output_tokens=1000))


def _request() -> Request:
    return Request(messages=(Message(role="user", content="hi"),), model="gpt-4o",
                   max_tokens=1000, tenant="acme")


@pytest.fixture
def setup(tmp_path):
    store = FlakyStore(tmp_path / "b.sqlite")
    layer = BudgetLayer(budgets=[Budget(name="t", max_usd=0.01, scope="tenant")], store=store,
                        prices=PRICES)
    yield store, layer, Pipeline(provider=FunctionProvider(_answer), layers=[layer],
                                 prices=PRICES)
    store.close()


def _spent(layer: BudgetLayer) -> float:
    return layer.remaining(_request())["t"]["spent_usd"] or 0.0


def test_reserve_failures_pass_through_with_one_warning_per_outage(setup) -> None:
    store, layer, pipe = setup
    pipe.run(_request())  # $0.003 spent while up
    assert _spent(layer) == pytest.approx(0.003)
    store.down = True
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        results = [pipe.run(_request()) for _ in range(5)]  # would exceed $0.01 if counted
    assert all(r.response.text == "ok" for r in results)
    budget_warnings = [w for w in caught if issubclass(w.category, TokenleanWarning)]
    assert len(budget_warnings) == 1
    assert "budget store reserve failed" in str(budget_warnings[0].message)
    assert results[-1].record.layers[0].detail["store"] == "down"
    # recovery: the store counts again (unbudgeted calls were not recorded) ...
    store.down = False
    pipe.run(_request())
    assert _spent(layer) == pytest.approx(0.006)
    pipe.run(_request())
    # ... and enforces: $0.009 spent, the next $0.003 would go over
    with pytest.raises(BudgetExceeded):
        pipe.run(_request())
    # a second outage warns again
    store.down = True
    with pytest.warns(TokenleanWarning, match="budget store reserve failed"):
        pipe.run(_request())


async def test_settle_failure_is_part_of_the_outage_not_the_call(setup) -> None:
    store, layer, _ = setup

    def break_then_answer(request: Request) -> Response:
        store.down = True  # the store dies between reserve and settle
        return _answer(request)

    pipe = Pipeline(provider=FunctionProvider(break_then_answer), layers=[layer], prices=PRICES)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = await pipe.arun(_request())
        assert result.response.text == "ok"
        result = pipe.run(_request())  # reserve fails now: same outage, no new warning
        assert result.response.text == "ok"
    messages = [str(w.message) for w in caught if issubclass(w.category, TokenleanWarning)]
    assert len(messages) == 1 and "budget store settle failed" in messages[0]
