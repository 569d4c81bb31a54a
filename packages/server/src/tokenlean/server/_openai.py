"""OpenAI wire format: parse chat/completions requests, build responses and chunks."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ._engine import Finished
from ._errors import ApiError
from ._extension import EarlyRequest, parse_extension, response_field
from ._json import short
from ._validate import get_bool, get_int, get_number, get_stops, get_str, text_of

__all__ = ["Call", "chat_chunk", "chat_response", "completion_chunk", "completion_response",
           "parse_chat", "parse_completion", "usage", "usage_chunk"]

_ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}


@dataclass(frozen=True, slots=True)
class Call:
    """A parsed request: either ``messages`` (chat) or ``prompt`` (completions)."""

    model: str
    messages: list[dict[str, str]] | None
    prompt: str | list[int] | None
    max_tokens: int | None
    temperature: float
    top_p: float
    seed: int | None
    stop: tuple[str, ...]
    stream: bool
    include_usage: bool
    early: EarlyRequest = EarlyRequest()


def _common(body: Mapping[str, Any]) -> dict[str, Any]:
    n = get_int(body, "n", low=1)
    if n not in (None, 1):
        raise ApiError(400, "n must be 1: this server returns one choice per request", param="n")
    for name in ("presence_penalty", "frequency_penalty"):
        if get_number(body, name, 0.0, low=-2, high=2) != 0:
            raise ApiError(400, f"{name} is not supported by this server; leave it at 0",
                           param=name)
    if body.get("logprobs") or body.get("top_logprobs"):
        raise ApiError(400, "logprobs are not supported by this server", param="logprobs")
    if body.get("tools") or body.get("functions"):
        raise ApiError(400, "tools / function calling are not supported by this local model "
                            "server; send plain messages", param="tools")
    stream = get_bool(body, "stream")
    options = body.get("stream_options")
    if options is not None and not isinstance(options, dict):
        raise ApiError(400, "stream_options must be an object", param="stream_options")
    include_usage = bool(options and get_bool(options, "include_usage"))
    max_tokens = get_int(body, "max_completion_tokens", low=1)
    if max_tokens is None:
        max_tokens = get_int(body, "max_tokens", low=1)
    seed = get_int(body, "seed", low=-(2**63))
    return {
        "model": get_str(body, "model"),
        "max_tokens": max_tokens,
        "temperature": get_number(body, "temperature", 1.0, low=0, high=2),
        "top_p": get_number(body, "top_p", 1.0, low=0, high=1, low_open=True),
        "seed": None if seed is None else seed % (2**63),
        "stop": get_stops(body, "stop", most=4),
        "stream": stream,
        "include_usage": include_usage,
        "early": parse_extension(body),
    }


def parse_chat(body: Mapping[str, Any]) -> Call:
    raw = body.get("messages")
    if not isinstance(raw, list) or not raw:
        raise ApiError(400, "messages is required and must be a non-empty list", param="messages")
    messages = []
    for i, m in enumerate(raw):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str):
            raise ApiError(400, f"messages[{i}] must be an object with a 'role'",
                           param="messages")
        role = _ROLES.get(m["role"])
        if role is None:
            raise ApiError(400, f"messages[{i}].role {short(m['role'])} is not supported here "
                                f"(use system, developer, user or assistant)", param="messages")
        messages.append({"role": role, "content": text_of(m.get("content"), f"messages[{i}]")})
    return Call(messages=messages, prompt=None, **_common(body))


def parse_completion(body: Mapping[str, Any]) -> Call:
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], (str, list)):
        prompt = prompt[0]  # a batch of one
    if isinstance(prompt, list):
        if not prompt or not all(isinstance(t, int) and not isinstance(t, bool) and t >= 0
                                 for t in prompt):
            raise ApiError(400, "prompt must be a string, or a list of token ids (one prompt "
                                "per request)", param="prompt")
    elif not isinstance(prompt, str) or not prompt:
        raise ApiError(400, "prompt is required: a non-empty string", param="prompt")
    if body.get("echo") or body.get("suffix") or (body.get("best_of") or 1) != 1:
        raise ApiError(400, "echo, suffix and best_of are not supported by this server")
    return Call(messages=None, prompt=prompt, **_common(body))


def usage(finish: Finished) -> dict[str, Any]:
    return {"prompt_tokens": finish.prompt_tokens, "completion_tokens": finish.completion_tokens,
            "total_tokens": finish.prompt_tokens + finish.completion_tokens,
            "prompt_tokens_details": {"cached_tokens": finish.cached_tokens}}


def _finish_reason(finish: Finished) -> str:
    return "length" if finish.reason == "length" else "stop"


def chat_response(rid: str, model: str, created: int, text: str, finish: Finished
                  ) -> dict[str, Any]:
    return {"id": rid, "object": "chat.completion", "created": created, "model": model,
            "system_fingerprint": None,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text,
                                                 "refusal": None},
                         "logprobs": None, "finish_reason": _finish_reason(finish)}],
            "usage": usage(finish), **response_field(finish)}


def chat_chunk(rid: str, model: str, created: int, *, delta: dict[str, Any] | None = None,
               finish: Finished | None = None, with_usage: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {"id": rid, "object": "chat.completion.chunk", "created": created,
                           "model": model, "system_fingerprint": None}
    out["choices"] = [{"index": 0, "delta": delta or {}, "logprobs": None,
                       "finish_reason": None if finish is None else _finish_reason(finish)}]
    if with_usage:
        out["usage"] = None
    if finish is not None:
        out.update(response_field(finish))
    return out


def completion_response(rid: str, model: str, created: int, text: str, finish: Finished
                        ) -> dict[str, Any]:
    return {"id": rid, "object": "text_completion", "created": created, "model": model,
            "system_fingerprint": None,
            "choices": [{"index": 0, "text": text, "logprobs": None,
                         "finish_reason": _finish_reason(finish)}],
            "usage": usage(finish), **response_field(finish)}


def completion_chunk(rid: str, model: str, created: int, *, text: str = "",
                     finish: Finished | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"id": rid, "object": "text_completion", "created": created,
                           "model": model, "system_fingerprint": None}
    out["choices"] = [{"index": 0, "text": text, "logprobs": None,
                       "finish_reason": None if finish is None else _finish_reason(finish)}]
    if finish is not None:
        out.update(response_field(finish))
    return out


def usage_chunk(rid: str, model: str, created: int, obj: str, finish: Finished
                ) -> dict[str, Any]:
    """The last chunk of a stream with ``stream_options.include_usage``: no choices, usage."""
    return {"id": rid, "object": obj, "created": created, "model": model,
            "system_fingerprint": None, "choices": [], "usage": usage(finish)}
