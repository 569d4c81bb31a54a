"""``CompressLayer``: the compressor as a pipeline layer."""

from __future__ import annotations

import asyncio
import hashlib
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

from tokenlean.core import ConfigError, LayerNote, Message, Request, count_tokens

from ._compressor import Compressor, CompressResult, Method
from ._history import HistoryCompressor, HistoryResult

__all__ = ["CompressLayer"]

_ROLES = frozenset({"system", "developer", "user", "assistant", "tool"})
#: how many compressed messages the layer remembers for ``stable_prefix``
STABLE_PREFIX_ENTRIES = 1024


@dataclass(frozen=True, slots=True)
class _Sent:
    """What a message was sent as once: its compressed text and that compression's figures."""

    text: str
    tokens_before: int
    tokens_after: int
    retention: float


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

    ``stable_prefix`` (on by default) keeps a conversation's beginning the same
    from one turn to the next, so a provider's prompt cache can still read it:
    in a request that holds an assistant or tool turn, a message before the last
    user message that this layer compressed before (same tenant, role and text)
    is sent as it was sent then, not compressed again for the new question. A
    question-aware compression of the system prompt would otherwise differ every
    turn and break the prefix the provider discounts (see the traffic benchmark).
    A single-turn request is always compressed for its own question. The layer
    remembers the last ``STABLE_PREFIX_ENTRIES`` compressed messages.
    """

    name = "compress"

    def __init__(self, *, compressor: Compressor | None = None, method: Method = "tokenlean",
                 ratio: float | None = None, max_tokens: int | None = None,
                 roles: Sequence[str] = ("system", "user", "tool"), min_tokens: int = 300,
                 model: str | None = None, history: HistoryCompressor | None = None,
                 stable_prefix: bool = True) -> None:
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
        if not isinstance(stable_prefix, bool):
            raise ConfigError(f"stable_prefix must be True or False, got {stable_prefix!r}")
        self.stable_prefix = stable_prefix
        self._sent: OrderedDict[tuple[str, str, str], _Sent] = OrderedDict()
        self._sent_lock = threading.Lock()

    # ---- pure helpers shared by process / aprocess -------------------------

    def _plan(self, request: Request) -> tuple[list[_Job], str | None]:
        model = self._model or request.model
        last_user = _last_user(request.messages)
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

    @staticmethod
    def _key(request: Request, message: Message) -> tuple[str, str, str]:
        digest = hashlib.sha256(message.text.encode("utf-8", "surrogatepass")).hexdigest()
        return request.tenant, message.role, digest

    def _recall(self, request: Request,
                jobs: list[_Job]) -> tuple[list[_Job], dict[int, _Sent]]:
        """``stable_prefix``: the jobs left to compress, and the earlier messages of a
        conversation that are sent as this layer sent them before."""
        last_user = _last_user(request.messages)
        if not self.stable_prefix or last_user is None:
            return jobs, {}
        if not any(m.role in ("assistant", "tool") for m in request.messages[:last_user]):
            return jobs, {}  # single-turn: compressed for its own question
        recalled: dict[int, _Sent] = {}
        with self._sent_lock:
            for job in jobs:
                if job.index < last_user:
                    sent = self._sent.get(self._key(request, request.messages[job.index]))
                    if sent is not None:
                        recalled[job.index] = sent
        return [job for job in jobs if job.index not in recalled], recalled

    def _remember(self, request: Request, index: int, sent: _Sent) -> None:
        if not self.stable_prefix:
            return
        key = self._key(request, request.messages[index])
        with self._sent_lock:
            self._sent[key] = sent
            self._sent.move_to_end(key)
            while len(self._sent) > STABLE_PREFIX_ENTRIES:
                self._sent.popitem(last=False)

    def _apply(self, request: Request, jobs: list[_Job], results: list[CompressResult],
               recalled: dict[int, _Sent]) -> Request:
        if not jobs and not recalled:
            return request
        messages: list[Message] = list(request.messages)
        sent_now: dict[int, _Sent] = {}
        for job, result in zip(jobs, results, strict=True):
            if result.passthrough:
                continue
            head = result.text
            joined = head + ("\n\n" if head and job.tail and not job.tail.startswith("\n") else "")
            sent_now[job.index] = _Sent(joined + job.tail, result.tokens_before,
                                        result.tokens_after, result.retention)
            self._remember(request, job.index, sent_now[job.index])
        figures = [(r.tokens_before, r.tokens_after, r.retention) for r in results]
        figures += [(s.tokens_before, s.tokens_after, s.retention) for s in recalled.values()]
        for index, sent in {**sent_now, **recalled}.items():
            messages[index] = messages[index].with_text(sent.text)
        weight = sum(before for before, _, _ in figures) or 1
        retention = sum(kept * before for before, _, kept in figures) / weight
        detail: dict[str, object] = {
            "method": self.compressor.method, "messages": len(jobs) + len(recalled),
            "tokens_before": sum(before for before, _, _ in figures),
            "tokens_after": sum(after for _, after, _ in figures)}
        if recalled:
            detail["reused_for_stable_prefix"] = len(recalled)
        note = LayerNote(layer=self.name, quality={"retention": round(retention, 4)},
                         detail=detail)
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
        jobs, recalled = self._recall(request, jobs)
        results = [self.compressor.compress(job.head, question) for job in jobs]
        return self._apply(request, jobs, results, recalled)

    async def aprocess(self, request: Request) -> Request:
        if self.history is not None:
            request = self._apply_history(request, await self.history.acompress(
                request.messages, _question_of(request)))
        jobs, question = self._plan(request)
        jobs, recalled = self._recall(request, jobs)
        results = list(await asyncio.gather(
            *(self.compressor.acompress(job.head, question) for job in jobs)))
        return self._apply(request, jobs, results, recalled)

    def __repr__(self) -> str:
        return f"CompressLayer({self.compressor!r}, roles={sorted(self.roles)})"


def _last_user(messages: Sequence[Message]) -> int | None:
    """The index of the last user message (None: there is none)."""
    return max((i for i, m in enumerate(messages) if m.role == "user"), default=None)


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
