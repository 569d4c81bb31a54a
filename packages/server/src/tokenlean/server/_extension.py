"""The ``tokenlean`` extension field, one mapping for the OpenAI and Anthropic endpoints.

Request (optional)::

    "tokenlean": {"soft_max_tokens": 64, "stop_confidence": 0.05}

Response (only when a soft budget applied; top level of the response, of the
OpenAI chunk that carries ``finish_reason`` and of Anthropic's ``message_delta``
event)::

    "tokenlean": {"stopped": "early", "soft_budget": 64, "stop_confidence": 0.05,
                  "at_token": 71, "eos_probability": 0.31, "boundaries_checked": 2,
                  "max_eos_probability": 0.31}

``finish_reason`` stays ``"stop"`` (Anthropic ``stop_reason`` ``"end_turn"``) for
an early stop, so the SDKs and apps that switch on it see an ordinary end.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ._early import EarlyStop
from ._engine import Finished
from ._errors import ApiError
from ._json import short
from ._validate import get_int, get_number

__all__ = ["FIELD", "EarlyRequest", "parse_extension", "response_field"]

FIELD = "tokenlean"
_KEYS = ("soft_max_tokens", "stop_confidence")


@dataclass(frozen=True, slots=True)
class EarlyRequest:
    """What a request asked for in its ``tokenlean`` field (None: not given)."""

    soft_max_tokens: int | None = None
    stop_confidence: float | None = None


def parse_extension(body: Mapping[str, Any]) -> EarlyRequest:
    """The request's ``tokenlean`` field, checked: an object with only known keys, a
    ``soft_max_tokens`` integer >= 0 and a ``stop_confidence`` in [0, 1] (else a 400)."""
    ext = body.get(FIELD)
    if ext is None:
        return EarlyRequest()
    if not isinstance(ext, dict):
        raise ApiError(400, f"{FIELD} must be an object such as {{\"soft_max_tokens\": 64, "
                            f"\"stop_confidence\": 0.05}}, got {short(ext)}", param=FIELD)
    unknown = sorted(set(ext) - set(_KEYS))
    if unknown:
        raise ApiError(400, f"{FIELD}: unknown field {short(unknown[0])}; accepted: "
                            f"{', '.join(_KEYS)}", param=f"{FIELD}.{unknown[0][:40]}")
    try:
        soft = get_int(ext, "soft_max_tokens", low=0)
        confidence = None if ext.get("stop_confidence") is None \
            else get_number(ext, "stop_confidence", 0.0, low=0, high=1)
    except ApiError as exc:
        raise ApiError(400, f"{FIELD}.{exc.message}", param=f"{FIELD}.{exc.param}") from None
    return EarlyRequest(soft, confidence)


def _detail(finish: Finished, early: EarlyStop) -> dict[str, Any]:
    if early.stopped_early:
        stopped = "early"
    elif finish.reason == "length":
        stopped = "max_tokens"
    else:
        stopped = "stop_sequence" if finish.stop_sequence is not None else "eos"
    out: dict[str, Any] = {"stopped": stopped, "soft_budget": early.soft_budget,
                           "stop_confidence": early.stop_confidence}
    if early.stopped_early:
        out["at_token"] = early.at_token
        out["eos_probability"] = early.eos_probability
    out["boundaries_checked"] = early.boundaries_checked
    out["max_eos_probability"] = early.max_eos_probability
    return out


def response_field(finish: Finished) -> dict[str, Any]:
    """``{"tokenlean": {...}}`` for a response, or ``{}`` when no soft budget applied."""
    return {} if finish.early is None else {FIELD: _detail(finish, finish.early)}
