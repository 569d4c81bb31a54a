from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from tokenlean.core import (
    BudgetExceeded,
    FunctionProvider,
    LayerNote,
    Message,
    Pipeline,
    Request,
    Response,
    SQLiteLedger,
    TokenleanError,
    TokenleanWarning,
    Usage,
    count_messages,
)
from tokenlean.core.types import Chunk

LONG = "The quick brown fox jumps over the lazy dog. " * 40


def echo(request: Request) -> Response:
    """A provider that answers with the last user text and honest usage."""
    prompt = count_messages(request.messages, model=request.model).tokens
    return Response(text=request.last_user_text[:20], model=request.model,
                    usage=Usage(input_tokens=prompt, output_tokens=5))


class Truncate:
    """Keeps the first ``keep`` characters of every user message."""

    name = "truncate"

    def __init__(self, keep: int) -> None:
        self.keep = keep

    def process(self, request: Request) -> Request:
        msgs = [m.with_text(m.text[: self.keep]) if m.role == "user" else m
                for m in request.messages]
        return request.with_messages(msgs).with_note(
            LayerNote(layer=self.name, quality={"retention": 0.5}))

    async def aprocess(self, request: Request) -> Request:
        return self.process(request)


class Memo:
    """A tiny exact cache: answers repeats of the last user text."""

    name = "memo"

    def __init__(self) -> None:
        self.store: dict[str, Response] = {}
        self.errors: list[BaseException | None] = []

    def process(self, request: Request) -> Request | Response:
        hit = self.store.get(request.last_user_text)
        return request if hit is None else replace(hit, cached=True, cache_score=1.0)

    async def aprocess(self, request: Request) -> Request | Response:
        return self.process(request)

    def on_response(self, request: Request, response: Response) -> None:
        if not response.cached:
            self.store[request.last_user_text] = response

    def on_error(self, request: Request, exc: BaseException | None) -> None:
        self.errors.append(exc)


def req(text: str = LONG, model: str = "gpt-4o") -> Request:
    return Request(model=model, messages=(Message(role="user", content=text),))


def test_layers_run_in_order_and_savings_are_measured(tmp_path) -> None:
    ledger = SQLiteLedger(tmp_path / "l.sqlite")
    pipe = Pipeline(provider=FunctionProvider(echo), layers=[Truncate(100)], ledger=ledger)
    before = count_messages(req().messages, model="gpt-4o").tokens
    result = pipe.run(req())
    after = count_messages(result.request.messages, model="gpt-4o").tokens
    (report,) = result.record.layers
    assert report.layer == "truncate"
    assert report.saved_input_tokens == before - after > 0
    assert report.quality == {"retention": 0.5}
    assert report.saved_usd is not None and report.saved_usd > 0
    assert result.record.usage.input_tokens == after
    assert result.record.cost is not None
    assert ledger.count() == 1


def test_cache_hit_saves_whole_call_and_costs_nothing(tmp_path) -> None:
    ledger = SQLiteLedger(tmp_path / "l.sqlite")
    memo = Memo()
    pipe = Pipeline(provider=FunctionProvider(echo), layers=[memo], ledger=ledger)
    first = pipe.run(req("What is 2+2?"))
    second = pipe.run(req("What is 2+2?"))
    assert not first.response.cached and second.response.cached
    assert second.record.usage == Usage() and second.record.cost_usd == 0
    (hit,) = second.record.layers
    assert hit.saved_input_tokens == first.record.usage.input_tokens
    assert hit.saved_output_tokens == 5
    assert hit.quality == {"similarity": 1.0}
    totals = {t.key: t for t in ledger.totals(by="layer")}
    assert totals["memo"].saved_tokens == hit.saved_input_tokens + 5


def test_async_twin_gives_same_record() -> None:
    pipe = Pipeline(provider=FunctionProvider(echo), layers=[Truncate(50)])
    sync = pipe.run(req())
    async_ = asyncio.run(pipe.arun(req()))
    assert sync.response.text == async_.response.text
    assert sync.record.layers[0].saved_input_tokens == async_.record.layers[0].saved_input_tokens


