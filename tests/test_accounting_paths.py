"""One accounting path: the pipeline, the LangChain cost handler and the LlamaIndex
instrumentation handler book the same observed call the same way (usage, estimate,
price, cache hit) and degrade the same way when their sink is down."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import pytest
from langchain_core.caches import InMemoryCache
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from llama_index.core.llms import (
    ChatMessage,
    CompletionResponse,
    CompletionResponseGen,
    CustomLLM,
    LLMMetadata,
)
from llama_index.core.llms.callbacks import llm_completion_callback

from langchain_tokenlean import TokenleanCostHandler
from langchain_tokenlean import lean as lc_lean
from llama_index.callbacks.tokenlean import instrument
from llama_index.llms.tokenlean import lean as li_lean
from tokenlean.core import (
    CallRecord,
    FunctionProvider,
    Message,
    Pipeline,
    Request,
    Response,
    TokenleanWarning,
    Usage,
    price,
)

MODEL = "gpt-4o-mini"
SYSTEM, QUESTION = "Be brief.", "What is the capital of France?"
ANSWER = "Paris is the capital of France."
CACHED_USAGE = Usage(input_tokens=1200, output_tokens=300, cache_read_tokens=1000)
LC_CACHED_USAGE = {"input_tokens": 1200, "output_tokens": 300, "total_tokens": 1500,
                   "input_token_details": {"cache_read": 1000}}


class LCModel(BaseChatModel):
    """A LangChain chat model answering ``ANSWER``, reporting ``usage`` (or nothing)."""

    usage: dict[str, Any] = {}
    model_name: str = MODEL

    @property
    def _llm_type(self) -> str:
        return "accounting-paths"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model_name": MODEL}

    def _generate(self, messages: Any, stop: Any = None, run_manager: Any = None,
                  **kwargs: Any) -> ChatResult:
        message = AIMessage(content=ANSWER, usage_metadata=dict(self.usage) or None,
                            response_metadata={"model_name": MODEL, "finish_reason": "stop"})
        return ChatResult(generations=[ChatGeneration(message=message)])


class LILLM(CustomLLM):
    """A LlamaIndex LLM answering ``ANSWER`` without reporting usage."""

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(model_name=MODEL)

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        return CompletionResponse(text=ANSWER)

    @llm_completion_callback()
    def stream_complete(self, prompt: str, formatted: bool = False,
                        **kwargs: Any) -> CompletionResponseGen:
        yield self.complete(prompt)


class AnswerEverything:
    """A real layer that answers every call as a cache hit does (stored answer, with
    the usage it reported when the model first produced it)."""

    name = "cache"

    def process(self, request: Request) -> Request | Response:
        return Response(text=ANSWER, model=request.model, usage=CACHED_USAGE, cached=True)

    async def aprocess(self, request: Request) -> Request | Response:
        return self.process(request)


def silent(request: Request) -> Response:
    return Response(text=ANSWER, model=request.model)


def request() -> Request:
    return Request(model=MODEL, messages=(Message(role="system", content=SYSTEM),
                                          Message(role="user", content=QUESTION)))


def lc_messages() -> list[Any]:
    return [SystemMessage(content=SYSTEM), HumanMessage(content=QUESTION)]


def li_messages() -> list[ChatMessage]:
    return [ChatMessage(role="system", content=SYSTEM), ChatMessage(role="user", content=QUESTION)]


def booked(record: CallRecord) -> tuple[Any, ...]:
    """What a record books, whatever path wrote it."""
    return (record.model, record.usage, record.cost_usd, record.cached,
            record.metadata.get("usage_source"),
            [(r.saved_input_tokens, r.saved_output_tokens, r.saved_usd) for r in record.layers])


@pytest.fixture
def li_handler() -> Iterator[Any]:
    handler = instrument(keep_records=True)
    yield handler
    handler.detach()


def test_every_path_books_an_unreported_call_the_same_way(li_handler: Any) -> None:
    pipeline = Pipeline(provider=FunctionProvider(silent)).run(request()).record
    lc = TokenleanCostHandler(keep_records=True)
    LCModel().invoke(lc_messages(), config={"callbacks": [lc]})
    LILLM().chat(li_messages())
    (lc_record,), (li_record,) = lc.records, li_handler.records
    assert booked(pipeline)[1] != Usage(), "a call nobody reported is estimated, never free"
    assert booked(lc_record) == booked(pipeline)
    assert booked(li_record) == booked(pipeline)


def test_every_path_books_a_cache_hit_the_same_way(li_handler: Any) -> None:
    pipeline = Pipeline(provider=FunctionProvider(silent), layers=[AnswerEverything()]).run(
        request()).record
    lc = TokenleanCostHandler(keep_records=True)
    lc_lean(LCModel(), layers=[AnswerEverything()], ledger=False).invoke(
        lc_messages(), config={"callbacks": [lc]})
    li_lean(LILLM(), layers=[AnswerEverything()], ledger=False).chat(li_messages())
    framework_cache = LCModel(usage=LC_CACHED_USAGE, cache=InMemoryCache())
    framework_cache.invoke(lc_messages())  # a miss fills LangChain's own cache
    framework_cache.invoke(lc_messages(), config={"callbacks": [lc]})  # the hit
    lean_hit, framework_hit = lc.records
    (li_hit,) = li_handler.records
    full = price(CACHED_USAGE, model=MODEL)
    assert full is not None
    assert booked(pipeline)[2:4] == (Decimal(0), True)
    assert booked(pipeline)[5] == [(1200, 300, full.total_usd)]
    for record in (lean_hit, li_hit, framework_hit):
        assert booked(record)[1:4] == booked(pipeline)[1:4]
        assert booked(record)[5] == booked(pipeline)[5]


class DownSink:
    def __init__(self) -> None:
        self.down = True

    def record(self, record: CallRecord) -> None:
        if self.down:
            raise OSError("sink unreachable")


def _pipeline(sink: DownSink) -> Callable[[], object]:
    pipe = Pipeline(provider=FunctionProvider(silent), ledger=sink)
    return lambda: pipe.run(request())


def _langchain(sink: DownSink) -> Callable[[], object]:
    handler = TokenleanCostHandler(ledger=sink)
    return lambda: LCModel().invoke(lc_messages(), config={"callbacks": [handler]})


def _llamaindex(sink: DownSink) -> Callable[[], object]:
    from llama_index.core.instrumentation import get_dispatcher

    from llama_index.callbacks.tokenlean import TokenleanEventHandler

    handler = TokenleanEventHandler(ledger=sink)
    dispatcher = get_dispatcher()

    def call() -> object:
        handler.attach(dispatcher)
        try:
            return LILLM().chat(li_messages())
        finally:
            handler.detach()

    return call


@pytest.mark.parametrize("path", [_pipeline, _langchain, _llamaindex])
def test_every_path_warns_once_per_sink_outage(path: Callable[[DownSink], Callable[[], object]]
                                               ) -> None:
    sink = DownSink()
    call = path(sink)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        call()
        call()  # the same outage: silent
        sink.down = False
        call()  # recovered
        sink.down = True
        call()  # a new outage: one more warning
    messages = [str(w.message) for w in caught if issubclass(w.category, TokenleanWarning)]
    assert len(messages) == 2, messages
    assert all("sink unreachable" in m for m in messages)
