"""LangChain's standard integration suite for ``lean()`` over our own local server.

The wrapped model is ``ChatOpenAI`` pointed at ``tokenlean serve`` (the tiny
test model); ``lean()``'s default layers (exact cache, whitespace templates)
and a real SQLite ledger are on. Skipped capabilities are ones the *backend*
lacks, declared through the suite's own properties: the local server has no
tool calling (so no structured output either), no JSON mode, and no image,
audio or PDF inputs.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from langchain_openai import ChatOpenAI
from langchain_tests.integration_tests import ChatModelIntegrationTests

from langchain_tokenlean import LeanChatModel
from tokenlean.core import SQLiteLedger
from tokenlean.core.presets import build_layers

pytestmark = pytest.mark.server

_state: dict[str, Any] = {}


@pytest.fixture(autouse=True)
async def _point_at_server(local_server: Any, tmp_path: Path) -> AsyncIterator[None]:
    # one async HTTP client per test, closed on its own event loop (langchain-openai's
    # shared default client would outlive the loop of the test that opened it)
    async with httpx.AsyncClient() as client:
        _state.update(url=local_server.url + "/v1", model=local_server.aliases[0],
                      override=local_server.aliases[1], ledger=tmp_path / "ledger.sqlite",
                      client=client)
        yield


class TestLeanChatModelIntegration(ChatModelIntegrationTests):
    @property
    def chat_model_class(self) -> type[LeanChatModel]:
        return LeanChatModel

    @property
    def chat_model_params(self) -> dict[str, Any]:
        inner = ChatOpenAI(model=_state["model"], base_url=_state["url"], api_key="local",
                           max_tokens=6, temperature=0, max_retries=0, stream_usage=True,
                           http_async_client=_state["client"])
        return {"inner": inner, "layers": build_layers(preset="safe"),
                "ledger": SQLiteLedger(_state["ledger"])}

    # what the local server (and so the wrapped ChatOpenAI) cannot do
    @property
    def has_tool_calling(self) -> bool:
        return False

    @property
    def has_structured_output(self) -> bool:
        return False

    @property
    def supports_json_mode(self) -> bool:
        return False

    @property
    def model_override_value(self) -> str:
        return str(_state.get("override", "gpt-4.1-nano"))  # another name the server serves
