"""Pure helpers for the OpenAI chat-completions wire format (shared by sync and async)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from .errors import BackendError
from .types import Request, Response, Usage


def request_body(request: Request, *, stream: bool) -> dict[str, Any]:
    body = request.to_openai()
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return body


def parse_completion(data: Mapping[str, Any], *, backend: str) -> Response:
    try:
        choice = data["choices"][0]
        message = choice.get("message") or {}
        return Response(
            text=message.get("content") or "",
            finish_reason=choice.get("finish_reason") or "stop",
            usage=Usage.from_openai(data.get("usage") or {}),
            model=data.get("model") or "",
            tool_calls=tuple(message.get("tool_calls") or ()),
            raw=data,
        )
    except (KeyError, IndexError, TypeError) as exc:
        raise BackendError(f"unexpected response shape: {exc!r}", backend=backend) from exc


def check_status(status: int, text: str, *, backend: str) -> None:
    if status < 400:
        return
    try:
        detail = json.loads(text).get("error", {})
        message = detail.get("message") if isinstance(detail, dict) else str(detail)
    except (ValueError, AttributeError):
        message = text[:500]
    raise BackendError(f"HTTP {status}: {message}", backend=backend, status=status)


class StreamAccumulator:
    """Turns SSE ``data:`` lines into text deltas and, at the end, a Response."""

    def __init__(self, *, backend: str) -> None:
        self.backend = backend
        self.parts: list[str] = []
        self.finish_reason = "stop"
        self.usage = Usage()
        self.model = ""
        self.done = False

    def feed(self, line: str) -> str:
        """The text delta in one SSE line ('' for none)."""
        if not line.startswith("data:"):
            return ""
        payload = line[5:].strip()
        if payload == "[DONE]":
            self.done = True
            return ""
        try:
            data = json.loads(payload)
        except ValueError as exc:
            raise BackendError(f"bad stream event {payload[:80]!r}", backend=self.backend) from exc
        if "error" in data:
            raise BackendError(str(data["error"]), backend=self.backend)
        self.model = data.get("model") or self.model
        if data.get("usage"):
            self.usage = Usage.from_openai(data["usage"])
        delta = ""
        for choice in data.get("choices") or ():
            delta += (choice.get("delta") or {}).get("content") or ""
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]
        self.parts.append(delta)
        return delta

    def response(self) -> Response:
        return Response(text="".join(self.parts), finish_reason=self.finish_reason,
                        usage=self.usage, model=self.model)
