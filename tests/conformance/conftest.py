"""A scripted OpenAI-compatible server on loopback, and the adapters under test.

The server speaks the real chat-completions wire format (JSON and SSE
streams, usage included) so the OpenAI SDK, ``ChatOpenAI`` and LlamaIndex's
``OpenAI`` talk to it over real HTTP. It records every body it receives and
answers by a fixed script, so every adapter sees the same answer to the same
call:

* the last message is a tool result: a text answer about it;
* tools were offered: a call of the first tool with ``{"a": 1, "b": 2}``;
* a JSON-schema ``response_format``: ``{"a": 1, "b": 2}`` as the content;
* otherwise ``ANSWER``.

Usage is always ``PROMPT_TOKENS`` in, ``COMPLETION_TOKENS`` out (streamed in a
last chunk when the client asks for it with ``stream_options``).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from pydantic import BaseModel

ANSWER = "Paris is the capital of France."
TOOL_ANSWER = "The sum is 3."
PROMPT_TOKENS, COMPLETION_TOKENS = 21, 7
TOOL_ARGS = {"a": 1, "b": 2}


def _reply(body: dict[str, Any]) -> dict[str, Any]:
    """The scripted assistant message for ``body``: content and tool calls."""
    messages = body.get("messages") or []
    last = messages[-1] if messages else {}
    if last.get("role") == "tool":
        return {"content": TOOL_ANSWER, "tool_calls": []}
    tools = body.get("tools") or []
    if tools:
        name = tools[0]["function"]["name"]
        return {"content": "", "tool_calls": [
            {"id": "call_1", "type": "function",
             "function": {"name": name, "arguments": json.dumps(TOOL_ARGS)}}]}
    fmt = body.get("response_format") or {}
    if isinstance(fmt, dict) and fmt.get("type") in {"json_schema", "json_object"}:
        return {"content": json.dumps(TOOL_ARGS), "tool_calls": []}
    return {"content": ANSWER, "tool_calls": []}


def _usage() -> dict[str, int]:
    return {"prompt_tokens": PROMPT_TOKENS, "completion_tokens": COMPLETION_TOKENS,
            "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS}


class ScriptedOpenAI:
    """``with ScriptedOpenAI() as server``: ``server.url`` ends in ``/v1``;
    ``server.bodies`` holds every chat-completions body received, in order."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # keep the test output clean
                return

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                owner.bodies.append(body)
                reply = _reply(body)
                if body.get("stream"):
                    self._stream(body, reply)
                else:
                    self._json(body, reply)

            def _send(self, status: int, content_type: str, data: bytes) -> None:
                self.send_response(status)
                self.send_header("content-type", content_type)
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _json(self, body: dict[str, Any], reply: dict[str, Any]) -> None:
                message: dict[str, Any] = {"role": "assistant", "content": reply["content"]}
                if reply["tool_calls"]:
                    message["tool_calls"] = reply["tool_calls"]
                    message["content"] = None
                out = {"id": "chatcmpl-1", "object": "chat.completion", "created": 0,
                       "model": body.get("model", ""), "usage": _usage(),
                       "choices": [{"index": 0, "message": message,
                                    "finish_reason": "tool_calls" if reply["tool_calls"]
                                    else "stop"}]}
                self._send(200, "application/json", json.dumps(out).encode())

            def _stream(self, body: dict[str, Any], reply: dict[str, Any]) -> None:
                def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
                    return {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 0,
                            "model": body.get("model", ""),
                            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

                events = [chunk({"role": "assistant", "content": ""})]
                words = reply["content"].split(" ") if reply["content"] else []
                for i, word in enumerate(words):
                    events.append(chunk({"content": word if i == 0 else " " + word}))
                for index, call in enumerate(reply["tool_calls"]):
                    events.append(chunk({"tool_calls": [
                        {"index": index, "id": call["id"], "type": "function",
                         "function": {"name": call["function"]["name"], "arguments": ""}}]}))
                    events.append(chunk({"tool_calls": [
                        {"index": index,
                         "function": {"arguments": call["function"]["arguments"]}}]}))
                events.append(chunk({}, "tool_calls" if reply["tool_calls"] else "stop"))
                if (body.get("stream_options") or {}).get("include_usage"):
                    events.append({"id": "chatcmpl-1", "object": "chat.completion.chunk",
                                   "created": 0, "model": body.get("model", ""), "choices": [],
                                   "usage": _usage()})
                data = b"".join(f"data: {json.dumps(e)}\n\n".encode() for e in events)
                self._send(200, "text/event-stream", data + b"data: [DONE]\n\n")

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/v1"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True,
                                        name="scripted-openai")

    def __enter__(self) -> ScriptedOpenAI:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


