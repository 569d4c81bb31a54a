"""LangChain's own standard unit-test suite, configured for LeanChatModel."""

from __future__ import annotations

from typing import Any

from langchain_openai import ChatOpenAI
from langchain_tests.unit_tests import ChatModelUnitTests

from langchain_tokenlean import LeanChatModel


class TestLeanChatModelUnit(ChatModelUnitTests):
    @property
    def chat_model_class(self) -> type[LeanChatModel]:
        return LeanChatModel

    @property
    def chat_model_params(self) -> dict[str, Any]:
        # Never called in unit tests: the port is closed on purpose.
        inner = ChatOpenAI(model="gpt-4o", base_url="http://127.0.0.1:9/v1", api_key="unused")
        return {"inner": inner, "model": "gpt-4o"}

    @property
    def has_tool_calling(self) -> bool:
        return True

    @property
    def has_structured_output(self) -> bool:
        return True
