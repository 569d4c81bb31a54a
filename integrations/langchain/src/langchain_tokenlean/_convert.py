"""The only place LangChain types meet tokenlean types."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from langchain_core.messages import (
    AIMessage,
    AnyMessage,
    BaseMessage,
    ChatMessage,
    HumanMessage,
    InputTokenDetails,
    OutputTokenDetails,
    SystemMessage,
    ToolMessage,
    UsageMetadata,
)
from langchain_core.messages.tool import ToolCallChunk, tool_call_chunk
from langchain_core.outputs import ChatGeneration, Generation

from tokenlean.core import InvalidRequestError, Message, Usage

__all__ = [
    "from_lc_message",
    "from_lc_messages",
    "hit_id_from_lc",
    "to_lc_ai_message",
    "to_lc_message",
    "to_lc_messages",
    "to_lc_tool_call_chunks",
    "usage_from_lc",
    "usage_to_lc",
]

_ROLE_OF = {"human": "user", "ai": "assistant", "system": "system", "tool": "tool",
            "developer": "developer"}


def _content(message: BaseMessage) -> str | tuple[Mapping[str, Any], ...]:
    content = message.content
    if isinstance(content, str):
        return content
    parts = []
    for part in content:
        parts.append({"type": "text", "text": part} if isinstance(part, str) else dict(part))
    return tuple(parts)


def from_lc_message(message: BaseMessage) -> Message:
    role: str | None
    if isinstance(message, ChatMessage):
        role = message.role
    else:
        role = _ROLE_OF.get(message.type)
    if role is None:
        raise InvalidRequestError(f"LangChain message type {message.type!r} has no chat role")
    tool_calls: tuple[dict[str, Any], ...] = ()
    if isinstance(message, AIMessage) and message.tool_calls:
        tool_calls = tuple(
            {"id": c.get("id"), "type": "function",
             "function": {"name": c["name"], "arguments": json.dumps(c.get("args", {}))}}
            for c in message.tool_calls
        )
    return Message(
        role=role,
        content=_content(message),
        name=message.name,
        tool_calls=tool_calls,
        tool_call_id=getattr(message, "tool_call_id", None),
    )


def from_lc_messages(messages: Sequence[BaseMessage]) -> tuple[Message, ...]:
    return tuple(from_lc_message(m) for m in messages)


def _lc_content(message: Message) -> Any:
    return (message.content if isinstance(message.content, str)
            else [dict(p) for p in message.content])


def to_lc_message(message: Message) -> AnyMessage:
    if message.role in {"system", "developer"}:
        return SystemMessage(content=_lc_content(message), name=message.name)
    if message.role == "user":
        return HumanMessage(content=_lc_content(message), name=message.name)
    if message.role == "tool":
        return ToolMessage(content=_lc_content(message), tool_call_id=message.tool_call_id or "")
    return to_lc_ai_message(message)


def to_lc_messages(sent: Sequence[Message],
                   originals: Sequence[BaseMessage]) -> list[BaseMessage]:
    """``sent`` as LangChain messages, each one the layers left as it was being the app's
    own object (ids, metadata and provider extras intact); only rewritten ones are new."""
    out: list[BaseMessage] = []
    for i, message in enumerate(sent):
        original = originals[i] if i < len(originals) else None
        if original is not None and from_lc_message(original) == message:
            out.append(original)
        else:
            out.append(to_lc_message(message))
    return out


def to_lc_ai_message(message: Message) -> AIMessage:
    """An assistant message (and any other role :func:`to_lc_message` does not map)."""
    tool_calls = [
        {"id": c.get("id"), "name": c["function"]["name"],
         "args": json.loads(c["function"].get("arguments") or "{}")}
        for c in message.tool_calls
    ]
    return AIMessage(content=_lc_content(message), name=message.name, tool_calls=tool_calls)


def to_lc_tool_call_chunks(tool_calls: Sequence[Mapping[str, Any]]) -> list[ToolCallChunk]:
    """OpenAI tool calls as the chunks a streamed ``AIMessageChunk`` carries them in."""
    return [tool_call_chunk(name=c["function"]["name"], args=c["function"].get("arguments"),
                            id=c.get("id"), index=i) for i, c in enumerate(tool_calls)]


def usage_from_lc(usage_metadata: Mapping[str, Any] | None) -> Usage:
    """From LangChain ``usage_metadata`` (input tokens include cache reads/writes)."""
    if not usage_metadata:
        return Usage()
    details = usage_metadata.get("input_token_details") or {}
    out_details = usage_metadata.get("output_token_details") or {}
    return Usage(
        input_tokens=int(usage_metadata.get("input_tokens") or 0),
        output_tokens=int(usage_metadata.get("output_tokens") or 0),
        cache_read_tokens=int(details.get("cache_read") or 0),
        cache_write_tokens=int(details.get("cache_creation") or 0),
        reasoning_tokens=int(out_details.get("reasoning") or 0),
    )


def usage_to_lc(usage: Usage) -> UsageMetadata:
    """A LangChain ``UsageMetadata`` dict."""
    out = UsageMetadata(
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        total_tokens=usage.total_tokens,
    )
    if usage.cache_read_tokens or usage.cache_write_tokens:
        out["input_token_details"] = InputTokenDetails(cache_read=usage.cache_read_tokens,
                                                       cache_creation=usage.cache_write_tokens)
    if usage.reasoning_tokens:
        out["output_token_details"] = OutputTokenDetails(reasoning=usage.reasoning_tokens)
    return out



def hit_id_from_lc(answer: BaseMessage | Generation | str) -> str | None:
    """The cache hit id on what LangChain gave the app (``response_metadata["tokenlean"]
    ["cache_hit_id"]`` of a message, ``generation_info`` of a text generation), the id
    itself for a string, or None when the answer was no semantic hit under a bound."""
    if isinstance(answer, str):
        return answer
    if isinstance(answer, ChatGeneration):
        answer = answer.message
    if isinstance(answer, BaseMessage):
        meta: Any = answer.response_metadata
    elif isinstance(answer, Generation):
        meta = answer.generation_info
    else:
        raise InvalidRequestError(f"report_wrong_hit takes the AIMessage (or generation) "
                                  f"the hit answered with, or its cache_hit_id; got "
                                  f"{type(answer).__name__}")
    ours = meta.get("tokenlean") if isinstance(meta, Mapping) else None
    hit_id = ours.get("cache_hit_id") if isinstance(ours, Mapping) else None
    return hit_id if isinstance(hit_id, str) else None