@pytest.fixture
def scripted_openai() -> Iterator[ScriptedOpenAI]:
    with ScriptedOpenAI() as server:
        yield server


# ---- the adapters under test -------------------------------------------------------

SYSTEM = "You are terse."
QUESTION = "What is the capital of France?"
APP_CAP = 30
# what the app configured on its model, the same for every framework
SETTINGS: dict[str, Any] = {"temperature": 0.3, "top_p": 0.9, "seed": 7, "stop": ["END"],
                            "service_tier": "default"}


def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


def adder_tool() -> dict[str, Any]:
    """The tool every adapter is offered, as the OpenAI tool the app would send."""
    from langchain_core.utils.function_calling import convert_to_openai_tool

    return convert_to_openai_tool(add)


class Sum(BaseModel):
    """The sum of two integers."""

    a: int
    b: int


class Spy:
    """A layer that remembers each request as the adapter built it."""

    name = "spy"

    def __init__(self) -> None:
        self.requests: list[Any] = []

    def process(self, request: Any) -> Any:
        self.requests.append(request)
        return request

    async def aprocess(self, request: Any) -> Any:
        return self.process(request)


class Rows:
    """An in-memory ledger."""

    def __init__(self) -> None:
        self.records: list[Any] = []

    def record(self, record: Any) -> None:
        self.records.append(record)


class Outcome:
    """What the app got back, in one shape for every framework."""

    def __init__(self, text: str = "", tool_calls: list[tuple[str, dict[str, Any]]] | None = None,
                 structured: Any = None) -> None:
        self.text, self.tool_calls, self.structured = text, tool_calls or [], structured

    def __repr__(self) -> str:
        return f"Outcome({self.text!r}, {self.tool_calls!r}, {self.structured!r})"


class Adapter:
    """Drives one integration: ``run`` wraps a fresh client model with ``lean_kwargs`` and
    asks it ``times`` times (async modes in one event loop, over an HTTP client of their
    own) the way an app would."""

    name = ""
    cap_ways: tuple[str, ...] = ("model",)

    def __init__(self, url: str) -> None:
        self.url = url

    def ask(self, *, mode: str, kind: str, cap_way: str, lean_kwargs: dict[str, Any] | None,
            client: Any, settings: dict[str, Any], call: dict[str, Any]) -> tuple[Any, Any]:
        """(sync ask, async ask) for one wrapped model (the bare one when ``lean_kwargs`` is
        None); each returns an :class:`Outcome`.
        ``settings``: the wrapped model's (``SETTINGS`` by default); ``call``: per-call
        keyword arguments."""
        raise NotImplementedError

    def run(self, *, mode: str, kind: str, cap_way: str = "model", times: int = 1,
            settings: dict[str, Any] | None = None, call: dict[str, Any] | None = None,
            raw: bool = False, **lean_kwargs: Any) -> list[Outcome]:
        """``raw=True``: the app without tokenlean (its model or agent as it is)."""
        import asyncio

        import httpx

        options = {"mode": mode, "kind": kind, "cap_way": cap_way,
                   "lean_kwargs": None if raw else lean_kwargs,
                   "settings": {**SETTINGS, **(settings or {})}, "call": dict(call or {})}
        if not mode.startswith("a"):
            sync, _ = self.ask(client=None, **options)
            return [sync() for _ in range(times)]

        async def main() -> list[Outcome]:
            async with httpx.AsyncClient() as client:
                _, asynchronous = self.ask(client=client, **options)
                return [await asynchronous() for _ in range(times)]

        return asyncio.run(main())


def _total(parts: list[Any]) -> Any:
    total = parts[0]
    for part in parts[1:]:
        total = total + part
    return total


