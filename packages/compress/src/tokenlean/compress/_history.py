"""Chat-history compression: fit a long conversation into a token budget,
oldest turns first.

What is never touched: system/developer messages, the last ``keep_last``
messages (the current question and the turns it most likely refers to), and
tool plumbing (an assistant message that calls tools and the tool results
answering it are compressed never and dropped only together).

Two steps, each oldest first, each stopping as soon as the chat fits:

1. compress the text of older user/assistant messages question-aware (the
   question is the last user message) to ``1/ratio`` of their tokens;
2. drop whole older turns (a user message and the replies that follow it).

If the chat still does not fit, what is left is returned with ``fits=False``:
the pinned messages alone are over the budget, and only the caller can decide
what to give up.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tokenlean.core import ConfigError, InvalidRequestError, Message, count_messages
from tokenlean.core.tokens import REPLY_PRIMING_TOKENS

from ._compressor import Compressor, check_max_tokens, check_ratio

__all__ = ["HistoryCompressor", "HistoryResult"]

_PINNED_ROLES = frozenset({"system", "developer"})
_TEXT_ROLES = frozenset({"user", "assistant"})


@dataclass(frozen=True, slots=True)
class HistoryResult:
    """What :meth:`HistoryCompressor.compress` returns.

    ``messages`` is the new conversation; ``compressed`` and ``dropped`` are
    indices into the *input* list; ``source`` maps each output message to its
    input index. ``retention`` is the token-weighted quality proxy of the
    compressed messages (dropped turns count as 0; 1.0 when nothing changed).
    """

    messages: tuple[Message, ...]
    tokens_before: int
    tokens_after: int
    budget: int
    compressed: tuple[int, ...]
    dropped: tuple[int, ...]
    source: tuple[int, ...]
    retention: float
    fits: bool

    @property
    def changed(self) -> bool:
        return bool(self.compressed or self.dropped)


def _as_messages(messages: Any) -> tuple[Message, ...]:
    if isinstance(messages, (str, bytes, Mapping)) or not isinstance(messages, Sequence):
        raise InvalidRequestError("messages must be a list of chat messages "
                                  "(tokenlean Message objects or OpenAI-style dicts)")
    out = []
    for i, m in enumerate(messages):
        if isinstance(m, Message):
            out.append(m)
        elif isinstance(m, Mapping):
            out.append(Message.from_openai(m))
        else:
            raise InvalidRequestError(f"message {i} is a {type(m).__name__}, not a chat message")
    return tuple(out)


def _units(messages: Sequence[Message], movable: Sequence[int]) -> list[list[int]]:
    """Older messages grouped into droppable turns: a user message and what follows
    it up to the next user message (tool calls stay with their results)."""
    units: list[list[int]] = []
    for i in movable:
        if messages[i].role == "user" or not units:
            units.append([i])
        else:
            units[-1].append(i)
    return units


class HistoryCompressor:
    """Fit a conversation into ``max_tokens`` (OpenAI chat token count).

    Args:
        max_tokens: the budget for the whole message list.
        keep_last: how many final messages are never compressed or dropped.
        ratio: how hard each older message is compressed (> 1).
        min_tokens: older messages shorter than this are not worth compressing
            (they may still be dropped with their turn).
        drop: allow step 2 (dropping whole old turns).
        compressor: the :class:`Compressor` to use (default: the embedded method).
        model: whose tokenizer counts (default ``gpt-4o``).
    """

    def __init__(self, *, max_tokens: int, keep_last: int = 4, ratio: float = 4.0,
                 min_tokens: int = 40, drop: bool = True, compressor: Compressor | None = None,
                 model: str = "gpt-4o") -> None:
        checked = check_max_tokens(max_tokens)
        if checked is None:
            raise ConfigError("max_tokens is required: the token budget for the conversation")
        self.max_tokens: int = checked
        if isinstance(keep_last, bool) or not isinstance(keep_last, int) or keep_last < 1:
            raise ConfigError(f"keep_last must be a positive integer (the last user message is "
                              f"always kept), got {keep_last!r}")
        if isinstance(min_tokens, bool) or not isinstance(min_tokens, int) or min_tokens < 0:
            raise ConfigError(f"min_tokens must be a non-negative integer, got {min_tokens!r}")
        if compressor is not None and not isinstance(compressor, Compressor):
            raise ConfigError("compressor must be a tokenlean.compress.Compressor")
        self.keep_last = keep_last
        self.ratio = check_ratio(ratio)
        self.min_tokens = min_tokens
        self.drop = bool(drop)
        self.model = model
        self.compressor = compressor or Compressor(ratio=self.ratio, model=model)

    def __repr__(self) -> str:
        return (f"HistoryCompressor(max_tokens={self.max_tokens}, keep_last={self.keep_last}, "
                f"ratio={self.ratio})")

    def compress(self, messages: Sequence[Message | Mapping[str, Any]],
                 question: str | None = None) -> HistoryResult:
        """Compress ``messages``; ``question`` defaults to the last user message."""
        msgs = list(_as_messages(messages))
        if not msgs:
            raise InvalidRequestError("no messages to compress")
        budget = self.max_tokens
        # count_messages is a sum over messages plus the reply priming: count each
        # message once and keep the total up to date as messages change or go
        sizes = [count_messages([m], model=self.model).tokens - REPLY_PRIMING_TOKENS
                 for m in msgs]
        before = total = sum(sizes) + REPLY_PRIMING_TOKENS
        n = len(msgs)
        last_user = max((i for i, m in enumerate(msgs) if m.role == "user"), default=n)
        first_protected = min(max(0, n - self.keep_last), last_user)
        movable = [i for i in range(first_protected) if msgs[i].role not in _PINNED_ROLES]
        if question is None and last_user < n:
            question = msgs[last_user].text.strip() or None
        compressed: dict[int, tuple[int, float]] = {}  # index -> (tokens before, retention)
        dropped: list[int] = []
        if total > budget:
            for i in movable:  # step 1: oldest first
                m = msgs[i]
                if m.role not in _TEXT_ROLES or m.tool_calls or not m.text.strip():
                    continue
                result = self.compressor.compress(m.text, question, ratio=self.ratio)
                if result.passthrough or result.tokens_before < self.min_tokens:
                    continue
                msgs[i] = m.with_text(result.text)
                compressed[i] = (result.tokens_before, result.retention)
                new_size = count_messages([msgs[i]], model=self.model).tokens
                total += new_size - REPLY_PRIMING_TOKENS - sizes[i]
                sizes[i] = new_size - REPLY_PRIMING_TOKENS
                if total <= budget:
                    break
        if total > budget and self.drop:
            for unit in _units(msgs, movable):  # step 2: oldest turns first
                dropped.extend(unit)
                total -= sum(sizes[k] for k in unit)
                if total <= budget:
                    break
        gone = set(dropped)
        source = tuple(k for k in range(n) if k not in gone)
        weight = sum(t for t, _ in compressed.values()) + sum(
            sizes[k] + REPLY_PRIMING_TOKENS for k in dropped if k not in compressed)
        kept_share = sum(t * r for k, (t, r) in compressed.items() if k not in gone)
        retention = 1.0 if not weight else kept_share / weight
        return HistoryResult(
            messages=tuple(msgs[k] for k in source), tokens_before=before, tokens_after=total,
            budget=budget, compressed=tuple(sorted(k for k in compressed if k not in gone)),
            dropped=tuple(sorted(gone)), source=source, retention=round(retention, 4),
            fits=total <= budget)

    async def acompress(self, messages: Sequence[Message | Mapping[str, Any]],
                        question: str | None = None) -> HistoryResult:
        """Async twin of :meth:`compress` (CPU work in a worker thread)."""
        return await asyncio.to_thread(self.compress, messages, question)
