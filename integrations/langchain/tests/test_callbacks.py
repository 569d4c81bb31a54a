"""Cost callbacks on real langchain_core runnables (a BaseChatModel that reports usage)."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from langchain_core.caches import InMemoryCache
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.prompts import ChatPromptTemplate

from langchain_tokenlean import (
    AsyncTokenleanCostHandler,
    TokenleanCostHandler,
    tokenlean_costs,
)
from tokenlean.core import ConfigError, SQLiteLedger, TokenleanWarning, Usage, price

MTOK = Decimal(1_000_000)


class UsageChatModel(BaseChatModel):
    """A chat model that answers ``reply`` and reports ``usage`` like a provider does.

    Streaming sends the text in word chunks; usage arrives only in the chunks
    named by ``usage_in`` ("last": one final chunk, "split": input usage on
    the first chunk, output usage on the last, as Anthropic streams do).
    """

    reply: str = "Paris is the capital of France."
    usage: dict[str, Any]
    model_name: str = "gpt-4o-mini"
    meta_key: str = "model_name"
    usage_in: str = "last"
    provider: str = "openai"

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> Any:
        params = super()._get_ls_params(stop=stop, **kwargs)
        params["ls_provider"] = self.provider  # what real partner models report
        params["ls_model_name"] = self.model_name
        return params

    @property
    def _llm_type(self) -> str:
        return "usage-fake"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model_name": self.model_name, "reply": self.reply}

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: Any = None, **kwargs: Any) -> ChatResult:
        message = AIMessage(content=self.reply, usage_metadata=dict(self.usage) or None,
                            response_metadata={self.meta_key: self.model_name,
                                               "finish_reason": "stop"})
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _stream(self, messages: list[BaseMessage], stop: list[str] | None = None,
                run_manager: Any = None, **kwargs: Any) -> Iterator[ChatGenerationChunk]:
        words = self.reply.split(" ")
        for i, word in enumerate(words):
            kw: dict[str, Any] = {}
            if self.usage_in == "split" and i == 0:
                kw["usage_metadata"] = {"input_tokens": self.usage["input_tokens"],
                                        "output_tokens": 0,
                                        "total_tokens": self.usage["input_tokens"],
                                        "input_token_details": self.usage.get(
                                            "input_token_details", {})}
            chunk = ChatGenerationChunk(message=AIMessageChunk(
                content=word if i == 0 else " " + word, **kw))
            if run_manager:
                run_manager.on_llm_new_token(chunk.message.content, chunk=chunk)
            yield chunk
        if self.usage_in == "split":
            final = {"input_tokens": 0, "output_tokens": self.usage["output_tokens"],
                     "total_tokens": self.usage["output_tokens"]}
        else:
            final = dict(self.usage)
        chunk = ChatGenerationChunk(message=AIMessageChunk(
            content="", usage_metadata=final or None, chunk_position="last",
            response_metadata={self.meta_key: self.model_name, "finish_reason": "stop"}))
        if run_manager:
            run_manager.on_llm_new_token("", chunk=chunk)
        yield chunk


OPENAI_USAGE = {"input_tokens": 1200, "output_tokens": 300, "total_tokens": 1500,
                "input_token_details": {"cache_read": 1000},
                "output_token_details": {"reasoning": 100}}


def rates(model: str) -> tuple[Decimal, Decimal]:
    one = price(Usage(input_tokens=1_000_000, output_tokens=1_000_000), model=model)
    assert one is not None
    return one.input_usd, one.output_usd


def test_invoke_records_usage_and_prices_cache_reads_at_cached_rate(tmp_path) -> None:
    ledger = SQLiteLedger(tmp_path / "ledger.sqlite")
    handler = TokenleanCostHandler(ledger=ledger)
    model = UsageChatModel(usage=OPENAI_USAGE)
    model.invoke("capital of France?", config={"callbacks": [handler]})
    (row,) = ledger.records()
    assert row.model == "gpt-4o-mini"
    assert row.usage == Usage(input_tokens=1200, output_tokens=300, cache_read_tokens=1000,
                              reasoning_tokens=100)
    # gpt-4o-mini: $0.15 / Mtok input, $0.075 / Mtok cached input, $0.60 / Mtok output
    assert row.cost.input_usd == (200 * Decimal("0.15") + 1000 * Decimal("0.075")) / MTOK
    assert row.cost.output_usd == 300 * Decimal("0.6") / MTOK
    full_rate_input = 1200 * rates("gpt-4o-mini")[0] / MTOK
    assert row.cost.input_usd < full_rate_input
    assert row.cost.source.startswith("genai-prices")
    assert handler.calls == 1 and handler.cost_usd == row.cost_usd
    assert row.metadata["usage_source"] == "reported"


@pytest.mark.parametrize("usage_in", ["last", "split"])
def test_streamed_usage_is_not_lost(usage_in: str) -> None:
    handler = TokenleanCostHandler(keep_records=True)
    model = UsageChatModel(usage=OPENAI_USAGE, usage_in=usage_in)
    text = "".join(str(c.content) for c in model.stream("hi", config={"callbacks": [handler]}))
    assert text == model.reply
    (rec,) = handler.records
    assert rec.usage.input_tokens == 1200 and rec.usage.output_tokens == 300
    assert rec.usage.cache_read_tokens == 1000
    assert rec.cost is not None and rec.cost.total_usd > 0


def test_chunk_usage_used_when_final_message_has_none() -> None:
    """Feed the handler the events of a stream whose final LLMResult lost its usage."""
    from uuid import uuid4

    from langchain_core.outputs import LLMResult

    handler = TokenleanCostHandler(keep_records=True)
    run_id = uuid4()
    handler.on_chat_model_start({}, [[]], run_id=run_id,
                                metadata={"ls_model_name": "gpt-4o-mini"})
    for usage in ({"input_tokens": 40, "output_tokens": 0, "total_tokens": 40},
                  {"input_tokens": 0, "output_tokens": 12, "total_tokens": 12}):
        handler.on_llm_new_token("x", chunk=ChatGenerationChunk(
            message=AIMessageChunk(content="x", usage_metadata=usage)), run_id=run_id)
    handler.on_llm_end(LLMResult(generations=[[ChatGeneration(message=AIMessage(content="xx"))]]),
                       run_id=run_id)
    (rec,) = handler.records
    assert (rec.usage.input_tokens, rec.usage.output_tokens) == (40, 12)
    assert rec.metadata["usage_source"] == "streamed"
    assert rec.model == "gpt-4o-mini" and rec.cost is not None


def test_langchain_cache_hit_is_not_spend() -> None:
    model = UsageChatModel(usage=OPENAI_USAGE, cache=InMemoryCache())
    with tokenlean_costs() as costs:
        model.invoke("capital of France?")
        model.invoke("capital of France?")  # answered by the LangChain cache
    first, hit = costs.records
    assert not first.cached and hit.cached
    assert hit.usage == Usage() and hit.cost_usd == 0
    (report,) = hit.layers
    assert report.layer == "langchain_cache"
    assert report.saved_usd == first.cost_usd  # saved = what the call cost
    assert (report.saved_input_tokens, report.saved_output_tokens) == (1200, 300)
    assert costs.calls == 2 and costs.cached_calls == 1
    assert costs.cost_usd == first.cost_usd
    assert costs.saved_usd == first.cost_usd


def test_context_manager_counts_every_provider_with_run_tree() -> None:
    anthropic = UsageChatModel(
        model_name="claude-3-5-sonnet-20241022", meta_key="model", provider="anthropic",
        usage={"input_tokens": 2_000, "output_tokens": 100, "total_tokens": 2_100,
               "input_token_details": {"cache_read": 1_000, "cache_creation": 500}})
    chain = ChatPromptTemplate.from_messages([("user", "{q}")]) | anthropic
    with tokenlean_costs() as costs:
        chain.invoke({"q": "hi"}, config={"tags": ["rag"], "metadata": {
            "tenant": "acme", "user_id": "u7"}})
        UsageChatModel(usage=OPENAI_USAGE).invoke("x")
    claude, gpt = costs.records
    assert costs.calls == 2
    assert costs.total_tokens == 2_100 + 1_500
    assert costs.cost_usd == claude.cost_usd + gpt.cost_usd
    assert costs.total_cost == float(costs.cost_usd) and costs.prompt_tokens == 3_200
    # Claude 3.5 Sonnet: $3 in, $0.30 cache read, $3.75 cache write, $15 out per Mtok
    assert claude.cost.input_usd == (
        500 * 3 + 1_000 * Decimal("0.3") + 500 * Decimal("3.75")) / MTOK
    assert claude.cost.output_usd == 100 * 15 / MTOK
    assert (claude.tenant, claude.user) == ("acme", "u7")
    assert "rag" in claude.tags and claude.provider == "anthropic"
    assert claude.parent_run_id is not None and claude.run_id == claude.request_id
    assert gpt.parent_run_id is None and gpt.tenant == "default"


def test_nested_blocks_add_up() -> None:
    model = UsageChatModel(usage=OPENAI_USAGE)
    with tokenlean_costs() as outer:
        model.invoke("a")
        with tokenlean_costs() as inner:
            model.invoke("b")
    assert inner.calls == 1 and outer.calls == 2
    assert outer.cost_usd == 2 * inner.cost_usd
    model.invoke("c")  # outside: counted nowhere
    assert outer.calls == 2


async def test_async_handler_writes_through_arecord(tmp_path) -> None:
    ledger = SQLiteLedger(tmp_path / "ledger.sqlite")
    handler = AsyncTokenleanCostHandler(ledger=ledger)
    model = UsageChatModel(usage=OPENAI_USAGE)
    await model.ainvoke("a", config={"callbacks": [handler], "metadata": {"tenant": "t1"}})
    chunks = [c async for c in model.astream("b", config={"callbacks": [handler]})]
    assert chunks
    rows = list(ledger.records())
    assert [r.usage.input_tokens for r in rows] == [1200, 1200]
    assert [r.tenant for r in rows] == ["t1", "default"]
    assert handler.calls == 2 and handler.cost_usd == sum(r.cost_usd for r in rows)


def test_lean_wrapper_is_not_counted_twice() -> None:
    from langchain_tokenlean import LeanChatModel

    wrapped = LeanChatModel(inner=UsageChatModel(usage=OPENAI_USAGE), layers=[], ledger=None)
    with tokenlean_costs() as costs:
        wrapped.invoke("hello")
    assert costs.calls == 1
    assert costs.input_tokens == 1200


def test_unknown_model_is_unpriced_not_free() -> None:
    model = UsageChatModel(usage=OPENAI_USAGE, model_name="my-private-finetune-9")
    with tokenlean_costs() as costs, pytest.warns(TokenleanWarning, match="no price known"):
        model.invoke("x")
    (rec,) = costs.records
    assert rec.cost is None and costs.unpriced_calls == 1 and costs.cost_usd is None


def test_broken_ledger_warns_once_and_call_succeeds(tmp_path) -> None:
    ledger = SQLiteLedger(tmp_path / "ledger.sqlite")
    ledger.close()  # every write now fails
    handler = TokenleanCostHandler(ledger=ledger)
    model = UsageChatModel(usage=OPENAI_USAGE)
    with pytest.warns(TokenleanWarning, match="'SQLiteLedger' write failed"):
        assert model.invoke("a", config={"callbacks": [handler]}).content == model.reply
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.invoke("b", config={"callbacks": [handler]})
    assert handler.calls == 2


def test_bad_config() -> None:
    with pytest.raises(ConfigError):
        TokenleanCostHandler(ledger=object())
    with pytest.raises(ConfigError):
        TokenleanCostHandler(tenant="")


async def test_context_manager_counts_async_runs() -> None:
    model = UsageChatModel(usage=OPENAI_USAGE)
    with tokenlean_costs() as costs:
        await model.ainvoke("a")
        async for _ in model.astream("b"):
            pass
    assert costs.calls == 2 and costs.input_tokens == 2400
    assert costs.cost_usd == 2 * costs.records[0].cost_usd


def test_lean_cache_layer_hit_is_saving_not_spend() -> None:
    from langchain_tokenlean import LeanChatModel
    from tokenlean.core import Request, Response

    class AnswerEverything:
        """A tiny real layer: answers every request as a cache hit would."""

        name = "cache"

        def process(self, request: Request) -> Request | Response:
            return Response(text="Paris.", cached=True, cache_score=0.97, model=request.model,
                            usage=Usage(input_tokens=1200, output_tokens=300))

        async def aprocess(self, request: Request) -> Request | Response:
            return self.process(request)

    inner = UsageChatModel(usage=OPENAI_USAGE)
    wrapped = LeanChatModel(inner=inner, layers=[AnswerEverything()], ledger=None,
                            model="gpt-4o-mini")
    with tokenlean_costs() as costs:
        assert wrapped.invoke("capital of France?").content == "Paris."
    (rec,) = costs.records
    assert rec.cached and rec.cost_usd == 0
    (report,) = rec.layers
    assert report.layer == "cache"
    full = price(Usage(input_tokens=1200, output_tokens=300), model="gpt-4o-mini")
    assert report.saved_usd == full.total_usd


@pytest.mark.parametrize("stream", [False, True])
async def test_no_reported_usage_is_counted_not_free(stream: bool) -> None:
    """OpenAI streams without stream_usage report nothing: count it, never call it $0."""
    from tokenlean.core import Message, count_messages, count_tokens

    model = UsageChatModel(usage={})
    handler = AsyncTokenleanCostHandler(keep_records=True)
    cfg = {"callbacks": [handler]}
    if stream:
        async for _ in model.astream("capital of France?", config=cfg):
            pass
    else:
        await model.ainvoke("capital of France?", config=cfg)
    (rec,) = handler.records
    assert rec.metadata["usage_source"] == "estimated"
    prompt = count_messages([Message(role="user", content="capital of France?")],
                            model="gpt-4o-mini")
    assert rec.usage.input_tokens == prompt.tokens
    assert rec.usage.output_tokens == count_tokens(model.reply, model="gpt-4o-mini").tokens
    assert rec.cost is not None and rec.cost.total_usd > 0


@pytest.mark.parametrize("mode", ["invoke", "stream", "ainvoke", "astream", "batch"])
async def test_lean_priced_as_a_known_model_costs_the_same_in_tokenlean_costs(mode: str) -> None:
    """lean(base, model="gpt-4o") in front of a local model: the answer's metadata and
    tokenlean_costs() report one cost, the pipeline's, once per call, on every path."""
    from langchain_tokenlean import lean

    local = UsageChatModel(usage=OPENAI_USAGE, model_name="smollm2-local")
    model = lean(local, model="gpt-4o", ledger=False)
    with tokenlean_costs() as costs, warnings.catch_warnings():
        warnings.simplefilter("ignore", TokenleanWarning)  # the local model has no price
        if mode == "invoke":
            messages = [model.invoke("capital of France?")]
        elif mode == "ainvoke":
            messages = [await model.ainvoke("capital of France?")]
        elif mode == "batch":
            messages = model.batch(["capital of France?", "capital of Spain?"])
        elif mode == "stream":
            chunks = list(model.stream("capital of France?"))
            messages = [sum(chunks[1:], chunks[0])]
        else:
            chunks = [c async for c in model.astream("capital of France?")]
            messages = [sum(chunks[1:], chunks[0])]
    meta_costs = [m.response_metadata["tokenlean"]["cost_usd"] for m in messages]
    assert all(cost is not None and cost > 0 for cost in meta_costs)
    assert len(costs.records) == len(messages), "one record per lean() call"
    assert all(rec.model == "gpt-4o" and rec.cost_usd is not None for rec in costs.records)
    assert sorted(float(rec.cost_usd) for rec in costs.records) == sorted(meta_costs)
    assert costs.unpriced_calls == 0 and float(costs.cost_usd) == pytest.approx(sum(meta_costs))
    assert "unknown" not in repr(costs)


def test_tokenlean_costs_reports_an_unpriced_call_as_unknown() -> None:
    unpriced = UsageChatModel(usage=OPENAI_USAGE, model_name="my-private-finetune-9")
    priced = UsageChatModel(usage=OPENAI_USAGE)
    with tokenlean_costs() as costs, warnings.catch_warnings():
        warnings.simplefilter("ignore", TokenleanWarning)  # no price known (once per model)
        unpriced.invoke("x")
        priced.invoke("y")
    assert costs.unpriced_calls == 1
    assert costs.cost_usd is None, "one unpriced call makes the total unknown"
    assert costs.priced_cost_usd == costs.records[1].cost_usd
    summary = repr(costs)
    assert "Total Cost (USD): unknown" in summary and "Total Cost (USD): $" not in summary
