"""TokenleanBudgetHandler on real llama_index.core LLM calls (a CustomLLM subclass).

The LLM honours a ``max_tokens`` keyword (it answers that many words at most),
reports usage the way OpenAI does (in ``raw``; when streaming, in a chunk
before the last one) or none at all, and remembers what each call received.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from llama_index.core.llms import (
    ChatMessage,
    CompletionResponse,
    CompletionResponseGen,
    CustomLLM,
    LLMMetadata,
)
from llama_index.core.llms.callbacks import llm_completion_callback

from llama_index.callbacks.tokenlean import TokenleanBudgetHandler, enforce_budget
from tokenlean import core
from tokenlean.budget import Budget, BudgetLayer, LengthPredictor, SQLiteBudgetStore

PRICES = core.PriceTable(overrides={
    "gpt-4o": core.ModelPrice(input_per_mtok=Decimal(1), output_per_mtok=Decimal(2)),
    "gpt-4o-mini": core.ModelPrice(input_per_mtok=Decimal("0.1"), output_per_mtok=Decimal("0.2")),
})


class WordsLLM(CustomLLM):
    """Answers ``words`` words (fewer when a ``max_tokens`` keyword asks), usage in ``raw``."""

    model: str = "gpt-4o"
    words: int = 30
    report_usage: bool = True
    fail: bool = False
    seen: list[dict[str, Any]] = []

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(model_name=self.model)

    def _answer(self, prompt: str, kwargs: dict[str, Any]) -> tuple[list[str], dict[str, Any]]:
        self.seen.append(dict(kwargs))
        if self.fail:
            raise RuntimeError("provider down")
        n = min(self.words, int(kwargs.get("max_tokens") or self.words))
        words = ["word"] * n
        usage = {"prompt_tokens": 11, "completion_tokens": n, "total_tokens": 11 + n}
        return words, usage

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        words, usage = self._answer(prompt, kwargs)
        return CompletionResponse(text=" ".join(words),
                                  raw={"usage": usage} if self.report_usage else {})

    @llm_completion_callback()
    def stream_complete(self, prompt: str, formatted: bool = False,
                        **kwargs: Any) -> CompletionResponseGen:
        words, usage = self._answer(prompt, kwargs)
        text = ""
        for i, word in enumerate(words):
            delta = word if i == 0 else " " + word
            text += delta
            raw = {"usage": usage} if self.report_usage and i == len(words) - 2 else {}
            yield CompletionResponse(text=text, delta=delta, raw=raw)
        yield CompletionResponse(text=text, delta="", raw={})


@pytest.fixture
def store(tmp_path: Path) -> SQLiteBudgetStore:
    return SQLiteBudgetStore(tmp_path / "budgets.sqlite")


@pytest.fixture
def llm() -> WordsLLM:
    return WordsLLM(seen=[])


def attached(layer: BudgetLayer, llm: WordsLLM, **options: Any) -> Iterator[TokenleanBudgetHandler]:
    handler = enforce_budget(layer, llm, **options)
    try:
        yield handler
    finally:
        handler.detach()


def remaining(layer: BudgetLayer, name: str, tenant: str = "default") -> dict[str, Any]:
    probe = core.Request(messages=(core.Message(role="user", content="x"),), model="gpt-4o",
                         tenant=tenant)
    return layer.remaining(probe)[name]


def test_reserves_settles_with_reported_usage_and_raises_before_the_call(
        store: SQLiteBudgetStore, llm: WordsLLM) -> None:
    layer = BudgetLayer(budgets=[Budget(name="t", max_tokens=400, scope="tenant")],
                        store=store, prices=PRICES, default_max_tokens=100)
    for _ in attached(layer, llm, apply_limits=False):
        assert llm.complete("Say something.").text.startswith("word")
        left = remaining(layer, "t")
        assert left["tokens"] == 400 - (11 + 30) and left["reserved_usd"] == 0
        llm.chat([ChatMessage(role="user", content="Say more.")])  # CustomLLM: chat -> complete
        left = remaining(layer, "t")
        assert left["tokens"] == 400 - 2 * 41  # the nested complete is budgeted once
        calls = len(llm.seen)
        with pytest.raises(core.BudgetExceeded, match="tokens left"):
            llm.complete("Now a very long one.", max_tokens=5000)
        assert len(llm.seen) == calls  # refused before the model ran
        assert remaining(layer, "t")["tokens"] == 400 - 2 * 41


def test_clamp_and_prediction_reach_the_model_as_max_tokens(store: SQLiteBudgetStore,
                                                             llm: WordsLLM) -> None:
    predictor = LengthPredictor.default()
    layer = BudgetLayer(budgets=[Budget(name="t", max_tokens=60, scope="tenant",
                                        policy="clamp", min_output_tokens=5)],
                        store=store, prices=PRICES, predictor=predictor)
    llm.words = 500
    for _ in attached(layer, llm):
        prompt = "Say something."
        out = llm.complete(prompt)
        wanted = predictor.predict([core.Message(role="user", content=prompt)], model="gpt-4o")
        asked = core.count_messages((core.Message(role="user", content=prompt),),
                                    model="gpt-4o").tokens
        # 60 tokens left: the predicted bound is clamped to what fits after the prompt
        assert llm.seen[-1]["max_tokens"] == min(wanted, 60 - asked) < wanted
        assert len(out.text.split()) == llm.seen[-1]["max_tokens"]
    no_budget = BudgetLayer(predictor=predictor)
    for _ in attached(no_budget, llm):
        llm.complete("Write a detailed essay on the history of Lisbon.")
        expected = predictor.predict(
            [core.Message(role="user", content="Write a detailed essay on the history of Lisbon.")],
            model="gpt-4o")
        assert llm.seen[-1]["max_tokens"] == expected
        llm.complete("Name a colour.", max_tokens=7)
        assert llm.seen[-1]["max_tokens"] == 7  # the caller's own limit is kept


def test_streamed_calls_are_charged_never_zero(store: SQLiteBudgetStore, llm: WordsLLM) -> None:
    layer = BudgetLayer(budgets=[Budget(name="usd", max_usd=1, scope="tenant")],
                        store=store, prices=PRICES, default_max_tokens=50)
    for _ in attached(layer, llm):
        text = [piece.delta for piece in llm.stream_complete("Stream please.")]
        assert "".join(text).count("word") == 30
        # usage came in a chunk before the last one: 11 in, 30 out at $1 / $2 per Mtok
        assert remaining(layer, "usd")["spent_usd"] == pytest.approx((11 + 2 * 30) / 1e6)
        llm.report_usage = False
        before = remaining(layer, "usd")["spent_usd"]
        list(llm.stream_complete("Stream again."))
        counted = remaining(layer, "usd")["spent_usd"] - before
        prompt = core.count_messages((core.Message(role="user", content="Stream again."),),
                                     model="gpt-4o").tokens
        output = core.count_tokens(" ".join(["word"] * 30), model="gpt-4o").tokens
        assert counted == pytest.approx((prompt + 2 * output) / 1e6)
        assert remaining(layer, "usd")["reserved_usd"] == 0


def test_abandoned_stream_is_charged_its_reservation(store: SQLiteBudgetStore,
                                                     llm: WordsLLM) -> None:
    layer = BudgetLayer(budgets=[Budget(name="t", max_tokens=1000, scope="tenant")],
                        store=store, prices=PRICES, default_max_tokens=40)
    for _ in attached(layer, llm):
        stream = llm.stream_complete("Go on.")
        next(stream)
        stream.close()  # the consumer stopped: the provider may have billed the tokens
        left = remaining(layer, "t")
        prompt = core.count_messages((core.Message(role="user", content="Go on."),),
                                     model="gpt-4o").tokens
        assert left["tokens"] == 1000 - (prompt + 40)


def test_failed_call_releases_the_reservation(store: SQLiteBudgetStore, llm: WordsLLM) -> None:
    layer = BudgetLayer(budgets=[Budget(name="usd", max_usd=1, scope="tenant")],
                        store=store, prices=PRICES)
    llm.fail = True
    for _ in attached(layer, llm):
        with pytest.raises(RuntimeError, match="provider down"):
            llm.complete("Hello?")
        left = remaining(layer, "usd")
        assert left["reserved_usd"] == 0 and left["spent_usd"] == 0


def test_async_calls_and_per_call_tenant(store: SQLiteBudgetStore, llm: WordsLLM) -> None:
    layer = BudgetLayer(budgets=[Budget(name="t", max_tokens=500, scope="tenant")],
                        store=store, prices=PRICES, default_max_tokens=100)

    async def go() -> None:
        await llm.acomplete("One.", tenant="acme")
        await llm.achat([ChatMessage(role="user", content="Two.")], tenant="acme")

    for _ in attached(layer, llm):
        asyncio.run(go())
        assert "tenant" not in llm.seen[-1]  # removed before the model saw it
    assert remaining(layer, "t", tenant="acme")["tokens"] == 500 - 2 * 41
    assert remaining(layer, "t")["tokens"] == 500  # the default tenant was not charged
    llm.complete("Detached: no budget.", max_tokens=10_000)


def test_refuses_what_is_not_a_budget_layer(llm: WordsLLM) -> None:
    with pytest.raises(core.ConfigError, match="BudgetLayer"):
        TokenleanBudgetHandler(layer=object())
    with pytest.raises(core.ConfigError, match="attach"):
        TokenleanBudgetHandler(layer=BudgetLayer()).attach()
