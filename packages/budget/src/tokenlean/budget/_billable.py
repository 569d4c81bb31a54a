"""What a call can bill besides its text prompt and one answer of ``max_tokens``.

:func:`shape` reads a request once and returns what the reservation must add:

* ``extra_input``: non-text parts (:mod:`._media`) and the tool-use prompt a
  provider adds when tools are defined (Anthropic publishes its own: at most
  530 tokens, Claude 3 Opus with ``tool_choice`` auto; OpenAI publishes none,
  so the cookbook's framing, 7 + 12 per tool, on top of the definitions' JSON,
  which :func:`~tokenlean.core.count_messages` already counts);
* ``copies``: completions billed per call: ``n`` (OpenAI), ``best_of`` (the
  provider generates and bills that many, returns ``n``), ``candidate_count``
  (Gemini); the largest;
* ``cache_write``: the prompt's rate multiplier when it carries a
  ``cache_control`` breakpoint (Anthropic: cache writes cost 1.25x the input
  rate, 2x with ``"ttl": "1h"``); the whole prompt is reserved at that rate;
* ``reasoning``: headroom for reasoning tokens when the app sets no cap
  (o1/o3/o4/gpt-5 models, or ``reasoning_effort`` / ``reasoning`` / ``thinking``
  in ``params``): Anthropic's ``thinking.budget_tokens`` when given, else the
  layer's ``reasoning_headroom``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from tokenlean.core import InvalidRequestError, Request

from ._media import part_tokens

__all__ = ["Shape", "shape"]

COPY_KEYS = ("n", "best_of", "candidate_count")
ANTHROPIC_TOOL_PROMPT = 530
OPENAI_TOOL_FRAMING = (7, 12)  # per request, per tool
CACHE_WRITE_RATE = Decimal("1.25")
CACHE_WRITE_RATE_1H = Decimal(2)
_REASONING_PREFIXES = ("o1", "o3", "o4", "gpt-5")
_REASONING_PARAMS = ("reasoning_effort", "reasoning", "thinking")


@dataclass(frozen=True, slots=True)
class Shape:
    extra_input: int = 0
    copies: int = 1
    cache_write: Decimal | None = None
    reasoning_headroom: int | None = None


def is_anthropic(request: Request, model: str) -> bool:
    return request.provider == "anthropic" or model.rsplit("/", 1)[-1].lower().startswith(
        "claude")


def _copies(params: Mapping[str, Any]) -> int:
    copies = 1
    for key in COPY_KEYS:
        value = params.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InvalidRequestError(f"params[{key!r}] must be a positive integer, got {value!r}")
        copies = max(copies, value)
    return copies


def _marked(items: Any) -> Iterator[Mapping[str, Any]]:
    for item in items:
        if isinstance(item, Mapping) and isinstance(item.get("cache_control"), Mapping):
            yield item["cache_control"]


def _cache_write(request: Request) -> Decimal | None:
    marks = list(_marked(request.tools))
    for message in request.messages:
        if not isinstance(message.content, str):
            marks += _marked(message.content)
    if isinstance(request.params.get("cache_control"), Mapping):
        marks.append(request.params["cache_control"])
    if not marks:
        return None
    return CACHE_WRITE_RATE_1H if any(m.get("ttl") == "1h" for m in marks) else CACHE_WRITE_RATE


def _reasoning(request: Request, model: str, default: int) -> int | None:
    params = request.params
    bare = model.rsplit("/", 1)[-1].lower()
    if not bare.startswith(_REASONING_PREFIXES) and not any(k in params for k in
                                                            _REASONING_PARAMS):
        return None
    thinking = params.get("thinking")
    if isinstance(thinking, Mapping) and isinstance(thinking.get("budget_tokens"), int):
        return max(int(thinking["budget_tokens"]), 0)
    return default


def shape(request: Request, model: str, *, unknown_file_tokens: int,
          reasoning_headroom: int) -> Shape:
    anthropic = is_anthropic(request, model)
    extra = 0
    for message in request.messages:
        if not isinstance(message.content, str):
            extra += sum(part_tokens(p, model=model, anthropic=anthropic,
                                     unknown_file_tokens=unknown_file_tokens)
                         for p in message.content)
    if request.tools:
        extra += ANTHROPIC_TOOL_PROMPT if anthropic else \
            OPENAI_TOOL_FRAMING[0] + OPENAI_TOOL_FRAMING[1] * len(request.tools)
    return Shape(extra, _copies(request.params), _cache_write(request),
                 _reasoning(request, model, reasoning_headroom))
