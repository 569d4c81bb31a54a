"""The only place LlamaIndex LLM types meet tokenlean types."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from llama_index.core.base.llms.types import ChatMessage, MessageRole

from tokenlean.core import InvalidRequestError, Message, Usage

_ROLE = {MessageRole.SYSTEM: "system", MessageRole.DEVELOPER: "developer",
         MessageRole.USER: "user", MessageRole.ASSISTANT: "assistant", MessageRole.TOOL: "tool",
         MessageRole.FUNCTION: "tool", MessageRole.CHATBOT: "assistant",
         MessageRole.MODEL: "assistant"}


def from_li_message(message: ChatMessage) -> Message:
    role = _ROLE.get(message.role)
    if role is None:
        raise InvalidRequestError(f"LlamaIndex role {message.role!r} has no chat role")
    return Message(role=role, content=message.content or "",
                   tool_call_id=message.additional_kwargs.get("tool_call_id"))


def from_li_messages(messages: Sequence[ChatMessage]) -> tuple[Message, ...]:
    return tuple(from_li_message(m) for m in messages)


def to_li_message(message: Message) -> ChatMessage:
    extra = {"tool_call_id": message.tool_call_id} if message.tool_call_id else {}
    return ChatMessage(role=MessageRole(message.role), content=message.text,
                       additional_kwargs=extra)


def _get(obj: Any, key: str) -> Any:
    if isinstance(obj, Mapping):
        return obj.get(key)
    return getattr(obj, key, None)


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
