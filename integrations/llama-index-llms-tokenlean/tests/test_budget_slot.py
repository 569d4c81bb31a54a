"""The budget layer behind LeanLLM: the predicted (or clamped) max_tokens reaches the model."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from llama_index.core.base.llms.types import ChatMessage, MessageRole
from llama_index.core.llms import CompletionResponse, CompletionResponseGen, CustomLLM, LLMMetadata
from llama_index.core.llms.callbacks import llm_completion_callback

from llama_index.llms.tokenlean import lean
from tokenlean.budget import Budget, BudgetLayer, LengthPredictor, SQLiteBudgetStore
from tokenlean.core import BudgetExceeded, Message


class LimitedLLM(CustomLLM):
    """Writes one token-sized word per allowed output token (``max_tokens`` keyword, else 2000)."""

    calls: list[dict[str, Any]] = []

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(model_name="gpt-4o")

    def _text(self, kwargs: dict[str, Any]) -> str:
        self.calls.append(dict(kwargs))
        return " ".join(["ok"] * int(kwargs.get("max_tokens") or 2000))

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        return CompletionResponse(text=self._text(kwargs))

    @llm_completion_callback()
    def stream_complete(self, prompt: str, formatted: bool = False,
                        **kwargs: Any) -> CompletionResponseGen:
        text = self._text(kwargs)
        yield CompletionResponse(text=text, delta=text)


PROMPT = "Give me three tips for a job interview."


def predicted() -> int:
    return LengthPredictor.default().predict([Message(role="user", content=PROMPT)],
                                             model="gpt-4o")


def test_lean_llm_sends_the_predicted_max_tokens() -> None:
    inner = LimitedLLM(calls=[])
    llm = lean(inner, layers=[BudgetLayer(predictor=LengthPredictor.default())], ledger=False,
               model="gpt-4o")
    expected = predicted()
    assert 16 <= expected < 2000
    out = llm.complete(PROMPT)
    assert inner.calls[-1]["max_tokens"] == expected
    assert len(out.text.split()) == expected
    llm.chat([ChatMessage(role=MessageRole.USER, content=PROMPT)])
    assert inner.calls[-1]["max_tokens"] == expected
    assert "".join(p.delta or "" for p in llm.stream_complete(PROMPT)).count("ok") == expected
    assert inner.calls[-1]["max_tokens"] == expected
    assert asyncio.run(llm.acomplete(PROMPT)).text.count("ok") == expected
    llm.complete(PROMPT, max_tokens=20)
    assert inner.calls[-1]["max_tokens"] == 20  # the caller's own limit is never raised


def test_lean_llm_with_a_token_budget_clamps_then_refuses(tmp_path: Path) -> None:
    inner = LimitedLLM(calls=[])
    layer = BudgetLayer(budgets=[Budget(name="t", max_tokens=150, scope="tenant", policy="clamp",
                                        min_output_tokens=10)],
                        store=SQLiteBudgetStore(tmp_path / "b.sqlite"), default_max_tokens=100)
    llm = lean(inner, layers=[layer], ledger=False, model="gpt-4o")
    llm.complete("Hello.")
    assert inner.calls[-1]["max_tokens"] == 100
    llm.complete("Hello again.")  # about 40 tokens left after the first call: clamped
    assert 10 <= inner.calls[-1]["max_tokens"] < 100
    calls = len(inner.calls)
    with pytest.raises(BudgetExceeded):
        llm.complete("And again.")
    assert len(inner.calls) == calls
