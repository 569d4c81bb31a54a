"""Small adapters that turn callables into a :class:`~tokenlean.core.pipeline.Provider`.

Integrations use :class:`FunctionProvider` to put the user's own model (a
LangChain chat model, a LlamaIndex LLM) behind the pipeline.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

from . import _openai_http as _wire
from .errors import BackendError, ConfigError
from .types import Chunk, Request, Response

__all__ = ["FunctionProvider", "OpenAICompatibleProvider"]


class FunctionProvider:
    """A provider from a sync function and, optionally, its async twin.

    Without ``afunc`` the async path runs ``func`` in a worker thread.
    """

    def __init__(self, func: Callable[[Request], Response], *,
                 afunc: Callable[[Request], Awaitable[Response]] | None = None,
                 name: str = "function") -> None:
        if not callable(func) or (afunc is not None and not callable(afunc)):
            raise ConfigError("FunctionProvider needs callables")
        self._func, self._afunc, self.name = func, afunc, name

    def complete(self, request: Request) -> Response:
        return self._func(request)

    async def acomplete(self, request: Request) -> Response:
        if self._afunc is not None:
            return await self._afunc(request)
        return await asyncio.to_thread(self._func, request)


class OpenAICompatibleProvider:
    """Any OpenAI-compatible ``/v1/chat/completions`` endpoint over HTTP:
    OpenAI itself, the tokenlean local server, vLLM, a gateway.

    Errors (connection, HTTP status, malformed answers) become
    :class:`~tokenlean.core.BackendError` naming ``name``.
    """

    def __init__(self, *, base_url: str, api_key: str | None = None, name: str = "openai",
                 timeout_s: float = 120.0) -> None:
        if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
            raise ConfigError(f"base_url must be an http(s) URL, got {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self.name = name
        self._headers = {"Authorization": f"Bearer {api_key or 'none'}"}
        self._timeout = timeout_s

    @property
    def _url(self) -> str:
        return f"{self.base_url}/chat/completions"

    def complete(self, request: Request) -> Response:
        import httpx

        try:
            reply = httpx.post(self._url, json=_wire.request_body(request, stream=False),
                               headers=self._headers, timeout=self._timeout)
        except httpx.HTTPError as exc:
            raise BackendError(f"cannot reach {self._url}: {exc}", backend=self.name) from exc
        _wire.check_status(reply.status_code, reply.text, backend=self.name)
        return _wire.parse_completion(reply.json(), backend=self.name)

    async def acomplete(self, request: Request) -> Response:
        import httpx

        try:
            async with httpx.AsyncClient(timeout=self._timeout) as client:
                reply = await client.post(self._url, headers=self._headers,
                                          json=_wire.request_body(request, stream=False))
        except httpx.HTTPError as exc:
            raise BackendError(f"cannot reach {self._url}: {exc}", backend=self.name) from exc
        _wire.check_status(reply.status_code, reply.text, backend=self.name)
        return _wire.parse_completion(reply.json(), backend=self.name)

    def stream(self, request: Request) -> Iterator[Chunk]:
        import httpx

        acc = _wire.StreamAccumulator(backend=self.name)
        try:
            with httpx.stream("POST", self._url, json=_wire.request_body(request, stream=True),
                              headers=self._headers, timeout=self._timeout) as reply:
                if reply.status_code >= 400:
                    _wire.check_status(reply.status_code, reply.read().decode(), backend=self.name)
                for line in reply.iter_lines():
                    delta = acc.feed(line)
                    if delta:
                        yield Chunk(text=delta)
        except httpx.HTTPError as exc:
            raise BackendError(f"stream from {self._url} failed: {exc}", backend=self.name) from exc
        yield Chunk(response=acc.response())

    async def astream(self, request: Request) -> AsyncIterator[Chunk]:
        import httpx

        acc = _wire.StreamAccumulator(backend=self.name)
        try:
            async with httpx.AsyncClient(timeout=self._timeout) as client:
                async with client.stream("POST", self._url, headers=self._headers,
                                         json=_wire.request_body(request, stream=True)) as reply:
                    if reply.status_code >= 400:
                        body = (await reply.aread()).decode()
                        _wire.check_status(reply.status_code, body, backend=self.name)
                    async for line in reply.aiter_lines():
                        delta = acc.feed(line)
                        if delta:
                            yield Chunk(text=delta)
        except httpx.HTTPError as exc:
            raise BackendError(f"stream from {self._url} failed: {exc}", backend=self.name) from exc
        yield Chunk(response=acc.response())
