"""The only place LlamaIndex LLM types meet tokenlean types."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from llama_index.core.base.llms.types import ChatMessage, MessageRole, TextBlock, ToolCallBlock

from tokenlean.core import InvalidRequestError, Message, Usage

_ROLE = {MessageRole.SYSTEM: "system", MessageRole.DEVELOPER: "developer",
         MessageRole.USER: "user", MessageRole.ASSISTANT: "assistant", MessageRole.TOOL: "tool",
         MessageRole.FUNCTION: "tool", MessageRole.CHATBOT: "assistant",
         MessageRole.MODEL: "assistant"}
# how providers' raw answers name why they stopped, in tokenlean's (OpenAI's) names
_FINISH = {"max_tokens": "length", "end_turn": "stop", "stop_sequence": "stop",
           "tool_use": "tool_calls", "function_call": "tool_calls"}


def tool_calls_from_li(message: ChatMessage) -> tuple[dict[str, Any], ...]:
    """The tool calls of ``message`` (its ``ToolCallBlock`` blocks) as OpenAI tool calls."""
    return tuple(
        {"id": block.tool_call_id, "type": "function",
         "function": {"name": block.tool_name,
                      "arguments": block.tool_kwargs if isinstance(block.tool_kwargs, str)
                      else json.dumps(block.tool_kwargs)}}
        for block in message.blocks if isinstance(block, ToolCallBlock))


def from_li_message(message: ChatMessage) -> Message:
    role = _ROLE.get(message.role)
    if role is None:
        raise InvalidRequestError(f"LlamaIndex role {message.role!r} has no chat role")
    return Message(role=role, content=message.content or "",
                   tool_calls=tool_calls_from_li(message),
                   tool_call_id=message.additional_kwargs.get("tool_call_id"))


def from_li_messages(messages: Sequence[ChatMessage]) -> tuple[Message, ...]:
    return tuple(from_li_message(m) for m in messages)


def to_li_message(message: Message) -> ChatMessage:
    """``message`` as a LlamaIndex message: its tool calls as ``ToolCallBlock`` blocks (what
    LLMs read) and in ``additional_kwargs["tool_calls"]`` (what streaming programs look for)."""
    extra: dict[str, Any] = {"tool_call_id": message.tool_call_id} if message.tool_call_id else {}
    if message.tool_calls:
        extra["tool_calls"] = [dict(call) for call in message.tool_calls]
    blocks: list[Any] = [TextBlock(text=message.text)] if message.text else []
    for call in message.tool_calls:
        function = call.get("function") or {}
        arguments = function.get("arguments") or "{}"
        try:
            kwargs: dict[str, Any] | str = json.loads(arguments)
        except ValueError:  # a partial or invalid JSON argument string is kept as sent
            kwargs = arguments
        blocks.append(ToolCallBlock(tool_call_id=call.get("id"), tool_name=function.get("name", ""),
                                    tool_kwargs=kwargs))
    return ChatMessage(role=MessageRole(message.role), blocks=blocks, additional_kwargs=extra)


def to_li_messages(sent: Sequence[Message], originals: Sequence[ChatMessage]) -> list[ChatMessage]:
    """``sent`` as LlamaIndex messages, each one the layers left as it was being the app's
    own object (its extras intact); only rewritten ones are new."""
    return [originals[i] if i < len(originals) and from_li_message(originals[i]) == message
            else to_li_message(message) for i, message in enumerate(sent)]


def _get(obj: Any, key: str) -> Any:
    if isinstance(obj, Mapping):
        return obj.get(key)
    return getattr(obj, key, None)


def finish_reason_from_li(raw: Any, tool_calls: Sequence[Any]) -> str:
    """Why the answer stopped, from the provider's raw answer (OpenAI ``choices`` or
    Anthropic ``stop_reason``); ``tool_calls`` / ``stop`` when it does not say."""
    choices = _get(raw, "choices") if raw is not None else None
    reason = _get(choices[0], "finish_reason") if choices else None
    reason = reason or (_get(raw, "stop_reason") if raw is not None else None)
    if isinstance(reason, str) and reason:
        return _FINISH.get(reason, reason)
    return "tool_calls" if tool_calls else "stop"


def usage_from_li(raw: Any, additional_kwargs: Mapping[str, Any]) -> Usage | None:
    """Usage from a LlamaIndex response: the provider's raw ``usage`` (OpenAI /
    Anthropic shapes) or ``additional_kwargs`` token counts; None if absent."""
    usage = _get(raw, "usage") if raw is not None else None
    if usage is not None:
        data = usage if isinstance(usage, Mapping) else (
            usage.model_dump() if hasattr(usage, "model_dump") else vars(usage))
        if "prompt_tokens" in data:
            return Usage.from_openai(data)
        if "input_tokens" in data:
            return Usage.from_anthropic(data)
    if "prompt_tokens" in additional_kwargs:
        return Usage(input_tokens=int(additional_kwargs["prompt_tokens"] or 0),
                     output_tokens=int(additional_kwargs.get("completion_tokens") or 0))
    return None