class LangChainLean(Adapter):
    """``langchain_tokenlean.lean(ChatOpenAI(...))``."""

    name = "langchain-lean"
    cap_ways = ("model", "call", "bound")

    def chat(self, cap_way: str, client: Any, settings: dict[str, Any]) -> Any:
        from langchain_openai import ChatOpenAI

        cap = {"max_tokens": APP_CAP} if cap_way == "model" else {}
        model = ChatOpenAI(model="gpt-4o", base_url=self.url, api_key="test", max_retries=0,
                           stream_usage=True, http_async_client=client, **{**cap, **settings})
        return model.bind(max_tokens=APP_CAP) if cap_way == "bound" else model

    def ask(self, *, mode: str, kind: str, cap_way: str, lean_kwargs: dict[str, Any] | None,
            client: Any, settings: dict[str, Any], call: dict[str, Any]) -> tuple[Any, Any]:
        from langchain_core.messages import HumanMessage, SystemMessage

        from langchain_tokenlean import lean

        chat = self.chat(cap_way, client, settings)
        wrapped: Any = chat if lean_kwargs is None else lean(chat, **lean_kwargs)
        if kind == "tools":
            wrapped = wrapped.bind_tools([adder_tool()])
        elif kind == "structured":
            wrapped = wrapped.with_structured_output(Sum)
        if cap_way == "call":
            call["max_tokens"] = APP_CAP
        messages = [SystemMessage(SYSTEM), HumanMessage(QUESTION)]

        def outcome(out: Any) -> Outcome:
            if kind == "structured":
                return Outcome(structured=out)
            return Outcome(text=str(out.content),
                           tool_calls=[(c["name"], c["args"]) for c in out.tool_calls])

        def sync() -> Outcome:
            if mode == "stream":
                parts = list(wrapped.stream(messages, **call))
                return outcome(parts[-1] if kind == "structured" else _total(parts))
            return outcome(wrapped.invoke(messages, **call))

        async def asynchronous() -> Outcome:
            if mode == "astream":
                parts = [p async for p in wrapped.astream(messages, **call)]
                return outcome(parts[-1] if kind == "structured" else _total(parts))
            return outcome(await wrapped.ainvoke(messages, **call))

        return sync, asynchronous


class LangChainMiddleware(Adapter):
    """``create_agent(ChatOpenAI(...), middleware=[TokenleanMiddleware(...)])``; streamed
    the way agents stream tokens (``stream_mode="messages"``, the final state too)."""

    name = "langchain-middleware"

    def ask(self, *, mode: str, kind: str, cap_way: str, lean_kwargs: dict[str, Any] | None,
            client: Any, settings: dict[str, Any], call: dict[str, Any]) -> tuple[Any, Any]:
        assert not call, "an agent's model call takes no per-call arguments"
        from langchain.agents import create_agent
        from langchain.agents.structured_output import ProviderStrategy, ToolStrategy
        from langchain_core.messages import HumanMessage
        from langchain_core.tools import tool

        from langchain_tokenlean import TokenleanMiddleware

        agent = create_agent(
            LangChainLean(self.url).chat(cap_way, client, settings),
            tools=[tool(add)] if kind == "tools" else [], system_prompt=SYSTEM,
            response_format=(ToolStrategy(Sum) if kind == "structured" else
                             ProviderStrategy(Sum) if kind == "structured-provider" else None),
            middleware=[] if lean_kwargs is None else [TokenleanMiddleware(**lean_kwargs)])
        state = {"messages": [HumanMessage(QUESTION)]}
        modes = ["messages", "values"]

        def outcome(out: dict[str, Any]) -> Outcome:
            if kind.startswith("structured"):
                return Outcome(structured=out.get("structured_response"))
            calls = [(c["name"], c["args"]) for m in out["messages"] if m.type == "ai"
                     for c in m.tool_calls]
            return Outcome(text=str(out["messages"][-1].content), tool_calls=calls)

        def sync() -> Outcome:
            if mode == "stream":
                values = [v for m, v in agent.stream(state, stream_mode=modes) if m == "values"]
                return outcome(values[-1])
            return outcome(agent.invoke(state))

        async def asynchronous() -> Outcome:
            if mode == "astream":
                values = [v async for m, v in agent.astream(state, stream_mode=modes)
                          if m == "values"]
                return outcome(values[-1])
            return outcome(await agent.ainvoke(state))

        return sync, asynchronous


