"""tokenlean's response cache in the LlamaIndex LLM slot (``lean(llm, layers=[cache])``).

The wrapped model is a real LlamaIndex ``CustomLLM`` that counts how often it is
called; the cache is the real ``ResponseCache`` on an SQLite file. A second
asking must be answered without calling the model, through every entry point
(chat / complete / stream, sync and async), and a hit must replay as a stream
for callers that stream.
"""

from __future__ import annotations

import asyncio
import importlib.util
from pathlib import Path
from typing import Any

import pytest
from llama_index.core.base.llms.types import (
    ChatMessage,
    CompletionResponse,
    CompletionResponseGen,
    LLMMetadata,
    MessageRole,
)
from llama_index.core.llms.callbacks import llm_completion_callback
from llama_index.core.llms.custom import CustomLLM
from pydantic import PrivateAttr

from llama_index.llms.tokenlean import lean
from tokenlean.core import SQLiteLedger

cache_mod = pytest.importorskip("tokenlean.cache")


class CountingLLM(CustomLLM):
    """Answers "answer <n> to <prompt>", streamed word by word; counts its calls.

    A deterministic model (temperature 0: the cache answers only calls that do not
    sample); its counter is state, not a setting, so it is no field of the model."""

    temperature: float = 0.0
    _calls: int = PrivateAttr(default=0)

    @property
    def calls(self) -> int:
        return self._calls

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(model_name="gpt-4o-mini")

    def _answer(self, prompt: str) -> str:
        self._calls += 1
        return f"answer {self.calls} to {prompt.splitlines()[-1]}"

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        return CompletionResponse(text=self._answer(prompt))

    @llm_completion_callback()
    def stream_complete(self, prompt: str, formatted: bool = False,
                        **kwargs: Any) -> CompletionResponseGen:
        words = self._answer(prompt).split(" ")

        def gen() -> CompletionResponseGen:
            text = ""
            for i, word in enumerate(words):
                delta = word if i == 0 else " " + word
                text += delta
                yield CompletionResponse(text=text, delta=delta)

        return gen()


def _cache_test_helpers() -> Any:
    """The cache package's own test helpers (loaded by path, not copied)."""
    path = Path(__file__).resolve().parents[3] / "packages/cache/tests/conftest.py"
    spec = importlib.util.spec_from_file_location("_tokenlean_cache_test_helpers", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


bag_of_words = _cache_test_helpers().bag_of_words  # deterministic, no model loaded


@pytest.fixture
def setup(tmp_path):
    cache = cache_mod.ResponseCache(store=tmp_path / "cache.sqlite", embedder=bag_of_words,
                                    guard=None, min_score=0.95)
    inner = CountingLLM()
    ledger = SQLiteLedger(tmp_path / "ledger.sqlite")
    llm = lean(inner, layers=[cache], ledger=ledger, model="gpt-4o-mini")
    yield llm, inner, ledger
    cache.close()


def _user(text: str) -> list[ChatMessage]:
    return [ChatMessage(role=MessageRole.USER, content=text)]


def test_complete_then_chat_hit_without_calling_the_model(setup) -> None:
    llm, inner, ledger = setup
    first = llm.complete("What is the capital of Portugal?")
    assert inner.calls == 1 and not first.additional_kwargs["tokenlean"]["cached"]
    again = llm.complete("What is the capital of Portugal?")
    assert inner.calls == 1, "an exact repeat reached the model"
    assert again.text == first.text
    meta = again.additional_kwargs["tokenlean"]
    assert meta["cached"] and meta["cache_score"] == 1.0
    # chat with the same single user turn is the same request: same cached answer
    chat = llm.chat(_user("What is the capital of Portugal?"))
    assert inner.calls == 1 and chat.message.content == first.text
    # a different question goes to the model
    other = llm.complete("What is the capital of Spain?")
    assert inner.calls == 2 and other.text != first.text
    hits = [r for r in ledger.records() if r.layers and any(
        rep.layer == "cache" and rep.saved_output_tokens > 0 for rep in r.layers)]
    assert len(hits) == 2
    assert all(r.usage.input_tokens == 0 and r.usage.output_tokens == 0 for r in hits)


def test_semantic_hit_through_the_slot(setup) -> None:
    llm, inner, _ = setup
    first = llm.complete("capital of Portugal what is the")
    hit = llm.complete("What is the capital of Portugal")  # same words, other order
    assert inner.calls == 1 and hit.text == first.text
    assert 0.95 <= hit.additional_kwargs["tokenlean"]["cache_score"] <= 1.0 + 1e-6


def test_stream_miss_is_stored_and_a_hit_replays_as_a_stream(setup) -> None:
    llm, inner, _ = setup
    pieces = list(llm.stream_complete("Name three rivers of Europe."))
    assert inner.calls == 1 and len(pieces) > 2  # the model streamed word by word
    full = pieces[-1].text
    assert "".join(p.delta or "" for p in pieces) == full
    replay = list(llm.stream_complete("Name three rivers of Europe."))
    assert inner.calls == 1, "the streamed answer was not stored"
    assert replay and replay[-1].text == full
    assert "".join(p.delta or "" for p in replay) == full
    chat_replay = list(llm.stream_chat(_user("Name three rivers of Europe.")))
    assert inner.calls == 1 and chat_replay[-1].message.content == full


def test_async_entry_points_share_the_cache(setup) -> None:
    llm, inner, _ = setup

    async def go() -> tuple[str, str, str, str]:
        first = await llm.acomplete("How tall is Mont Blanc?")
        second = await llm.acomplete("How tall is Mont Blanc?")
        chat = await llm.achat(_user("How tall is Mont Blanc?"))
        text = ""
        async for piece in await llm.astream_chat(_user("How tall is Mont Blanc?")):
            text = piece.message.content
        return first.text, second.text, chat.message.content, text

    first, second, chat, streamed = asyncio.run(go())
    assert inner.calls == 1
    assert first == second == chat == streamed


def test_tenants_do_not_share_answers(setup) -> None:
    llm, inner, _ = setup
    llm.complete("What is our refund policy?", tenant="acme")
    llm.complete("What is our refund policy?", tenant="globex")
    assert inner.calls == 2
    llm.complete("What is our refund policy?", tenant="acme")
    assert inner.calls == 2
