"""``compress_messages``: chat-history compression as a LangChain runnable.

Like langchain-core's ``trim_messages``, but it compresses old turns
question-aware before it drops any (tokenlean layer 1,
:class:`tokenlean.compress.HistoryCompressor`)::

    from langchain_tokenlean import compress_messages

    shrink = compress_messages(max_tokens=2_000, keep_last=4)
    chain = prompt | shrink | model          # a runnable over message lists
    shorter = compress_messages(history, max_tokens=2_000)   # or call it directly

Messages come back as the same LangChain objects (ids, names, metadata kept);
a compressed one is a copy with new text. System messages, the last
``keep_last`` messages and tool calls with their results are never
compressed; old turns are dropped whole, oldest first, only when compression
is not enough.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from langchain_core.messages import BaseMessage
from langchain_core.prompt_values import PromptValue
from langchain_core.runnables import Runnable, RunnableLambda

from tokenlean.compress import Compressor, HistoryCompressor, HistoryResult
from tokenlean.core import InvalidRequestError

from ._convert import from_lc_messages, to_lc_message

__all__ = ["compress_messages"]


def _lc_messages(messages: Any) -> list[BaseMessage]:
    if isinstance(messages, PromptValue):
        return messages.to_messages()
    if isinstance(messages, (str, bytes)) or not isinstance(messages, Sequence):
        raise InvalidRequestError("compress_messages takes a list of LangChain messages or a "
                                  f"PromptValue, got {type(messages).__name__}")
    bad = [type(m).__name__ for m in messages if not isinstance(m, BaseMessage)]
    if bad:
        raise InvalidRequestError(f"compress_messages takes LangChain messages, got {bad[0]}")
    return list(messages)


def _rebuild(original: list[BaseMessage], result: HistoryResult) -> list[BaseMessage]:
    out = []
    for new, src in zip(result.messages, result.source, strict=True):
        message = original[src]
        if src in result.compressed:
            message = message.model_copy(update={"content": to_lc_message(new).content})
        out.append(message)
    return out


def compress_messages(messages: Sequence[BaseMessage] | PromptValue | None = None, *,
                      max_tokens: int, keep_last: int = 4, ratio: float = 4.0,
                      drop: bool = True, min_tokens: int = 40, model: str = "gpt-4o",
                      compressor: Compressor | None = None) -> Any:
    """Compress ``messages`` to ``max_tokens``, or return a runnable that does.

    Args mirror :class:`tokenlean.compress.HistoryCompressor`. With
    ``messages=None`` the result is a ``Runnable`` (sync and async) taking a
    message list or a ``PromptValue`` and returning a message list.
    """
    history = HistoryCompressor(max_tokens=max_tokens, keep_last=keep_last, ratio=ratio,
                                drop=drop, min_tokens=min_tokens, model=model,
                                compressor=compressor)

    def run(value: Any) -> list[BaseMessage]:
        original = _lc_messages(value)
        return _rebuild(original, history.compress(from_lc_messages(original)))

    async def arun(value: Any) -> list[BaseMessage]:
        original = _lc_messages(value)
        return _rebuild(original, await history.acompress(from_lc_messages(original)))

    if messages is None:
        runnable: Runnable[Any, list[BaseMessage]] = RunnableLambda(
            run, afunc=arun, name="tokenlean_compress_messages")
        return runnable
    return run(messages)
