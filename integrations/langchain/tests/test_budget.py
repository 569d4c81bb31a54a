"""BudgetCallbackHandler on a real LangChain chat model (langchain_core's fake, with usage)."""

from __future__ import annotations

from decimal import Decimal

import pytest

pytest.importorskip("tokenlean.budget")

from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage

from langchain_tokenlean import BudgetCallbackHandler
from tokenlean.budget import Budget, BudgetLayer, SQLiteBudgetStore
from tokenlean.core import BudgetExceeded, ModelPrice, PriceTable

PRICES = PriceTable(overrides={
    "gpt-4o": ModelPrice(input_per_mtok=Decimal(1), output_per_mtok=Decimal(2)),
})


class FakeGPT(GenericFakeChatModel):
    """A chat model LangChain reports as gpt-4o with max_tokens (ls_* metadata)."""

    model_name: str = "gpt-4o"
    max_tokens: int | None = None


def answers(n: int, *, usage: bool = True) -> FakeGPT:
    meta = {"input_tokens": 20, "output_tokens": 30, "total_tokens": 50} if usage else None
    return FakeGPT(messages=iter([AIMessage(content="a short answer " * 10,
                                            usage_metadata=meta)] * n), max_tokens=100)


@pytest.fixture
def layer(tmp_path):
    store = SQLiteBudgetStore(tmp_path / "budget.sqlite")
    yield BudgetLayer(budgets=[Budget(name="monthly", max_usd=Decimal("0.0003"),
                                      scope="tenant")], store=store, prices=PRICES)
    store.close()


def _left(layer: BudgetLayer, tenant: str = "default") -> dict:
    from tokenlean.core import Message, Request

    probe = Request(messages=(Message(role="user", content="x"),), model="gpt-4o", tenant=tenant)
    return layer.remaining(probe)["monthly"]


def test_settles_with_usage_metadata_and_refuses_when_spent(layer: BudgetLayer) -> None:
    handler = BudgetCallbackHandler(layer)
    model = answers(5)
    reply = model.invoke("Hello there", config={"callbacks": [handler]})
    assert reply.content.startswith("a short answer")
    left = _left(layer)
    assert left["spent_usd"] == pytest.approx((20 + 2 * 30) / 1e6)  # the reported usage
    assert left["reserved_usd"] == 0
    model.invoke("Hello again", config={"callbacks": [handler]})
    # worst case of a third call (prompt + 100 output tokens at $2/M) no longer fits
    with pytest.raises(BudgetExceeded, match="monthly"):
        model.invoke("And again", config={"callbacks": [handler]})
    # another tenant, from the run's metadata, has its own account
    model.invoke("Hi", config={"callbacks": [handler], "metadata": {"tenant": "other"}})
    assert _left(layer, "other")["spent_usd"] > 0


def test_streamed_call_without_usage_is_still_charged(layer: BudgetLayer) -> None:
    handler = BudgetCallbackHandler(layer)
    text = "".join(chunk.content for chunk in answers(1, usage=False).stream(
        "Stream please", config={"callbacks": [handler]}))
    assert text.startswith("a short answer")
    left = _left(layer)
    assert left["spent_usd"] > 0 and left["reserved_usd"] == 0


def test_model_error_releases_the_reservation(layer: BudgetLayer) -> None:
    handler = BudgetCallbackHandler(layer)
    empty = FakeGPT(messages=iter([]), max_tokens=100)  # raises when asked
    with pytest.raises(Exception) as info:
        empty.invoke("Hello", config={"callbacks": [handler]})
    assert not isinstance(info.value, BudgetExceeded)
    left = _left(layer)
    assert left["spent_usd"] == 0 and left["reserved_usd"] == 0


async def test_async_invoke_is_settled(layer: BudgetLayer) -> None:
    handler = BudgetCallbackHandler(layer)
    reply = await answers(1).ainvoke("Hello async", config={"callbacks": [handler]})
    assert reply.content
    left = _left(layer)
    assert left["spent_usd"] == pytest.approx((20 + 2 * 30) / 1e6)
    assert left["reserved_usd"] == 0
