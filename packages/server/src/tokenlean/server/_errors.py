"""HTTP errors in each provider's JSON shape.

OpenAI: ``{"error": {"message", "type", "param", "code"}}``.
Anthropic: ``{"type": "error", "error": {"type", "message"}}``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

__all__ = ["ApiError", "Flavor", "error_body", "flavor_of"]

Flavor = Literal["openai", "anthropic"]

_OPENAI_TYPES = {400: "invalid_request_error", 401: "invalid_request_error",
                 403: "invalid_request_error", 404: "invalid_request_error",
                 405: "invalid_request_error", 413: "invalid_request_error",
                 415: "invalid_request_error", 422: "invalid_request_error",
                 429: "rate_limit_error", 500: "server_error", 503: "server_error"}
_ANTHROPIC_TYPES = {400: "invalid_request_error", 401: "authentication_error",
                    403: "permission_error", 404: "not_found_error",
                    405: "invalid_request_error", 413: "request_too_large",
                    415: "invalid_request_error", 422: "invalid_request_error",
                    429: "rate_limit_error", 500: "api_error", 503: "overloaded_error"}


def flavor_of(path: str, headers: Mapping[str, str]) -> Flavor:
    """Whose error shape a request gets: Anthropic's for /v1/messages, and for a path both
    APIs share (/v1/models) when the client sent an Anthropic header; OpenAI's otherwise."""
    if path.startswith("/v1/messages") or "anthropic-version" in headers:
        return "anthropic"
    return "openai"


class ApiError(Exception):
    """An error answered to the client (the server keeps serving)."""

    def __init__(self, status: int, message: str, *, param: str | None = None,
                 code: str | None = None, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code
        self.headers = dict(headers or {})


def error_body(flavor: Flavor, status: int, message: str, *, param: str | None = None,
               code: str | None = None) -> dict[str, Any]:
    if flavor == "anthropic":
        return {"type": "error",
                "error": {"type": _ANTHROPIC_TYPES.get(status, "api_error"), "message": message}}
    return {"error": {"message": message,
                      "type": _OPENAI_TYPES.get(status, "server_error" if status >= 500
                                                else "invalid_request_error"),
                      "param": param, "code": code}}
