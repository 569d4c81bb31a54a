"""Invariant 3(c) of issue 18: a layer that raises, or exceeds its time budget,
passes the request through unchanged, with one warning.

The slow layers here block on an event the test sets only after the call has
returned, so what is checked is an order of events, not a duration.
"""

from __future__ import annotations

import asyncio
import threading
import warnings
from collections.abc import Callable
from typing import Any

import pytest

from tokenlean.core import (
    FunctionProvider,
    LayerNote,
    Message,
    Pipeline,
    Request,
    Response,
    TokenleanWarning,
    Usage,
)

RELEASE_AFTER_S = 20.0  # a stuck layer gives up waiting after this (the old code then ran it)


class Seen:
    """A provider that remembers the requests it got."""

    def __init__(self) -> None:
        self.requests: list[Request] = []

    def __call__(self, request: Request) -> Response:
        self.requests.append(request)
        return Response(text="ok", usage=Usage(input_tokens=5, output_tokens=1))


def shout(request: Request) -> Request:
    """What every misbehaving layer below would have done: change the prompt."""
    return request.with_messages([m.with_text(m.text.upper()) for m in request.messages])


class Raising:
    name = "raising"

    def process(self, request: Request) -> Request:
        raise RuntimeError("index file vanished")

    async def aprocess(self, request: Request) -> Request:
        raise RuntimeError("index file vanished")


class Stuck:
    """Changes the prompt, but only once released: far past its time budget."""

    name = "stuck"
    time_budget_s = 0.05

    def __init__(self) -> None:
        self.release = threading.Event()
        self.errors: list[tuple[Request, BaseException | None]] = []
        self.finished = threading.Event()

    def process(self, request: Request) -> Request:
        self.release.wait(RELEASE_AFTER_S)
        return shout(request)

    async def aprocess(self, request: Request) -> Request:
        while not self.release.is_set():  # stuck, without holding a thread asyncio.run joins
            await asyncio.sleep(0.01)
        return shout(request)

    def on_error(self, request: Request, exc: BaseException | None) -> None:
        self.errors.append((request, exc))
        self.finished.set()


def request() -> Request:
    return Request(model="gpt-4o-mini", messages=[Message(role="system", content="Be brief."),
                                                  Message(role="user", content="hello there")])


def run_path(pipe: Pipeline, path: str, req: Request) -> Response:
    if path == "run":
        return pipe.run(req).response
    if path == "arun":
        return asyncio.run(pipe.arun(req)).response
    if path == "stream":
        return [c for c in pipe.stream(req) if c.response is not None][-1].response  # type: ignore[return-value]

    async def consume() -> Response:
        last = None
        async for chunk in pipe.astream(req):
            last = chunk.response or last
        assert last is not None
        return last

    return asyncio.run(consume())


def tokenlean_warnings(call: Callable[[], Any]) -> tuple[Any, list[str]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = call()
    return out, [str(w.message) for w in caught if issubclass(w.category, TokenleanWarning)]


@pytest.mark.parametrize("path", ["run", "arun", "stream", "astream"])
def test_a_raising_or_stuck_layer_passes_the_request_through_with_one_warning(path: str) -> None:
    seen, stuck = Seen(), Stuck()
    pipe = Pipeline(provider=FunctionProvider(seen), layers=[Raising(), stuck])
    original = request()
    try:
        response, caught = tokenlean_warnings(lambda: run_path(pipe, path, original))
    finally:
        stuck.release.set()
    assert response.text == "ok"
    (sent,) = seen.requests
    assert sent.messages == original.messages  # unchanged: neither layer took part
    assert len(caught) == 2, caught  # one warning per misbehaving layer
    assert "raising" in caught[0] and "index file vanished" in caught[0]
    assert "stuck" in caught[1] and "time budget" in caught[1]


def test_a_stuck_layer_that_finishes_late_is_told_the_call_went_on_without_it() -> None:
    """What it reserved in the meantime (a budget) is released: it gets ``on_error``
    with the request it returned, once it returns."""
    seen, stuck = Seen(), Stuck()
    pipe = Pipeline(provider=FunctionProvider(seen), layers=[stuck])
    tokenlean_warnings(lambda: pipe.run(request()))
    stuck.release.set()
    assert stuck.finished.wait(RELEASE_AFTER_S)
    ((late_request, exc),) = stuck.errors
    assert late_request.messages[1].text == "HELLO THERE"
    assert isinstance(exc, TimeoutError)


class StuckHook:
    """Answers nothing, but holds the answer back in ``on_response``."""

    name = "stuck-hook"
    time_budget_s = 0.05

    def __init__(self) -> None:
        self.release = threading.Event()

    def process(self, request: Request) -> Request:
        return request

    async def aprocess(self, request: Request) -> Request:
        return request

    def on_response(self, request: Request, response: Response) -> None:
        self.release.wait(RELEASE_AFTER_S)


@pytest.mark.parametrize("path", ["run", "arun", "stream", "astream"])
def test_a_stuck_hook_does_not_hold_back_the_answer(path: str) -> None:
    hook = StuckHook()
    pipe = Pipeline(provider=FunctionProvider(Seen()), layers=[hook])
    try:
        response, caught = tokenlean_warnings(lambda: run_path(pipe, path, request()))
        assert not hook.release.is_set()  # the answer came back while the hook was stuck
    finally:
        hook.release.set()
    assert response.text == "ok"
    assert len(caught) == 1 and "stuck-hook.on_response" in caught[0]


def test_the_pipeline_default_budget_applies_to_layers_without_their_own() -> None:
    class StuckFromTheSecondCall:
        name = "stuck-later"

        def __init__(self) -> None:
            self.calls = 0
            self.release = threading.Event()

        def process(self, request: Request) -> Request:
            self.calls += 1
            if self.calls > 1:
                self.release.wait(RELEASE_AFTER_S)
            return shout(request)

        async def aprocess(self, request: Request) -> Request:
            return self.process(request)

    layer, seen = StuckFromTheSecondCall(), Seen()
    pipe = Pipeline(provider=FunctionProvider(seen), layers=[layer], layer_time_budget_s=0.05)
    try:
        pipe.run(request())  # a layer's first call in the process may load its models
        with pytest.warns(TokenleanWarning, match="stuck-later.*0.05 s"):
            pipe.run(request())
    finally:
        layer.release.set()
    assert seen.requests[1].messages == request().messages


def test_a_hook_note_lands_in_the_layers_report() -> None:
    """How a layer says what it did with the answer (the cache: why it did not store it)."""

    class Noting:
        name = "noting"

        def process(self, request: Request) -> Request:
            return request

        async def aprocess(self, request: Request) -> Request:
            return request

        def on_response(self, request: Request, response: Response) -> LayerNote:
            return LayerNote(layer=self.name, detail={"not_cached": "sampled"})

    pipe = Pipeline(provider=FunctionProvider(Seen()), layers=[Noting()])
    for result in (pipe.run(request()), asyncio.run(pipe.arun(request()))):
        (report,) = result.record.layers
        assert report.detail == {"not_cached": "sampled"}
