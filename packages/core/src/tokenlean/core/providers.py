"""Small adapters that turn callables into a :class:`~tokenlean.core.pipeline.Provider`.

Integrations use :class:`FunctionProvider` to put the user's own model (a
LangChain chat model, a LlamaIndex LLM) behind the pipeline.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from .errors import ConfigError
from .types import Request, Response

__all__ = ["FunctionProvider"]


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