def test_broken_layer_is_skipped_with_warning() -> None:
    class Broken:
        name = "broken"

        def process(self, request: Request) -> Request:
            raise RuntimeError("index file vanished")

        async def aprocess(self, request: Request) -> Request:
            raise RuntimeError("index file vanished")

    pipe = Pipeline(provider=FunctionProvider(echo), layers=[Broken()])
    with pytest.warns(TokenleanWarning, match="broken"):
        result = pipe.run(req("hello"))
    assert result.response.text == "hello"
    with pytest.warns(TokenleanWarning, match="broken"):
        assert asyncio.run(pipe.arun(req("hello"))).response.text == "hello"


def test_tokenlean_errors_from_layers_reach_the_caller_and_release() -> None:
    memo = Memo()

    class Deny:
        name = "deny"

        def process(self, request: Request) -> Request:
            raise BudgetExceeded("over budget", budget="test", limit=1, spent=1)

        async def aprocess(self, request: Request) -> Request:
            return self.process(request)

    pipe = Pipeline(provider=FunctionProvider(echo), layers=[memo, Deny()])
    with pytest.raises(BudgetExceeded):
        pipe.run(req("x"))
    assert memo.errors == [None]  # earlier layers were told the call did not happen


def test_provider_failure_calls_on_error() -> None:
    memo = Memo()

    def fail(request: Request) -> Response:
        raise ConnectionError("provider down")

    pipe = Pipeline(provider=FunctionProvider(fail), layers=[memo])
    with pytest.raises(ConnectionError):
        pipe.run(req("x"))
    assert isinstance(memo.errors[0], ConnectionError)


def test_failing_ledger_never_breaks_the_call() -> None:
    class DownLedger:
        def record(self, record: object) -> None:
            raise OSError("disk full")

    pipe = Pipeline(provider=FunctionProvider(echo), ledger=DownLedger())
    with pytest.warns(TokenleanWarning, match="'DownLedger' write failed.*disk full"):
        assert pipe.run(req("hi")).response.text == "hi"


class Streamer:
    name = "streamer"

    def complete(self, request: Request) -> Response:
        return echo(request)

    async def acomplete(self, request: Request) -> Response:
        return echo(request)

    def stream(self, request: Request):
        response = echo(request)
        for word in response.text.split(" "):
            yield Chunk(text=word + " ")
        yield Chunk(response=response)

    async def astream(self, request: Request):
        for chunk in self.stream(request):
            yield chunk


def test_stream_then_cached_replay_has_same_text() -> None:
    memo = Memo()
    pipe = Pipeline(provider=Streamer(), layers=[memo])
    chunks = list(pipe.stream(req("one two three")))
    assert chunks[-1].response is not None and not chunks[-1].response.cached
    assert len(chunks) > 2
    replay = list(pipe.stream(req("one two three")))
    assert replay[-1].response is not None and replay[-1].response.cached
    assert "".join(c.text for c in replay) == chunks[-1].response.text

    async def collect() -> list[Chunk]:
        return [c async for c in pipe.astream(req("four five"))]

    assert asyncio.run(collect())[-1].response.text == "four five"


def test_stream_without_final_response_is_an_error() -> None:
    class NoFinal(Streamer):
        def stream(self, request: Request):
            yield Chunk(text="partial")

    with pytest.raises(TokenleanError, match="without a final response"):
        list(Pipeline(provider=NoFinal()).stream(req("x")))


def test_unknown_model_price_is_none_not_zero() -> None:
    pipe = Pipeline(provider=FunctionProvider(echo), layers=[Truncate(30)])
    with pytest.warns(TokenleanWarning, match="no price known"):
        result = pipe.run(req(model="house-model-7b"))
    assert result.record.cost is None
    assert result.record.layers[0].saved_usd is None
    assert result.record.layers[0].saved_input_tokens > 0


def test_hooks_see_the_request_their_layer_processed() -> None:
    """A cache before compression stores under the request as the app sent it, so
    the same question hits even though the provider only saw the shortened one."""
    memo = Memo()
    pipe = Pipeline(provider=FunctionProvider(echo), layers=[memo, Truncate(30)])
    first = pipe.run(req(LONG))
    assert first.request.last_user_text == LONG[:30]  # the provider got the short one
    assert list(memo.store) == [LONG]
    assert pipe.run(req(LONG)).response.cached
