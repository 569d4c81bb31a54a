"""A None or "" tenant is rejected exactly as core rejects it (same class, same
message), in lean(), the per-call ``tenant=``, TokenleanCache, the agent middleware
and the budget handler; before, the wrapper served the default tenant's cache."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from langchain_core.language_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, HumanMessage

from langchain_tokenlean import LeanChatModel, lean
from tokenlean.cache import ResponseCache
from tokenlean.core import ConfigError, InvalidRequestError, Request
from tokenlean.core._tally import check_handler_options

BAD = [None, ""]


def core_call_error(tenant: Any) -> Exception:
    """What core raises for a request with this tenant."""
    with pytest.raises(InvalidRequestError) as caught:
        Request(messages=[{"role": "user", "content": "hi"}], model="m", tenant=tenant)
    return caught.value


def core_build_error(tenant: Any) -> Exception:
    """What core's own wrappers (the cost handlers) raise when built with it."""
    with pytest.raises(ConfigError) as caught:
        check_handler_options(None, None, tenant)
    return caught.value


def same(error: Exception, expected: Exception) -> bool:
    return type(error) is type(expected) and str(error) == str(expected)


def fake(n: int = 4) -> GenericFakeChatModel:
    return GenericFakeChatModel(messages=iter([AIMessage(content="cached answer")] * n))


def cached_chat() -> LeanChatModel:
    """A repeatable (temperature 0) model behind an exact cache."""
    return LeanChatModel(inner=fake(), layers=[ResponseCache(semantic=False)], temperature=0,
                         model="gpt-4o")


@pytest.mark.parametrize("tenant", BAD)
def test_lean_rejects_the_tenant_as_core_does(tenant: Any) -> None:
    with pytest.raises(ConfigError) as caught:
        lean(fake(), tenant=tenant, ledger=False)
    assert same(caught.value, core_build_error(tenant))


@pytest.mark.parametrize("tenant", BAD)
def test_a_call_naming_no_tenant_is_not_served_the_default_tenants_cache(tenant: Any) -> None:
    chat = cached_chat()
    assert chat.invoke("what is the plan?").content == "cached answer"  # stored, tenant default
    hit = chat.invoke("what is the plan?")
    assert hit.response_metadata["tokenlean"]["cached"]  # the default tenant's cache works
    with pytest.raises(InvalidRequestError) as caught:
        chat.invoke("what is the plan?", tenant=tenant)
    assert same(caught.value, core_call_error(tenant))
    with pytest.raises(InvalidRequestError):
        chat.invoke("what is the plan?", tenant=tenant)  # every time, not only on a miss


@pytest.mark.parametrize("tenant", BAD)
async def test_async_calls_reject_it_too(tenant: Any) -> None:
    chat = cached_chat()
    with pytest.raises(InvalidRequestError) as caught:
        await chat.ainvoke("hello", tenant=tenant)
    assert same(caught.value, core_call_error(tenant))


@pytest.mark.parametrize("tenant", BAD)
def test_cache_middleware_and_budget_handler_reject_it(tenant: Any) -> None:
    from langchain_tokenlean import TokenleanCache

    with pytest.raises(ConfigError) as caught:
        TokenleanCache(tenant=tenant, semantic=False)
    assert same(caught.value, core_build_error(tenant))
    pytest.importorskip("langchain.agents")
    from langchain_tokenlean.middleware import TokenleanMiddleware

    with pytest.raises(ConfigError) as caught:
        TokenleanMiddleware(tenant=tenant, ledger=False)
    assert same(caught.value, core_build_error(tenant))
    from langchain_tokenlean.budget import BudgetCallbackHandler
    from tokenlean.budget import Budget, BudgetLayer

    layer = BudgetLayer(budgets=[Budget(name="b", max_usd=Decimal(1), scope="tenant")])
    with pytest.raises(ConfigError) as caught:
        BudgetCallbackHandler(layer, tenant=tenant)
    assert same(caught.value, core_build_error(tenant))
    handler = BudgetCallbackHandler(layer, default_model="gpt-4o")
    with pytest.raises(InvalidRequestError) as caught:
        handler._request([HumanMessage(content="hi")], {"tenant": tenant}, {})
    assert same(caught.value, core_call_error(tenant))
