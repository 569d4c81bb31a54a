"""lean() around real LangChain chat-model classes."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from langchain_core.language_models import BaseChatModel, GenericFakeChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.tools import tool
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import BaseModel

from langchain_tokenlean import LeanChatModel, lean
from tokenlean.core import LayerNote, Request, Response, SQLiteLedger


def fake(n: int = 10, text: str = "hello there friend") -> GenericFakeChatModel:
    usage = {"input_tokens": 12, "output_tokens": 3, "total_tokens": 15}
    return GenericFakeChatModel(messages=iter(
        [AIMessage(content=text, usage_metadata=usage)] * n))


class Shorten:
    """A layer that keeps the first 20 characters of user messages."""

    name = "shorten"

    def process(self, request: Request) -> Request:
        out = [m.with_text(m.text[:20]) if m.role == "user" else m for m in request.messages]
        return request.with_messages(out).with_note(LayerNote(layer=self.name,
                                                              quality={"retention": 0.9}))

    async def aprocess(self, request: Request) -> Request:
        return self.process(request)


class Recorder(BaseChatModel):
    """Answers with a tool call when tools are bound, and remembers what it saw."""

    seen: list[Any] = []

    @property
    def _llm_type(self) -> str:
        return "recorder"

    def bind_tools(self, tools: Any, **kwargs: Any) -> Any:
        return self.bind(tools=[convert_to_openai_tool(t) for t in tools], **kwargs)

    def _generate(self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None,
                  **kwargs: Any) -> ChatResult:
        self.seen.append((messages, kwargs))
        if kwargs.get("tools"):
            name = kwargs["tools"][0]["function"]["name"]
            msg = AIMessage(content="", tool_calls=[{"id": "c1", "name": name,
                                                     "args": {"a": 1, "b": 2}}])
        else:
            msg = AIMessage(content="plain")
        return ChatResult(generations=[ChatGeneration(message=msg)])


def test_invoke_runs_layers_and_records(tmp_path) -> None:
    ledger = SQLiteLedger(tmp_path / "l.sqlite")
    model = lean(fake(), layers=[Shorten()], ledger=ledger, model="gpt-4o")
    reply = model.invoke("please tell me everything you know about otters and beavers")
    assert reply.content == "hello there friend"
    assert reply.usage_metadata["output_tokens"] == 3
    meta = reply.response_metadata["tokenlean"]
    assert meta["saved_tokens"]["shorten"] > 0 and meta["cost_usd"] > 0
    (record,) = ledger.records()
    assert record.layers[0].quality == {"retention": 0.9}
    assert record.usage.input_tokens == 12


def test_batch_stream_and_async(tmp_path) -> None:
    model = lean(fake(), ledger=SQLiteLedger(tmp_path / "l.sqlite"), model="gpt-4o", preset="off")
    assert [m.content for m in model.batch(["a", "b"])] == ["hello there friend"] * 2
    chunks = list(model.stream("hi"))
    total = chunks[0]
    for c in chunks[1:]:
        total = total + c
    assert total.content == "hello there friend"

    async def go() -> tuple[str, str]:
        one = await model.ainvoke("hi")
        parts = [c async for c in model.astream("hi")]
        return str(one.content), "".join(str(p.content) for p in parts)

    assert asyncio.run(go()) == ("hello there friend", "hello there friend")


@tool
def adder(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


def test_tool_calls_pass_through() -> None:
    inner = Recorder()
    model = lean(inner, ledger=False, model="gpt-4o", preset="off").bind_tools([adder])
    reply = model.invoke("add 1 and 2")
    assert reply.tool_calls[0]["name"] == "adder"
    assert reply.tool_calls[0]["args"] == {"a": 1, "b": 2}
    _, kwargs = inner.seen[-1]
    assert kwargs["tools"][0]["function"]["name"] == "adder"


class Sum(BaseModel):
    """The sum of two integers."""

    a: int
    b: int


def test_structured_output_through_function_calling() -> None:
    inner = Recorder()
    structured = lean(inner, ledger=False, model="gpt-4o", preset="off").with_structured_output(Sum)
    assert structured.invoke("add 1 and 2") == Sum(a=1, b=2)


def test_callbacks_see_the_wrapper() -> None:
    from langchain_core.callbacks import BaseCallbackHandler

    class Spy(BaseCallbackHandler):
        def __init__(self) -> None:
            self.starts, self.ends = 0, 0

        def on_chat_model_start(self, *args: Any, **kwargs: Any) -> None:
            self.starts += 1

        def on_llm_end(self, *args: Any, **kwargs: Any) -> None:
            self.ends += 1

    spy = Spy()
    lean(fake(), ledger=False, model="gpt-4o", preset="off").invoke(
        "hi", config={"callbacks": [spy]})
    assert spy.starts >= 1 and spy.ends >= 1


def test_constructor_validates() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="inner"):
        LeanChatModel()
    from tokenlean.core import ConfigError

    with pytest.raises(ConfigError):
        lean(fake(), preset="fastest")
    with pytest.raises(ConfigError):
        lean(fake(), cache=3.5)


def test_messages_round_trip_to_inner() -> None:
    inner = Recorder()
    lean(inner, ledger=False, model="gpt-4o", preset="off").invoke(
        [HumanMessage(content="x", name="bob")])
    messages, _ = inner.seen[-1]
    assert messages[0].content == "x" and messages[0].name == "bob"
    assert json.dumps(messages[0].content)


class Answers:
    """A layer that records the request ``lean()`` built and answers it (no model call)."""

    name = "answers"

    def __init__(self) -> None:
        self.seen: list[Request] = []

    def process(self, request: Request) -> Response:
        self.seen.append(request)
        return Response(text="ok", cached=True)

    async def aprocess(self, request: Request) -> Response:
        return self.process(request)


def test_the_request_carries_an_anthropic_models_own_settings() -> None:
    from langchain_anthropic import ChatAnthropic

    layer = Answers()
    inner = ChatAnthropic(model="claude-3-5-haiku-latest", max_tokens=30, temperature=0.2,
                          top_k=5, stop_sequences=["END"], api_key="unused",
                          thinking={"type": "disabled"})
    lean(inner, layers=[layer], ledger=False).invoke("hi", stop=["STOP"])
    (seen,) = layer.seen
    assert (seen.model, seen.max_tokens, seen.temperature, seen.stop) == (
        "claude-3-5-haiku-latest", 30, 0.2, ("STOP",))
    assert seen.params["top_k"] == 5 and seen.params["thinking"] == {"type": "disabled"}
    assert not {"api_key", "max_retries", "default_request_timeout", "streaming"} & set(
        seen.params)


def test_bindings_and_model_kwargs_are_part_of_the_request() -> None:
    from langchain_openai import ChatOpenAI

    layer = Answers()
    inner = ChatOpenAI(model="gpt-4o", api_key="unused", temperature=0.5,
                       model_kwargs={"repetition_penalty": 1.1})
    lean(inner.bind(max_tokens=12, seed=3), layers=[layer], ledger=False).invoke("hi")
    (seen,) = layer.seen
    assert (seen.max_tokens, seen.seed, seen.temperature) == (12, 3, 0.5)
    assert seen.params == {"repetition_penalty": 1.1}


def test_the_wrappers_own_settings_override_and_reach_the_model() -> None:
    inner = Recorder()
    model = LeanChatModel(inner=inner, layers=[], ledger=None, model="gpt-4o", temperature=0.0,
                          max_tokens=50)
    model.invoke("hi")
    _, kwargs = inner.seen[-1]
    assert kwargs["temperature"] == 0.0 and kwargs["max_tokens"] == 50
