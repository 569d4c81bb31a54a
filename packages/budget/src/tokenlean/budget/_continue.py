"""Truncation safety: continue an answer that stopped on ``max_tokens``.

:class:`ContinuingProvider` wraps any provider. When a response ends with
``finish_reason="length"`` it asks the model to continue (the partial answer
as an assistant message, then ``continue_prompt``), at most
``max_continuations`` times, and returns one response: the texts joined, the
usages summed, ``finish_reason`` of the last part (still ``"length"`` when the
bound ran out, so the ledger records the truncation) and
``raw={"tokenlean_continuation": {...}}`` saying how many parts there were.

With a :class:`BudgetLayer` (``budget=``) every continuation is reserved and
settled as a call of its own, and a continuation that does not fit the
budget is not made (the truncated answer is returned, ``finish_reason``
``"length"``). The layer then settles the original call with the first
part's usage only, so nothing is counted twice.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

from tokenlean.core import BudgetExceeded, ConfigError, Message, Provider, Request, Response, Usage

from ._layer import CONTINUATION_KEY, BudgetLayer

__all__ = ["CONTINUATION_KEY", "ContinuingProvider", "first_usage"]


def _continuation_request(original: Request, text: str, prompt: str) -> Request:
    return replace(original, messages=(*original.messages, Message(role="assistant", content=text),
                                       Message(role="user", content=prompt)))


def _merge(first: Response, parts: list[Response], stopped_by_budget: bool) -> Response:
    usage = first.usage
    for part in parts:
        usage = usage + part.usage
    last = parts[-1] if parts else first
    return replace(last, text="".join(p.text for p in (first, *parts)), usage=usage,
                   raw={CONTINUATION_KEY: {"parts": 1 + len(parts),
                                           "first_usage": first.usage,
                                           "stopped_by_budget": stopped_by_budget},
                        "responses": [first.raw, *(p.raw for p in parts)]})


class ContinuingProvider:
    """A provider that continues answers cut by ``max_tokens`` (bounded)."""

    def __init__(self, provider: Provider, *, max_continuations: int = 2,
                 continue_prompt: str = "Continue exactly where you stopped, without repeating.",
                 budget: BudgetLayer | None = None) -> None:
        if not isinstance(provider, Provider):
            raise ConfigError("ContinuingProvider wraps a provider (name, complete, acomplete)")
        if isinstance(max_continuations, bool) or not isinstance(max_continuations, int) \
                or max_continuations < 0:
            raise ConfigError("max_continuations must be a non-negative integer")
        self.provider = provider
        self.max_continuations = max_continuations
        self.continue_prompt = continue_prompt
        self.budget = budget
        self.name = f"{provider.name}+continue"

    def _next(self, request: Request, text: str) -> Request | None:
        """The continuation request, reserved on the budget; None if it does not fit."""
        follow = _continuation_request(request, text, self.continue_prompt)
        if self.budget is None:
            return follow
        try:
            return self.budget.reserve(follow, adjust=False)
        except BudgetExceeded:
            return None

    def complete(self, request: Request) -> Response:
        first = self.provider.complete(request)
        parts: list[Response] = []
        text, stopped = first.text, False
        last = first
        while last.finish_reason == "length" and len(parts) < self.max_continuations:
            follow = self._next(request, text)
            if follow is None:
                stopped = True
                break
            try:
                last = self.provider.complete(follow)
            except BaseException as exc:
                if self.budget is not None:
                    self.budget.cancel(follow, exc)
                raise
            if self.budget is not None:
                self.budget.settle(follow, last)
            parts.append(last)
            text += last.text
        return first if not parts and not stopped else _merge(first, parts, stopped)

    async def acomplete(self, request: Request) -> Response:
        first = await self.provider.acomplete(request)
        parts: list[Response] = []
        text, stopped = first.text, False
        last = first
        while last.finish_reason == "length" and len(parts) < self.max_continuations:
            follow = await asyncio.to_thread(self._next, request, text)
            if follow is None:
                stopped = True
                break
            try:
                last = await self.provider.acomplete(follow)
            except BaseException as exc:
                if self.budget is not None:
                    await asyncio.to_thread(self.budget.cancel, follow, exc)
                raise
            if self.budget is not None:
                await asyncio.to_thread(self.budget.settle, follow, last)
            parts.append(last)
            text += last.text
        return first if not parts and not stopped else _merge(first, parts, stopped)


def first_usage(response: Response) -> Usage | None:
    """The first part's usage of a continued response (None if not continued)."""
    raw: Any = response.raw
    if isinstance(raw, dict) and isinstance(raw.get(CONTINUATION_KEY), dict):
        usage = raw[CONTINUATION_KEY].get("first_usage")
        return usage if isinstance(usage, Usage) else None
    return None