class LlamaIndexLean(Adapter):
    """``llama_index.llms.tokenlean.lean(OpenAI(...))``."""

    name = "llamaindex-lean"
    cap_ways = ("model", "call", "extra")

    def llm(self, cap_way: str, client: Any, settings: dict[str, Any]) -> Any:
        from llama_index.llms.openai import OpenAI

        extra = {k: v for k, v in settings.items() if k not in {"temperature", "max_tokens"}}
        extra["stream_options"] = {"include_usage": True}
        if cap_way == "extra":
            extra["max_completion_tokens"] = APP_CAP
        cap = {"max_tokens": settings.get("max_tokens", APP_CAP)} if cap_way == "model" else {}
        return OpenAI(model="gpt-4o", api_base=self.url, api_key="test", max_retries=0,
                      temperature=settings["temperature"], additional_kwargs=extra,
                      async_http_client=client, **cap)

    def ask(self, *, mode: str, kind: str, cap_way: str, lean_kwargs: dict[str, Any] | None,
            client: Any, settings: dict[str, Any], call: dict[str, Any]) -> tuple[Any, Any]:
        from llama_index.core.base.llms.types import ChatMessage, MessageRole, ToolCallBlock
        from llama_index.core.prompts import PromptTemplate

        from llama_index.llms.tokenlean import lean

        llm = self.llm(cap_way, client, settings)
        wrapped: Any = llm if lean_kwargs is None else lean(llm, **lean_kwargs)
        if cap_way == "call":
            call["max_tokens"] = APP_CAP
        if kind == "tools":
            call["tools"] = [adder_tool()]
        messages = [ChatMessage(role=MessageRole.SYSTEM, content=SYSTEM),
                    ChatMessage(role=MessageRole.USER, content=QUESTION)]
        prompt = PromptTemplate(QUESTION)

        def outcome(out: Any) -> Outcome:
            if kind == "structured":
                return Outcome(structured=out)
            calls = [(c.tool_name, json.loads(c.tool_kwargs) if isinstance(c.tool_kwargs, str)
                      else dict(c.tool_kwargs)) for c in out.message.blocks
                     if isinstance(c, ToolCallBlock)]
            return Outcome(text=out.message.content or "", tool_calls=calls)

        def sync() -> Outcome:
            if kind == "structured":
                if mode == "stream":
                    return outcome(list(wrapped.stream_structured_predict(
                        Sum, prompt, llm_kwargs=call))[-1])
                return outcome(wrapped.structured_predict(Sum, prompt, llm_kwargs=call))
            if mode == "stream":
                return outcome(list(wrapped.stream_chat(messages, **call))[-1])
            return outcome(wrapped.chat(messages, **call))

        async def asynchronous() -> Outcome:
            if kind == "structured":
                if mode == "astream":
                    parts = await wrapped.astream_structured_predict(Sum, prompt,
                                                                     llm_kwargs=call)
                    return outcome([p async for p in parts][-1])
                return outcome(await wrapped.astructured_predict(Sum, prompt, llm_kwargs=call))
            if mode == "astream":
                return outcome([p async for p in await wrapped.astream_chat(messages, **call)][-1])
            return outcome(await wrapped.achat(messages, **call))

        return sync, asynchronous


ADAPTERS = (LangChainLean, LangChainMiddleware, LlamaIndexLean)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """``adapter`` (with ``cap_way`` where a test takes it) runs over every adapter."""
    names = metafunc.fixturenames
    if "adapter" in names and "cap_way" in names:
        cases = [(a, way) for a in ADAPTERS for way in a.cap_ways]
        metafunc.parametrize(("adapter", "cap_way"), cases,
                             ids=[f"{a.name}-{way}" for a, way in cases])
    elif "adapter" in names:
        metafunc.parametrize("adapter", ADAPTERS, ids=[a.name for a in ADAPTERS])


@pytest.fixture
def spec() -> Any:
    """This module: the shared inputs (``spec.APP_CAP``, ``spec.SETTINGS``, ...)."""
    import sys

    return sys.modules[__name__]
