"""``CompressLayer``: the compressor as a pipeline layer."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

from tokenlean.core import ConfigError, LayerNote, Message, Request, count_tokens

from ._compressor import Compressor, CompressResult, Method
from ._history import HistoryCompressor, HistoryResult

__all__ = ["CompressLayer"]

_ROLES = frozenset({"system", "developer", "user", "assistant", "tool"})


@dataclass(frozen=True, slots=True)
class _Job:
    index: int     # message index
    head: str      # the part to compress
    tail: str      # the part kept verbatim (the question at the end of the last user turn)


class CompressLayer:
    """Compresses the context-bearing messages of a request.

    A message is compressed when its role is in ``roles`` and its text has at
    least ``min_tokens`` tokens. The question is ``request.metadata["question"]``
    when given, else the last paragraph of the last user message; that paragraph
    is never compressed (the rest of that message may be, e.g. a stuffed RAG
    prompt "context … question"). Non-text content parts are kept. The pipeline
    measures the input tokens saved; the layer adds a note with the quality proxy
    ``{"retention": …}`` (the token-weighted estimate over compressed messages).

    ``history`` (a :class:`HistoryCompressor`) first fits a long conversation
    into its budget, oldest turns first; its retention is noted as
    ``history_retention``.
    """

    name = "compress"

    def __init__(self, *, compressor: Compressor | None = None, method: Method = "tokenlean",
                 ratio: float | None = None, max_tokens: int | None = None,
                 roles: Sequence[str] = ("system", "user", "tool"), min_tokens: int = 300,
                 model: str | None = None, history: HistoryCompressor | None = None) -> None:
        if history is not None and not isinstance(history, HistoryCompressor):
            raise ConfigError("history must be a tokenlean.compress.HistoryCompressor")
        self.history = history
        if compressor is not None and not isinstance(compressor, Compressor):
            raise ConfigError("compressor must be a tokenlean.compress.Compressor")
        if compressor is not None and (ratio is not None or max_tokens is not None):
            raise ConfigError("give either compressor or ratio/max_tokens, not both")
        self.compressor = compressor or Compressor(method=method, ratio=ratio,
                                                   max_tokens=max_tokens,
                                                   model=model or "gpt-4o")
        if isinstance(roles, str) or not set(roles) <= _ROLES or not roles:
            raise ConfigError(f"roles must be a non-empty list of {sorted(_ROLES)}, got {roles!r}")
        self.roles = frozenset(roles)
        if isinstance(min_tokens, bool) or not isinstance(min_tokens, int) or min_tokens < 0:
            raise ConfigError(f"min_tokens must be a non-negative integer, got {min_tokens!r}")
        self.min_tokens = min_tokens
        self._model = model

    # ---- pure helpers shared by process / aprocess -------------------------

    def _plan(self, request: Request) -> tuple[list[_Job], str | None]:
        model = self._model or request.model
        last_user = max((i for i, m in enumerate(request.messages) if m.role == "user"),
                        default=None)
        question = _question_of(request)
        jobs: list[_Job] = []
        for i, message in enumerate(request.messages):
            if message.role not in self.roles:
                continue
            text = message.text
            head, tail = text, ""
            if i == last_user:
                cut = _question_cut(text)
                head, tail = text[:cut], text[cut:]
                if question is None:
                    question = tail.strip() or None
            if head.strip() and count_tokens(head, model=model).tokens >= self.min_tokens:
                jobs.append(_Job(i, head, tail))
        return jobs, question

    def _apply(self, request: Request, jobs: list[_Job],
               results: list[CompressResult]) -> Request:
        if not jobs:
            return request
        messages: list[Message] = list(request.messages)
        for job, result in zip(jobs, results, strict=True):
            if result.passthrough:
                continue
            head = result.text
            joined = head + ("\n\n" if head and job.tail and not job.tail.startswith("\n") else "")
            messages[job.index] = messages[job.index].with_text(joined + job.tail)
        weight = sum(r.tokens_before for r in results) or 1
        retention = sum(r.retention * r.tokens_before for r in results) / weight
        note = LayerNote(
            layer=self.name,
            quality={"retention": round(retention, 4)},
            detail={"method": self.compressor.method, "messages": len(jobs),
                    "tokens_before": sum(r.tokens_before for r in results),
                    "tokens_after": sum(r.tokens_after for r in results)},
        )
        return request.with_messages(messages).with_note(note)

    def _apply_history(self, request: Request, result: HistoryResult | None) -> Request:
        if result is None or not result.changed:
            return request
        note = LayerNote(
            layer=self.name, quality={"history_retention": result.retention},
            detail={"history_compressed": len(result.compressed),
                    "history_dropped": len(result.dropped), "history_fits": result.fits})
        return request.with_messages(result.messages).with_note(note)

    # ---- the layer contract -------------------------------------------------

    def process(self, request: Request) -> Request:
        if self.history is not None:
            request = self._apply_history(request, self.history.compress(
                request.messages, _question_of(request)))
        jobs, question = self._plan(request)
        results = [self.compressor.compress(job.head, question) for job in jobs]
        return self._apply(request, jobs, results)

    async def aprocess(self, request: Request) -> Request:
        if self.history is not None:
            request = self._apply_history(request, await self.history.acompress(
                request.messages, _question_of(request)))
        jobs, question = self._plan(request)
        results = list(await asyncio.gather(
            *(self.compressor.acompress(job.head, question) for job in jobs)))
        return self._apply(request, jobs, results)

    def __repr__(self) -> str:
        return f"CompressLayer({self.compressor!r}, roles={sorted(self.roles)})"


def _question_of(request: Request) -> str | None:
    question = request.metadata.get("question")
    return question if isinstance(question, str) and question.strip() else None


def _question_cut(text: str) -> int:
    """Where the last paragraph (the question) of a user message starts."""
    stripped = text.rstrip()
    for sep in ("\n\n", "\n"):
        at = stripped.rfind(sep)
        if at >= 0:
            return at + len(sep)
    return 0
