"""compress_messages: chat-history compression as a real LangChain runnable."""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.prompts import ChatPromptTemplate, MessagesPlaceholder
from langchain_core.runnables import Runnable

from langchain_tokenlean import compress_messages
from tokenlean.core import ConfigError, InvalidRequestError, count_messages

DOCS = [
    "The Eiffel Tower is a wrought-iron lattice tower on the Champ de Mars in Paris. It is "
    "named after the engineer Gustave Eiffel, whose company designed and built the tower.",
    "The Amazon River in South America is the largest river by discharge volume of water in "
    "the world. The river system originates in the Andes mountains of Peru.",
    "Johann Sebastian Bach was a German composer of the late Baroque period. He is known for "
    "the Brandenburg Concertos. Bach was born in Eisenach in 1685 and died in Leipzig in 1750.",
    "Photosynthesis is a process used by plants to convert light energy into chemical energy. "
    "Photosynthesis is largely responsible for the oxygen content of the atmosphere.",
]


def _history() -> list[BaseMessage]:
    out: list[BaseMessage] = [SystemMessage("You are a helpful assistant.", id="s")]
    for k in range(8):
        out.append(HumanMessage(f"Tell me about topic {k}.", id=f"h{k}"))
        out.append(AIMessage(DOCS[k % len(DOCS)] + " " + DOCS[(k + 1) % len(DOCS)], id=f"a{k}",
                             response_metadata={"turn": k}))
    out.append(HumanMessage("And where was Bach born?", id="q"))
    return out


def _tokens(messages: list[BaseMessage]) -> int:
    from langchain_tokenlean._convert import from_lc_messages

    return count_messages(from_lc_messages(messages), model="gpt-4o").tokens


CALLS: list[list[BaseMessage]] = []


class Seen(BaseChatModel):
    """A chat model that records the messages it was called with (in CALLS)."""

    @property
    def _llm_type(self) -> str:
        return "seen"

    def _generate(self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None,
                  **kwargs: Any) -> ChatResult:
        CALLS.append(messages)
        return ChatResult(generations=[ChatGeneration(message=AIMessage("Eisenach."))])


def test_direct_call_compresses_old_turns_and_keeps_langchain_objects() -> None:
    history = _history()
    budget = int(_tokens(history) * 0.6)
    out = compress_messages(history, max_tokens=budget, keep_last=3)
    assert _tokens(out) <= budget
    assert out[0] is history[0] and out[-3:] == history[-3:]
    changed = [m for m in out if m not in history]
    assert changed and all(isinstance(m, AIMessage) for m in changed)
    by_id = {m.id: m for m in history}
    for m in changed:  # same object identity fields, shorter text
        assert m.response_metadata == by_id[m.id].response_metadata
        assert len(m.content) < len(by_id[m.id].content)
    assert "Eisenach" in " ".join(str(m.content) for m in out[:-1])


async def test_runnable_in_a_chain_sync_and_async() -> None:
    prompt = ChatPromptTemplate.from_messages([("system", "Be brief."),
                                               MessagesPlaceholder("history"),
                                               ("human", "{question}")])
    shrink = compress_messages(max_tokens=200, keep_last=2)
    assert isinstance(shrink, Runnable)
    model = Seen()
    CALLS.clear()
    chain = prompt | shrink | model
    inputs = {"history": _history()[1:-1], "question": "Where was Bach born?"}
    assert chain.invoke(inputs).content == "Eisenach."
    assert (await chain.ainvoke(inputs)).content == "Eisenach."
    first, second = CALLS
    assert [m.content for m in first] == [m.content for m in second]
    assert _tokens(first) <= 200 < _tokens(prompt.invoke(inputs).to_messages())
    assert first[0].content == "Be brief." and first[-1].content == "Where was Bach born?"


def test_tool_messages_survive_or_go_with_their_call() -> None:
    call = AIMessage("", tool_calls=[{"id": "t1", "name": "search", "args": {"q": "Bach"}}])
    history = [SystemMessage("sys"), HumanMessage("look it up"), call,
               ToolMessage(DOCS[2] * 3, tool_call_id="t1"), AIMessage(DOCS[2] * 2),
               HumanMessage("where was he born?")]
    out = compress_messages(history, max_tokens=_tokens(history) - 30, keep_last=1)
    assert out[2] is call and out[3] is history[3]
    tight = compress_messages(history, max_tokens=40, keep_last=1)
    assert [type(m) for m in tight] == [SystemMessage, HumanMessage]


def test_errors() -> None:
    with pytest.raises(ConfigError):
        compress_messages(max_tokens=0)
    with pytest.raises(InvalidRequestError):
        compress_messages("hello", max_tokens=100)
    with pytest.raises(InvalidRequestError):
        compress_messages([{"role": "user", "content": "x"}], max_tokens=100)
