"""The ASGI layer in front of the routes: admission, body limits, and no stray 500s.

Before a route sees a request, :class:`Guard` checks the Host and Origin
headers, the API key (every path but ``/health``; it puts the request's tenant in
``scope["tokenlean.tenant"]``), and for a POST the media type (JSON only: a
cross-origin ``text/plain`` form post never reaches a handler) and the declared
``Content-Length``. A refused request gets its API's error shape and the body is
never read. :func:`read_body` enforces the same byte limit while a body streams
in (chunked uploads declare no length).

An exception a handler did not turn into an :class:`ApiError` becomes one JSON
500 here (logged with its traceback), so uvicorn never closes the client's
keep-alive connection over it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from fastapi import Request
from fastapi.responses import JSONResponse
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ._access import Access
from ._errors import ApiError, error_body, flavor_of

__all__ = ["TENANT_SCOPE_KEY", "Guard", "error_response", "read_body"]

TENANT_SCOPE_KEY = "tokenlean.tenant"
_LOG = logging.getLogger("tokenlean.server")
_JSON_TYPES = ("application/json",)


def error_response(path: str, headers: Headers, exc: ApiError) -> JSONResponse:
    return JSONResponse(error_body(flavor_of(path, headers), exc.status, exc.message,
                                   param=exc.param, code=exc.code),
                        status_code=exc.status, headers=exc.headers or None)


def _too_large(limit: int) -> ApiError:
    return ApiError(413, f"the request body is larger than this server's limit of {limit} "
                         f"bytes (tokenlean serve --max-body-bytes)",
                    code="request_too_large", headers={"connection": "close"})


def _check_json(headers: Headers) -> None:
    media, _, params = headers.get("content-type", "").partition(";")
    media = media.strip().lower()
    if media not in _JSON_TYPES and not (media.startswith("application/")
                                         and media.endswith("+json")):
        raise ApiError(415, f"send the body as JSON with 'content-type: application/json' "
                            f"(got {media[:60] or 'no content type'!r})",
                       code="unsupported_media_type")
    for param in params.split(";"):
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset" \
                and value.strip().strip('"').lower() not in ("utf-8", "utf8"):
            raise ApiError(415, "JSON bodies are UTF-8: send 'content-type: application/json' "
                                "with charset=utf-8 or no charset",
                           code="unsupported_media_type")


def _check_length(headers: Headers, limit: int) -> None:
    declared = headers.get("content-length")
    if declared is not None and declared.strip().isdigit() and int(declared) > limit:
        raise _too_large(limit)


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused with a 413 as soon as more than ``limit`` bytes arrive."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


class Guard:
    """Pure ASGI middleware: see the module docstring."""

    def __init__(self, app: ASGIApp, *, access: Access, max_body_bytes: int,
                 count: Callable[[str, int], None]) -> None:
        self.app, self.access, self.max_body_bytes, self.count = app, access, max_body_bytes, count
        self._ignored_tenant_header = False

    def admit(self, scope: Scope, headers: Headers) -> None:
        self.access.check_host(headers.get("host"))
        self.access.check_origin(headers.get("origin"))
        method, path = scope["method"], scope["path"]
        if method == "OPTIONS" and "origin" in headers:
            return  # a CORS preflight from an allowed origin: CORSMiddleware answers it
        if path != "/health":
            scope[TENANT_SCOPE_KEY] = self.access.tenant(headers)
            if not self.access.trust_tenant_header and self.access.tenant_header in headers \
                    and not self._ignored_tenant_header:
                self._ignored_tenant_header = True
                _LOG.warning("ignoring the %s request header: the prefix-cache tenant comes "
                             "from the API key (start with --trust-tenant-header to honour it)",
                             self.access.tenant_header)
        if method == "POST":
            _check_json(headers)
            _check_length(headers, self.max_body_bytes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        try:
            self.admit(scope, headers)
        except ApiError as exc:
            await self.refuse(scope, receive, send, headers, exc)
            return
        started = False

        async def tracked(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracked)
        except Exception as exc:
            if started:
                raise
            _LOG.exception("internal error answering %s %s", scope["method"], scope["path"])
            await self.refuse(scope, receive, send, headers, ApiError(
                500, f"internal server error: {type(exc).__name__}"))

    async def refuse(self, scope: Scope, receive: Receive, send: Send, headers: Headers,
                     exc: ApiError) -> None:
        self.count(scope["path"], exc.status)
        await error_response(scope["path"], headers, exc)(scope, receive, send)
