"""The tokenlean LlamaIndex handlers on real llama_index.core runs (CustomLLM / MockLLM)."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from llama_index.core import Document, SummaryIndex
from llama_index.core.callbacks import CallbackManager, TokenCountingHandler
from llama_index.core.llms import (
    ChatMessage,
    CompletionResponse,
    CompletionResponseGen,
    CustomLLM,
    LLMMetadata,
)
from llama_index.core.llms.callbacks import llm_completion_callback
from llama_index.core.llms.mock import MockLLM

from llama_index.callbacks.tokenlean import TokenleanEventHandler, instrument
from tokenlean.core import ConfigError, SQLiteLedger, TokenleanWarning, Usage, get_tokenizer

MTOK = Decimal(1_000_000)


class UsageLLM(CustomLLM):
    """Answers a fixed text and reports usage in ``raw`` the way OpenAI does.

    Streaming reports usage in one chunk *before* the last one (the last chunk
    carries none), the shape that makes LlamaIndex's TokenCountingHandler lose
    the provider's numbers.
    """

    model: str = "gpt-4o-mini"
    reply: str = "The capital of France is Paris."
    cached_tokens: int = 0
    fail: bool = False

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(model_name=self.model)

    def _usage(self, prompt: str) -> dict[str, Any]:
        prompt_tokens = len(prompt.split()) + 7
        return {"prompt_tokens": prompt_tokens, "completion_tokens": len(self.reply.split()),
                "total_tokens": prompt_tokens + len(self.reply.split()),
                "prompt_tokens_details": {"cached_tokens": min(self.cached_tokens,
                                                               prompt_tokens)}}

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        if self.fail:
            raise RuntimeError("provider down")
        return CompletionResponse(text=self.reply, raw={"usage": self._usage(prompt)})

    @llm_completion_callback()
    def stream_complete(self, prompt: str, formatted: bool = False,
                        **kwargs: Any) -> CompletionResponseGen:
        text = ""
        words = self.reply.split(" ")
        for i, word in enumerate(words):
            delta = word if i == 0 else " " + word
            text += delta
            raw = {"usage": self._usage(prompt)} if i == len(words) - 2 else {}
            yield CompletionResponse(text=text, delta=delta, raw=raw)
        yield CompletionResponse(text=text, delta="", raw={})


@pytest.fixture
def handler() -> Iterator[TokenleanEventHandler]:
    h = instrument(keep_records=True)
    yield h
    h.detach()


@pytest.fixture
def counting():
    """LlamaIndex's own TokenCountingHandler on the global callback manager (query
    engines hand their callback manager to the LLM), restored afterwards."""
    from llama_index.core import Settings

    previous = Settings._callback_manager

    def install(model: str) -> TokenCountingHandler:
        counter = TokenCountingHandler(tokenizer=get_tokenizer(model).encode)
        Settings.callback_manager = CallbackManager([counter])
        return counter

    yield install
    Settings._callback_manager = previous


def docs() -> list[Document]:
    return [Document(text="Paris is the capital and largest city of France."),
            Document(text="Berlin is the capital of Germany.")]


def test_query_parity_with_token_counting_handler(handler, counting) -> None:
    counter = counting("gpt-4o-mini")
    llm = UsageLLM()
    engine = SummaryIndex.from_documents(docs()).as_query_engine(llm=llm)
    assert "Paris" in str(engine.query("What is the capital of France?"))
    assert handler.calls == len(counter.llm_token_counts) >= 1
    assert handler.input_tokens == counter.prompt_llm_token_count
    assert handler.output_tokens == counter.completion_llm_token_count
    assert handler.total_tokens == counter.total_llm_token_count
    rec = handler.records[0]
    assert rec.model == "gpt-4o-mini" and rec.metadata["usage_source"] == "reported"
    assert rec.cost.total_usd == (rec.usage.input_tokens * Decimal("0.15")
                                  + rec.usage.output_tokens * Decimal("0.6")) / MTOK
    assert rec.parent_run_id is not None  # the synthesizer's span called the LLM


def test_mock_llm_parity_when_nothing_is_reported(handler, counting) -> None:
    counter = counting("a-model-nobody-named")  # the fallback tokenizer: cl100k_base, approximate
    llm = MockLLM(max_tokens=12)
    SummaryIndex.from_documents(docs()).as_query_engine(llm=llm).query("capital of France?")
    assert handler.calls == len(counter.llm_token_counts) >= 1
    assert handler.input_tokens == counter.prompt_llm_token_count
    assert handler.output_tokens == counter.completion_llm_token_count == 12 * handler.calls
    rec = handler.records[0]
    assert rec.metadata["usage_source"] == "estimated" and rec.metadata["usage_exact"] is False
    assert rec.cost is None  # MockLLM names no model: unpriced, never $0


def test_streamed_usage_is_not_lost(handler) -> None:
    counter = TokenCountingHandler(tokenizer=get_tokenizer("gpt-4o-mini").encode)
    llm = UsageLLM(callback_manager=CallbackManager([counter]))
    prompt = "Where is Paris located exactly?"
    text = "".join(r.delta or "" for r in llm.stream_complete(prompt))
    assert text == llm.reply
    (rec,) = handler.records
    reported = llm._usage(prompt)
    assert rec.usage.input_tokens == reported["prompt_tokens"]
    assert rec.usage.output_tokens == reported["completion_tokens"]
    assert rec.metadata["usage_source"] == "streamed"  # on a piece before the last
    # LlamaIndex's own counter only sees the last chunk and falls back to its tokenizer
    assert counter.prompt_llm_token_count != reported["prompt_tokens"]


def test_chat_over_complete_is_counted_once(handler) -> None:
    llm = UsageLLM(cached_tokens=4)
    response = llm.chat([ChatMessage(role="user", content="capital of France?")])
    assert "Paris" in str(response)
    (rec,) = handler.records  # CustomLLM.chat runs complete() inside: one call, not two
    assert rec.metadata["llm_event"] == "chat"
    assert rec.usage.cache_read_tokens == 4
    plain = rec.usage.input_tokens - 4
    assert rec.cost.input_usd == (plain * Decimal("0.15") + 4 * Decimal("0.075")) / MTOK


async def test_async_completion_and_ledger(tmp_path) -> None:
    ledger = SQLiteLedger(tmp_path / "ledger.sqlite")
    h = instrument(ledger=ledger, tenant="acme")
    try:
        await UsageLLM().acomplete("hello there")
    finally:
        h.detach()
    (row,) = ledger.records()
    assert row.tenant == "acme" and row.usage.input_tokens == 2 + 7
    assert h.cost_usd == row.cost_usd


def test_failed_call_leaves_no_open_run(handler) -> None:
    with pytest.raises(RuntimeError, match="provider down"):
        UsageLLM(fail=True).complete("x")
    assert handler.calls == 0
    assert not handler._runs  # the span handler dropped it


def test_anthropic_usage_priced_with_cache_rates(handler) -> None:
    class ClaudeLike(UsageLLM):
        @llm_completion_callback()
        def complete(self, prompt: str, formatted: bool = False,
                     **kwargs: Any) -> CompletionResponse:
            return CompletionResponse(text="ok", raw={"usage": {
                "input_tokens": 100, "output_tokens": 20, "cache_read_input_tokens": 1000,
                "cache_creation_input_tokens": 200}})

    ClaudeLike(model="claude-3-5-sonnet-20241022").complete("hi")
    (rec,) = handler.records
    assert rec.usage == Usage(input_tokens=1300, output_tokens=20, cache_read_tokens=1000,
                              cache_write_tokens=200)
    assert rec.cost.input_usd == (100 * 3 + 1000 * Decimal("0.3") + 200 * Decimal("3.75")) / MTOK


def test_detach_stops_counting() -> None:
    h = instrument(keep_records=True)
    h.detach()
    UsageLLM().complete("hello")
    assert h.calls == 0


def test_broken_ledger_warns_once(tmp_path) -> None:
    ledger = SQLiteLedger(tmp_path / "ledger.sqlite")
    ledger.close()
    h = instrument(ledger=ledger)
    try:
        with pytest.warns(TokenleanWarning, match="'SQLiteLedger' write failed") as caught:
            UsageLLM().complete("a")
            UsageLLM().complete("b")
        assert len(caught) == 1 and h.calls == 2
    finally:
        h.detach()


def test_bad_config() -> None:
    with pytest.raises(ConfigError):
        TokenleanEventHandler(ledger=object())


def test_stream_chat_counted_once_with_reported_usage(handler) -> None:
    llm = UsageLLM()
    chunks = list(llm.stream_chat([ChatMessage(role="user", content="capital of France?")]))
    assert chunks and "Paris" in str(chunks[-1].message.content)
    (rec,) = handler.records
    assert rec.metadata["usage_source"] == "streamed"
    assert rec.usage.output_tokens == len(llm.reply.split())


def test_an_unpriced_call_makes_the_total_cost_unknown(handler) -> None:
    UsageLLM().complete("capital of France?")
    priced = handler.cost_usd
    assert priced is not None and priced > 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TokenleanWarning)  # no price known (once per model)
        UsageLLM(model="house-model-7b").complete("capital of France?")
    assert handler.unpriced_calls == 1
    assert handler.cost_usd is None, "one unpriced call makes the total unknown, never $0"
    assert handler.priced_cost_usd == priced
