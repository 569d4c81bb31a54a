"""The only place LlamaIndex types meet tokenlean types."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from tokenlean.core import InvalidRequestError, Message, Usage

__all__ = ["messages_from_llama", "model_from_dict",
           "usage_from_response"]

_ROLES = {"system": "system", "developer": "developer", "user": "user",
          "assistant": "assistant", "tool": "tool", "function": "tool", "chatbot": "assistant",
          "model": "assistant"}


def _as_mapping(value: Any) -> Mapping[str, Any] | None:
    if value is None:
        return None
    if isinstance(value, Mapping):
        return value
    dump = getattr(value, "model_dump", None) or getattr(value, "dict", None)
    if callable(dump):
        try:
            out = dump()
        except Exception:  # a provider object that cannot dump itself
            return None
        return out if isinstance(out, Mapping) else None
    return None


def _usage_mapping(usage: Mapping[str, Any]) -> Usage | None:
    """One provider usage object, whichever provider's shape it has."""
    try:
        if "cache_read_input_tokens" in usage or "cache_creation_input_tokens" in usage:
            return Usage.from_anthropic(usage)  # Anthropic: input_tokens exclude cache
        if "prompt_token_count" in usage or "candidates_token_count" in usage:  # Gemini
            cached = int(usage.get("cached_content_token_count") or 0)
            thoughts = int(usage.get("thoughts_token_count") or 0)
            return Usage(input_tokens=int(usage.get("prompt_token_count") or 0),
                         output_tokens=int(usage.get("candidates_token_count") or 0) + thoughts,
                         cache_read_tokens=cached, reasoning_tokens=thoughts)
        if any(k in usage for k in ("prompt_tokens", "completion_tokens", "input_tokens",
                                    "output_tokens")):
            return Usage.from_openai(usage)
    except (InvalidRequestError, TypeError, ValueError):
        return None
    return None


def usage_from_response(response: Any) -> Usage | None:
    """Usage a LlamaIndex ``ChatResponse`` / ``CompletionResponse`` reports, or ``None``.

    Looked up where LlamaIndex integrations put it: ``raw["usage"]`` (OpenAI,
    Anthropic; a dict or a provider object), ``raw["usage_metadata"]``
    (Gemini), then ``additional_kwargs`` (``prompt_tokens`` /
    ``completion_tokens``, as llama-index-llms-openai copies them).
    """
    if response is None:
        return None
    raw = response.raw
    raw_map = _as_mapping(raw)
    candidates = []
    if raw_map is not None:
        candidates += [raw_map.get("usage"), raw_map.get("usage_metadata")]
    elif raw is not None:
        candidates += [getattr(raw, "usage", None), getattr(raw, "usage_metadata", None)]
    candidates.append(getattr(response, "additional_kwargs", None))
    for candidate in candidates:
        usage = _as_mapping(candidate)
        if usage:
            found = _usage_mapping(usage)
            if found is not None and found.total_tokens:
                return found
    return None


def model_from_dict(model_dict: Mapping[str, Any] | None) -> str | None:
    """The model name in a start event's ``model_dict`` (the LLM's ``LLMMetadata``:
    ``model_name``, whose default ``"unknown"`` means not known)."""
    data = model_dict or {}
    for key in ("model_name", "model", "model_id", "engine", "deployment_name"):
        value = data.get(key)
        if isinstance(value, str) and value and value != "unknown":
            return value
    return None


def messages_from_llama(messages: Sequence[Any]) -> tuple[Message, ...]:
    """LlamaIndex ``ChatMessage`` list -> tokenlean messages (text content only)."""
    out = []
    for message in messages:
        role = getattr(getattr(message, "role", None), "value", None) or str(
            getattr(message, "role", "user"))
        text = getattr(message, "content", None)
        out.append(Message(role=_ROLES.get(role, "user"), content=text if isinstance(
            text, str) else str(text or "")))
    return tuple(out)

