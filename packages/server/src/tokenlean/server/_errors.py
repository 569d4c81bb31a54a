"""HTTP errors in each provider's JSON shape.

OpenAI: ``{"error": {"message", "type", "param", "code"}}``.
Anthropic: ``{"type": "error", "error": {"type", "message"}}``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Literal

__all__ = ["ApiError", "Flavor", "error_body", "parse_json_body"]

Flavor = Literal["openai", "anthropic"]

_OPENAI_TYPES = {400: "invalid_request_error", 404: "invalid_request_error",
                 405: "invalid_request_error", 413: "invalid_request_error",
                 422: "invalid_request_error", 429: "rate_limit_error", 500: "server_error",
                 503: "server_error"}
_ANTHROPIC_TYPES = {400: "invalid_request_error", 404: "not_found_error",
                    405: "invalid_request_error", 413: "request_too_large",
                    422: "invalid_request_error", 429: "rate_limit_error", 500: "api_error",
                    503: "overloaded_error"}


class ApiError(Exception):
    """An error answered to the client (the server keeps serving)."""

    def __init__(self, status: int, message: str, *, param: str | None = None,
                 code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code


def error_body(flavor: Flavor, status: int, message: str, *, param: str | None = None,
               code: str | None = None) -> dict[str, Any]:
    if flavor == "anthropic":
        return {"type": "error",
                "error": {"type": _ANTHROPIC_TYPES.get(status, "api_error"), "message": message}}
    return {"error": {"message": message,
                      "type": _OPENAI_TYPES.get(status, "server_error" if status >= 500
                                                else "invalid_request_error"),
                      "param": param, "code": code}}


def parse_json_body(raw: bytes) -> Mapping[str, Any]:
    """The request body as a JSON object, or a 400 that says what is wrong with it."""
    if not raw.strip():
        raise ApiError(400, "the request body is empty; send a JSON object")
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"the request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise ApiError(400, f"the request body must be a JSON object, got {type(body).__name__}")
    return body
