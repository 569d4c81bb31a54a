"""Early stopping past a soft budget: where an answer may end, and what the response says.

A request with a *soft budget* of ``N`` tokens may be ended by the server before
``max_tokens`` once it has at least ``N`` tokens: at the first **sentence or
paragraph boundary** (:func:`at_boundary`) after which the model's own
probability of ending the answer, ``P(eos | answer so far)``, is at least the
request's ``stop_confidence``. That probability is read from the logits of the
decode step that follows the boundary token (a step the engine computes anyway),
summed over every end-of-sequence id, at temperature 1 (the raw model, whatever
the sampling temperature). Ending there is what the model itself would do with
that probability, so the answer ends where the model considers it complete, at
a sentence end, rather than mid-sentence at a hard cap.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["DEFAULT_STOP_CONFIDENCE", "EarlyStop", "at_boundary"]

DEFAULT_STOP_CONFIDENCE = 0.05
"""The default threshold on ``P(eos)`` at a boundary (see docs/benchmarks/server.md,
"Early stopping", for how it was chosen on SmolLM2-135M-Instruct)."""

# a sentence end (with closing quotes or brackets) or a line break, then only spaces or tabs
_BOUNDARY = re.compile(r"(?:[.!?\u3002\uff01\uff1f\u2026][\"'\u201d\u2019)\]*_`]*|\n)[ \t]*\Z")


def at_boundary(text: str) -> bool:
    """Whether ``text`` ends a sentence (``.``, ``!``, ``?``, ``…``, ``。`` …, with any
    closing quotes, brackets or markdown emphasis after it) or a line (``\\n``),
    trailing spaces aside."""
    return _BOUNDARY.search(text[-64:]) is not None


@dataclass(frozen=True, slots=True)
class EarlyStop:
    """What early stopping did for one generation (it had a soft budget).

    ``at_token`` is the answer's length in tokens when it was ended early (None
    when it was not); ``eos_probability`` is ``P(eos)`` there; ``max_eos_probability``
    the highest ``P(eos)`` seen at any boundary checked (None if none was).
    """

    soft_budget: int
    stop_confidence: float
    boundaries_checked: int = 0
    max_eos_probability: float | None = None
    at_token: int | None = None
    eos_probability: float | None = None

    @property
    def stopped_early(self) -> bool:
        return self.at_token is not None
