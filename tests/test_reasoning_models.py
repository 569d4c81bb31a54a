"""Reasoning models through the real OpenAI and Anthropic SDKs, LangChain's ChatOpenAI
and LlamaIndex's OpenAI, over real HTTP to a scripted loopback server.

The server answers each call with the next scripted reply, shaped as the providers
document reasoning-model answers: OpenAI's ``usage.completion_tokens_details.
reasoning_tokens`` with ``finish_reason: "length"`` and empty content when reasoning
ate the cap; Anthropic's ``thinking`` content blocks with ``stop_reason:
"max_tokens"``. Like OpenAI, it rejects ``max_tokens`` for an o-series / gpt-5 model
(HTTP 400: "Use 'max_completion_tokens' instead").
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tokenlean.core import (
    FunctionProvider,
    Message,
    OpenAICompatibleProvider,
    Pipeline,
    Request,
    Response,
    SQLiteLedger,
    Usage,
    count_tokens,
    price,
)
from tokenlean.core.settings import build_request

QUESTION = "What is the capital of France? One word."
THINKING = "The user asks for the capital of France. That is Paris, a well-known fact."


def openai_reply(content: str, *, completion: int, reasoning: int,
                 finish: str) -> dict[str, Any]:
    return {"content": content, "finish": finish, "usage": {
        "prompt_tokens": 20, "completion_tokens": completion,
        "total_tokens": 20 + completion,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": reasoning, "audio_tokens": 0,
                                      "accepted_prediction_tokens": 0,
                                      "rejected_prediction_tokens": 0}}}


EMPTY = openai_reply("", completion=64, reasoning=64, finish="length")
ANSWERED = openai_reply("Paris", completion=150, reasoning=120, finish="stop")


class Scripted:
    """``server.script``: replies to give, in order; ``server.bodies``: what arrived."""

    def __init__(self, *script: dict[str, Any]) -> None:
        self.script, self.bodies = list(script), []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                return

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                owner.bodies.append(body)
                model = str(body.get("model", ""))
                if self.path.endswith("/messages"):
                    return self._send(200, "application/json", owner.anthropic(body))
                if model.startswith(("o1", "o3", "o4", "gpt-5")) and "max_tokens" in body:
                    return self._send(400, "application/json", json.dumps({"error": {
                        "message": "Unsupported parameter: 'max_tokens' is not supported with "
                                   "this model. Use 'max_completion_tokens' instead.",
                        "type": "invalid_request_error", "param": "max_tokens",
                        "code": "unsupported_parameter"}}).encode())
                reply = owner.script.pop(0)
                if body.get("stream"):
                    return self._send(200, "text/event-stream", owner.sse(model, reply))
                return self._send(200, "application/json", json.dumps({
                    "id": "chatcmpl-r", "object": "chat.completion", "created": 0,
                    "model": model, "usage": reply["usage"], "choices": [{
                        "index": 0, "finish_reason": reply["finish"],
                        "message": {"role": "assistant", "content": reply["content"],
                                    "refusal": None}}]}).encode())

            def _send(self, status: int, kind: str, data: bytes) -> None:
                self.send_response(status)
                self.send_header("content-type", kind)
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def anthropic(self, body: dict[str, Any]) -> bytes:
        reply = self.script.pop(0)
        return json.dumps({"id": "msg_r", "type": "message", "role": "assistant",
                           "model": body["model"], "content": reply["content"],
                           "stop_reason": reply["stop"], "stop_sequence": None,
                           "usage": reply["usage"]}).encode()

    @staticmethod
    def sse(model: str, reply: dict[str, Any]) -> bytes:
        def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            return {"id": "chatcmpl-r", "object": "chat.completion.chunk", "created": 0,
                    "model": model, "choices": [{"index": 0, "delta": delta,
                                                 "finish_reason": finish}]}
        events = [chunk({"role": "assistant", "content": ""})]
        if reply["content"]:
            events.append(chunk({"content": reply["content"]}))
        events += [chunk({}, reply["finish"]),
                   {"id": "chatcmpl-r", "object": "chat.completion.chunk", "created": 0,
                    "model": model, "choices": [], "usage": reply["usage"]}]
        return b"".join(f"data: {json.dumps(e)}\n\n".encode() for e in events) \
            + b"data: [DONE]\n\n"

    def __enter__(self) -> Scripted:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


@pytest.fixture
def server() -> Iterator[Scripted]:
    with Scripted() as s:
        yield s


class Predict:
    """Sets a cap where the app gave none, as a ``budget="predict"`` layer does."""

    name = "predict"

    def __init__(self, cap: int) -> None:
        self.cap = cap

    def process(self, request: Request) -> Request:
        return request if request.output_cap is not None else request.with_output_cap(self.cap)

    async def aprocess(self, request: Request) -> Request:
        return self.process(request)


class Spend:
    """Lowers a cap to what a spend cap still affords (one allowance per call, ``None``:
    no limit), as a ``"clamp"`` budget does, under the name the app used; remembers the
    calls it was told were not sent (``on_error``: a budget releases them)."""

    name = "spend"

    def __init__(self, *allowances: int | None) -> None:
        self.allowances, self.released = list(allowances), []

    def process(self, request: Request) -> Request:
        room = self.allowances.pop(0)
        cap = request.output_cap
        return request if room is None or (cap is not None and cap <= room) else \
            request.with_output_cap(room)

    async def aprocess(self, request: Request) -> Request:
        return self.process(request)

    def on_error(self, request: Request, exc: BaseException | None) -> None:
        self.released.append(request.output_cap)


def ask(model: str = "o3-mini", **kw: Any) -> Request:
    return Request(model=model, messages=[Message(role="user", content=QUESTION)], **kw)


def openai_sdk_provider(url: str) -> FunctionProvider:
    """The real OpenAI SDK (sync and async clients) behind the pipeline."""
    import openai

    def response(out: Any) -> Response:
        choice = out.choices[0]
        return Response(text=choice.message.content or "", finish_reason=choice.finish_reason,
                        usage=Usage.from_openai(out.usage.model_dump()), model=out.model)

    def complete(request: Request) -> Response:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="test", max_retries=0)
        return response(client.chat.completions.create(**request.to_openai()))

    async def acomplete(request: Request) -> Response:
        async with openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="test",
                                      max_retries=0) as client:
            return response(await client.chat.completions.create(**request.to_openai()))

    return FunctionProvider(complete, afunc=acomplete, name="openai-sdk")


# ---- the cap's name, and reasoning_effort --------------------------------------------


def test_reasoning_model_body_carries_max_completion_tokens(server: Scripted) -> None:
    server.script = [ANSWERED]
    provider = OpenAICompatibleProvider(base_url=f"{server.url}/v1", name="openai")
    result = Pipeline(provider=provider).run(ask(max_tokens=500,
                                                 params={"reasoning_effort": "low"}))
    assert result.response.text == "Paris"
    (body,) = server.bodies
    assert "max_tokens" not in body and body["max_completion_tokens"] == 500
    assert body["reasoning_effort"] == "low"
    assert result.record.usage.reasoning_tokens == 120


def test_from_openai_keeps_the_cap_name_and_effort_is_in_the_request() -> None:
    body = {"model": "o3", "messages": [{"role": "user", "content": "hi"}],
            "max_completion_tokens": 300, "reasoning_effort": "high"}
    request = Request.from_openai(body)
    assert request.output_cap == 300 and request.params["reasoning_effort"] == "high"
    lowered = request.with_output_cap(100).to_openai()
    assert lowered["max_completion_tokens"] == 100 and "max_tokens" not in lowered
    other = Request.from_openai({**body, "reasoning_effort": "low"})
    assert other.params != request.params  # the cache keys on params: no shared answer


# ---- the empty answer cut by length ----------------------------------------------------


def test_empty_by_length_is_retried_once_with_a_larger_cap(server: Scripted, tmp_path) -> None:
    server.script = [EMPTY, ANSWERED]
    ledger = SQLiteLedger(tmp_path / "l.sqlite")
    pipeline = Pipeline(provider=openai_sdk_provider(server.url), layers=[Predict(64)],
                        ledger=ledger)
    result = pipeline.run(ask())
    assert result.response.text == "Paris" and result.response.finish_reason == "stop"
    first, second = server.bodies
    assert first["max_completion_tokens"] == 64 and "max_tokens" not in first
    assert second["max_completion_tokens"] == 128  # 2 x 64 (o3-mini's max: 100,000)
    record = result.record
    assert record.metadata["attempts"] == 2 and record.metadata["retried"] == "empty_by_length"
    assert "empty_by_length" not in record.metadata
    billed = Usage(input_tokens=40, output_tokens=214, reasoning_tokens=184)
    assert record.usage == billed
    assert record.cost_usd == price(billed, model="o3-mini").total_usd  # every token billed
    (row,) = ledger.records()
    assert row == record
    (totals,) = ledger.totals()
    assert (totals.calls, totals.output_tokens, totals.reasoning_tokens) == (1, 214, 184)


def test_retry_is_bounded_by_the_apps_own_cap(server: Scripted) -> None:
    server.script = [EMPTY, ANSWERED]
    spend = Spend(64, None)
    pipeline = Pipeline(provider=openai_sdk_provider(server.url), layers=[spend])
    result = pipeline.run(ask(params={"max_completion_tokens": 100}))
    assert [b["max_completion_tokens"] for b in server.bodies] == [64, 100]
    assert result.response.text == "Paris"


def test_a_retry_never_bypasses_a_spend_cap(server: Scripted) -> None:
    server.script = [EMPTY]
    spend = Spend(64, 64)  # the budget affords no more on the retry
    result = Pipeline(provider=openai_sdk_provider(server.url), layers=[spend]).run(
        ask(params={"max_completion_tokens": 1000}))
    assert len(server.bodies) == 1 and spend.released == [64]  # admitted, refused, released
    assert result.record.metadata["empty_by_length"] == "budget"
    assert result.response.finish_reason == "length"


def test_the_apps_own_cap_eaten_is_returned_flagged_not_retried(server: Scripted) -> None:
    server.script = [EMPTY]
    result = Pipeline(provider=openai_sdk_provider(server.url)).run(
        ask(params={"max_completion_tokens": 64}))
    assert len(server.bodies) == 1
    assert result.response.text == "" and result.response.finish_reason == "length"
    assert result.record.metadata["empty_by_length"] == "app_cap"
    assert result.record.usage.reasoning_tokens == 64


def test_a_retry_that_is_empty_too_is_flagged_and_both_are_booked(server: Scripted) -> None:
    server.script = [EMPTY, openai_reply("", completion=128, reasoning=128, finish="length")]
    result = asyncio.run(Pipeline(provider=openai_sdk_provider(server.url),
                                  layers=[Predict(64)]).arun(ask()))
    assert [b["max_completion_tokens"] for b in server.bodies] == [64, 128]
    assert result.response.finish_reason == "length" and result.response.text == ""
    assert result.record.metadata["empty_by_length"] == "retry_empty"
    assert result.record.usage.output_tokens == 192 == result.record.usage.reasoning_tokens


@pytest.mark.parametrize("mode", ["stream", "astream"])
def test_a_stream_that_ends_empty_by_length_streams_the_retry(server: Scripted,
                                                              mode: str) -> None:
    server.script = [EMPTY, ANSWERED]
    provider = OpenAICompatibleProvider(base_url=f"{server.url}/v1", name="openai")
    pipeline = Pipeline(provider=provider, layers=[Predict(64)])

    async def collect() -> list[Any]:
        return [c async for c in pipeline.astream(ask())]

    chunks = list(pipeline.stream(ask())) if mode == "stream" else asyncio.run(collect())
    assert "".join(c.text for c in chunks) == "Paris"
    last = chunks[-1]
    assert last.response.text == "Paris" and last.record.metadata["attempts"] == 2
    assert last.record.usage.output_tokens == 214
    assert [b["max_completion_tokens"] for b in server.bodies] == [64, 128]


# ---- Anthropic extended thinking --------------------------------------------------------


def anthropic_provider(url: str) -> FunctionProvider:
    """The real Anthropic SDK behind the pipeline: thinking blocks -> ``reasoning_text``."""
    import anthropic

    def complete(request: Request) -> Response:
        client = anthropic.Anthropic(base_url=url, api_key="test", max_retries=0)
        out = client.messages.create(
            model=request.model, max_tokens=request.output_cap or 1024,
            thinking={"type": "enabled", "budget_tokens": 1024},
            messages=[{"role": "user", "content": m.text} for m in request.messages])
        text = "".join(b.text for b in out.content if b.type == "text")
        thinking = "".join(b.thinking for b in out.content if b.type == "thinking")
        return Response(text=text, finish_reason=str(out.stop_reason), model=out.model,
                        usage=Usage.from_anthropic(out.usage.model_dump()),
                        reasoning_text=thinking)

    return FunctionProvider(complete, name="anthropic")


def thinking_reply(text: str | None, *, output: int, stop: str,
                   details: dict[str, int] | None = None) -> dict[str, Any]:
    content: list[dict[str, Any]] = [{"type": "thinking", "thinking": THINKING,
                                      "signature": "sig"}]
    if text is not None:
        content.append({"type": "text", "text": text})
    usage: dict[str, Any] = {"input_tokens": 30, "output_tokens": output,
                             "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}
    if details is not None:
        usage["output_tokens_details"] = details
    return {"content": content, "stop": stop, "usage": usage}


MODEL = "claude-sonnet-4-20250514"


def test_anthropic_thinking_tokens_reported_are_booked(server: Scripted) -> None:
    server.script = [thinking_reply("Paris", output=90, stop="end_turn",
                                    details={"thinking_tokens": 70})]
    result = Pipeline(provider=anthropic_provider(server.url)).run(ask(MODEL, max_tokens=2048))
    assert result.record.usage.reasoning_tokens == 70 and result.record.usage.output_tokens == 90
    assert "reasoning_source" not in result.record.metadata


def test_anthropic_thinking_not_reported_apart_is_estimated_from_the_blocks(
        server: Scripted) -> None:
    server.script = [thinking_reply("Paris", output=90, stop="end_turn")]
    result = Pipeline(provider=anthropic_provider(server.url)).run(ask(MODEL, max_tokens=2048))
    counted = count_tokens(THINKING, model=MODEL)
    assert result.record.usage.reasoning_tokens == counted.tokens
    assert result.record.usage.output_tokens == 90  # what was billed, unchanged
    assert result.record.metadata["reasoning_source"] == "estimated"
    assert result.record.metadata["reasoning_exact"] is False  # Claude's tokenizer is private


def test_anthropic_thinking_that_ate_max_tokens_is_retried(server: Scripted) -> None:
    server.script = [thinking_reply(None, output=64, stop="max_tokens"),
                     thinking_reply("Paris", output=100, stop="end_turn",
                                    details={"thinking_tokens": 80})]
    pipeline = Pipeline(provider=anthropic_provider(server.url), layers=[Predict(64)])
    result = pipeline.run(ask(MODEL))
    assert [b["max_tokens"] for b in server.bodies] == [64, 128]
    assert result.response.text == "Paris"
    usage = result.record.usage
    assert usage.output_tokens == 164
    # the first reported no thinking share: counted from its thinking block's text
    assert usage.reasoning_tokens == count_tokens(THINKING, model=MODEL).tokens + 80


# ---- the framework adapters ---------------------------------------------------------------


def test_langchain_chat_openai_reasoning_model(server: Scripted) -> None:
    from langchain_openai import ChatOpenAI

    from langchain_tokenlean import lean

    server.script = [EMPTY, ANSWERED]
    chat = ChatOpenAI(model="o3-mini", base_url=f"{server.url}/v1", api_key="test",
                      max_retries=0, reasoning_effort="high")
    out = lean(chat, layers=[Predict(64)]).invoke(QUESTION)
    assert out.content == "Paris"
    assert [b.get("max_completion_tokens") for b in server.bodies] == [64, 128]
    assert all("max_tokens" not in b and b["reasoning_effort"] == "high" for b in server.bodies)
    record = out.response_metadata["tokenlean"]["record"]
    assert record["output_tokens"] == 214 and record["reasoning_tokens"] == 184


def test_llamaindex_openai_reasoning_model(server: Scripted) -> None:
    from llama_index.core.base.llms.types import ChatMessage
    from llama_index.llms.openai import OpenAI

    from llama_index.llms.tokenlean import lean

    server.script = [EMPTY, ANSWERED]
    llm = OpenAI(model="o3-mini", api_base=f"{server.url}/v1", api_key="test", max_retries=0,
                 reasoning_effort="low")
    out = lean(llm, layers=[Predict(64)]).chat([ChatMessage(role="user", content=QUESTION)])
    assert out.message.content == "Paris"
    assert [b.get("max_completion_tokens") for b in server.bodies] == [64, 128]
    assert all("max_tokens" not in b and b["reasoning_effort"] == "low" for b in server.bodies)


def test_effort_is_part_of_the_request_each_adapter_builds() -> None:
    from langchain_openai import ChatOpenAI

    from langchain_tokenlean.chat_models import model_settings

    high = ChatOpenAI(model="o3-mini", api_key="test", reasoning_effort="high")
    low = ChatOpenAI(model="o3-mini", api_key="test", reasoning_effort="low")
    asked = [build_request([Message(role="user", content="hi")], *model_settings(m))
             for m in (high, low)]
    assert asked[0].params["reasoning_effort"] == "high" != asked[1].params["reasoning_effort"]
