"""A None or "" tenant is rejected exactly as core rejects it (same class, same
message): when lean() is built, and on a call's ``tenant=`` (which before served
the default tenant's cache)."""

from __future__ import annotations

from typing import Any

import pytest
from llama_index.core.base.llms.types import CompletionResponse, CompletionResponseGen, LLMMetadata
from llama_index.core.llms.callbacks import llm_completion_callback
from llama_index.core.llms.custom import CustomLLM

from llama_index.llms.tokenlean import lean
from tokenlean.core import ConfigError, InvalidRequestError, Request
from tokenlean.core._tally import check_handler_options

cache_mod = pytest.importorskip("tokenlean.cache")
BAD = [None, ""]


class Repeatable(CustomLLM):
    temperature: float = 0.0

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(model_name="gpt-4o-mini")

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        return CompletionResponse(text="the default tenant's answer")

    @llm_completion_callback()
    def stream_complete(self, prompt: str, formatted: bool = False,
                        **kwargs: Any) -> CompletionResponseGen:
        yield self.complete(prompt)


def _same(error: BaseException, expected: BaseException) -> bool:
    return type(error) is type(expected) and str(error) == str(expected)


@pytest.mark.parametrize("tenant", BAD)
def test_lean_rejects_the_tenant_as_core_does(tenant: Any) -> None:
    with pytest.raises(ConfigError) as core:
        check_handler_options(None, None, tenant)
    with pytest.raises(ConfigError) as caught:
        lean(Repeatable(), tenant=tenant, ledger=False)
    assert _same(caught.value, core.value)


@pytest.mark.parametrize("tenant", BAD)
async def test_a_call_naming_no_tenant_is_an_error_not_the_default_tenants_cache(
        tenant: Any) -> None:
    with pytest.raises(InvalidRequestError) as core:
        Request(messages=[{"role": "user", "content": "hi"}], model="m", tenant=tenant)
    llm = lean(Repeatable(), layers=[cache_mod.ResponseCache(semantic=False)], ledger=False)
    llm.complete("what is the plan?")
    assert llm.complete("what is the plan?").additional_kwargs["tokenlean"]["cached"]
    with pytest.raises(InvalidRequestError) as caught:
        llm.complete("what is the plan?", tenant=tenant)
    assert _same(caught.value, core.value)
    with pytest.raises(InvalidRequestError) as caught:
        await llm.acomplete("what is the plan?", tenant=tenant)
    assert _same(caught.value, core.value)
