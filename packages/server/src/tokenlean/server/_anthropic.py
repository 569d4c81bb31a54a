"""Anthropic Messages wire format: parse ``/v1/messages`` requests, build responses and events."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ._engine import Finished
from ._errors import ApiError
from ._extension import parse_extension, response_field
from ._openai import Call
from ._validate import get_bool, get_int, get_number, get_stops, get_str, text_of

__all__ = ["message_delta", "message_response", "parse_count_tokens", "parse_messages",
           "stop_reason", "usage"]


def _messages(body: Mapping[str, Any]) -> list[dict[str, str]]:
    raw = body.get("messages")
    if not isinstance(raw, list) or not raw:
        raise ApiError(400, "messages: field required, a non-empty list", param="messages")
    out: list[dict[str, str]] = []
    system = body.get("system")
    if system is not None:
        text = text_of(system, "system")
        if text:
            out.append({"role": "system", "content": text})
    for i, m in enumerate(raw):
        if not isinstance(m, dict) or m.get("role") not in ("user", "assistant"):
            raise ApiError(400, f"messages.{i}.role must be 'user' or 'assistant' (put the system "
                                f"prompt in the top-level 'system' field)", param="messages")
        out.append({"role": m["role"], "content": text_of(m.get("content"), f"messages.{i}")})
    return out


def parse_messages(body: Mapping[str, Any]) -> Call:
    max_tokens = get_int(body, "max_tokens", low=1)
    if max_tokens is None:
        raise ApiError(400, "max_tokens: field required (an integer >= 1)", param="max_tokens")
    if body.get("tools"):
        raise ApiError(400, "tools are not supported by this local model server", param="tools")
    get_int(body, "top_k", low=0)  # accepted and ignored: sampling uses temperature and top_p
    return Call(
        model=get_str(body, "model"), messages=_messages(body), prompt=None,
        max_tokens=max_tokens,
        temperature=get_number(body, "temperature", 1.0, low=0, high=1),
        top_p=get_number(body, "top_p", 1.0, low=0, high=1, low_open=True),
        seed=None, stop=get_stops(body, "stop_sequences", most=16),
        stream=get_bool(body, "stream"), include_usage=True, early=parse_extension(body),
    )


def parse_count_tokens(body: Mapping[str, Any]) -> tuple[str, list[dict[str, str]]]:
    return get_str(body, "model"), _messages(body)


def stop_reason(finish: Finished) -> str:
    if finish.reason == "length":
        return "max_tokens"
    return "stop_sequence" if finish.stop_sequence is not None else "end_turn"


def usage(finish: Finished) -> dict[str, Any]:
    """Anthropic counts cache reads apart from ``input_tokens``."""
    return {"input_tokens": finish.prompt_tokens - finish.cached_tokens,
            "output_tokens": finish.completion_tokens,
            "cache_read_input_tokens": finish.cached_tokens,
            "cache_creation_input_tokens": 0}


def message_response(rid: str, model: str, text: str, finish: Finished) -> dict[str, Any]:
    return {"id": rid, "type": "message", "role": "assistant", "model": model,
            "content": [{"type": "text", "text": text}],
            "stop_reason": stop_reason(finish), "stop_sequence": finish.stop_sequence,
            "usage": usage(finish), **response_field(finish)}


def message_delta(finish: Finished) -> dict[str, Any]:
    """The ``message_delta`` event that ends a stream."""
    return {"type": "message_delta",
            "delta": {"stop_reason": stop_reason(finish), "stop_sequence": finish.stop_sequence},
            "usage": usage(finish), **response_field(finish)}
