"""The budget handler rejects a None or "" tenant exactly as core does: when built
(ConfigError, as core's cost handlers) and on a call's ``tenant=`` (InvalidRequestError,
as core's Request); before, a call's None / "" tenant was charged to the default one."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from llama_index.core.callbacks import EventPayload

from llama_index.callbacks.tokenlean import TokenleanBudgetHandler
from tokenlean.core import ConfigError, InvalidRequestError, Request
from tokenlean.core._tally import check_handler_options

budget = pytest.importorskip("tokenlean.budget")
BAD = [None, ""]


def _same(error: BaseException, expected: BaseException) -> bool:
    return type(error) is type(expected) and str(error) == str(expected)


@pytest.mark.parametrize("tenant", BAD)
def test_budget_handler_rejects_the_tenant_as_core_does(tenant: Any, tmp_path: Path) -> None:
    store = budget.SQLiteBudgetStore(tmp_path / "b.sqlite")
    layer = budget.BudgetLayer(budgets=[budget.Budget(name="b", max_usd=Decimal(1),
                                                      scope="tenant")], store=store)
    with pytest.raises(ConfigError) as core:
        check_handler_options(None, None, tenant)
    with pytest.raises(ConfigError) as caught:
        TokenleanBudgetHandler(layer=layer, tenant=tenant)
    assert _same(caught.value, core.value)
    with pytest.raises(InvalidRequestError) as core_call:
        Request(messages=[{"role": "user", "content": "hi"}], model="m", tenant=tenant)
    handler = TokenleanBudgetHandler(layer=layer, default_model="gpt-4o")
    payload = {EventPayload.PROMPT: "hi", EventPayload.SERIALIZED: {}}
    with pytest.raises(InvalidRequestError) as caught_call:
        handler._request(payload, {"tenant": tenant})
    assert _same(caught_call.value, core_call.value)
    assert handler._request(payload, {}).tenant == "default"  # no tenant named: the default
    store.close()
