"""The empty-answer retry: reasoning that ate the whole output cap.

A reasoning model's hidden reasoning counts against its output cap. When it
uses all of it, the call comes back with no answer, ``finish_reason ==
"length"``, and is billed in full. The pipeline never returns that as a
success when it can do better: it asks **once** more with a larger cap
(:func:`retry_cap`), through the layers again, so a budget admits (reserves,
clamps or refuses) the retry like any call and a spend cap is never bypassed.

The larger cap never exceeds the **app's own cap** (what the app asked for,
before any layer), nor the model's most output tokens where tokenlean knows
it (:data:`MAX_OUTPUT_TOKENS`). So a retry happens only when a layer lowered
(or set) the cap below the app's, or when the app set none; when the app's own
cap was eaten, the answer is returned as it came, flagged.

Pure helpers, shared by the sync and async paths.
"""

from __future__ import annotations

import uuid
from dataclasses import replace

from .types import Request, Response

__all__ = ["EMPTY_BY_LENGTH", "MAX_OUTPUT_TOKENS", "empty_by_length", "max_output_tokens",
           "retry_cap", "retry_request"]

#: ``CallRecord.metadata`` key (and ``retried`` value) of an answer that was empty
#: because the cap ran out; the value says why it was not (or could not be) retried
EMPTY_BY_LENGTH = "empty_by_length"
#: the ``metadata`` key a retry's request carries: the request id of the first attempt
RETRY_OF = "tokenlean_retry_of"
_LENGTH = frozenset({"length", "max_tokens"})  # OpenAI's name, Anthropic's stop_reason

#: most output tokens (reasoning included) per model family, longest prefix wins
#: (OpenAI's model pages; Anthropic's models overview)
MAX_OUTPUT_TOKENS: dict[str, int] = {
    "o1-mini": 65_536, "o1-preview": 32_768, "o1": 100_000, "o3-mini": 100_000,
    "o3": 100_000, "o4-mini": 100_000, "gpt-5": 128_000, "claude-3-7-sonnet": 64_000,
    "claude-sonnet-4": 64_000, "claude-opus-4": 32_000,
}


def max_output_tokens(model: str) -> int | None:
    """The most output tokens ``model`` can produce, where tokenlean knows it."""
    name = model.rsplit("/", 1)[-1].lower()
    known = [p for p in MAX_OUTPUT_TOKENS if name.startswith(p)]
    return MAX_OUTPUT_TOKENS[max(known, key=len)] if known else None


def empty_by_length(response: Response) -> bool:
    """An answer the cap cut before it said anything: no text, no tool call, stopped
    by length. A cache hit is not one (it replays a stored answer)."""
    return (not response.cached and str(response.finish_reason) in _LENGTH
            and not response.text.strip() and not response.tool_calls)


def retry_cap(asked: Request, sent: Request, response: Response) -> tuple[int | None, str]:
    """``(cap, why)``: the output cap to retry ``response`` with, or ``(None, why not)``.

    ``asked``: the request as the app made it; ``sent``: as the provider got it.
    The cap is twice what was sent, or what was sent plus the reasoning it used if
    that is more (with no cap sent: twice the output billed), then bounded by the
    app's own cap and the model's most output tokens; it must exceed what was sent.
    """
    used = response.usage.output_tokens
    before = sent.output_cap
    if before is None:
        if not used:
            return None, "no cap was sent and no output was reported"
        before = used
    grown = max(2 * before, before + response.usage.reasoning_tokens)
    bounds = [b for b in (asked.output_cap, max_output_tokens(sent.model)) if b is not None]
    cap = min([grown, *bounds])
    if cap <= before:
        why = "app_cap" if asked.output_cap is not None and asked.output_cap <= before \
            else "model_max"
        return None, why
    return cap, "retry"


def retry_request(asked: Request, cap: int) -> Request:
    """The app's request again, capped at ``cap`` (under the name the app used), with a
    request id of its own and the first attempt's id in its metadata."""
    capped = asked.with_output_cap(cap)
    return replace(capped, request_id=uuid.uuid4().hex,
                   metadata={**capped.metadata, RETRY_OF: asked.request_id})
