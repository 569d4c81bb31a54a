"""Calibrating the length predictor on the deployment's own traffic.

The shipped artefact is a *prior*: it was trained on public answers of ten
models, and on a model it has never seen its bound can be far too small
(or far too large). :class:`Calibration` makes the layer learn, per
``(model, route)``, a conformal offset on top of the prior from the
completions it settles:

* the **score** of a completion is ``log(actual output tokens / prior)``;
* **warm-up**: the first ``warmup`` scores are kept; until then the layer
  does not use the prediction at all (the app's own cap, or none). At the
  ``warmup``-th the offset starts at their split-conformal quantile
  (the ``ceil((n+1)(1-alpha))``-th smallest score), which covers a new
  exchangeable completion with probability >= ``1 - alpha``;
* **after warm-up** the offset follows the online quantile tracker of
  Angelopoulos, Candès and Tibshirani (*Conformal PID control*, 2023; the
  quantile form of Gibbs and Candès' adaptive conformal inference, 2021):
  ``offset += step * (miss - alpha)``, where ``miss`` says whether the answer
  was longer than the bound the layer issued. For *any* sequence of answers
  (drift included) the share of misses over ``T`` calls is within
  ``(B + step) / (step * T)`` of ``alpha`` (``B``: the range of the scores),
  so the long-run coverage is the target's;
* the bound is ``prior * exp(offset)``, and never above the app's own cap.

A completion cut by ``max_tokens`` (``finish_reason`` ``"length"``) is
*censored*: its length is at least the cap. It is a miss when the cap was at
least the issued bound (then the answer really was longer than the bound),
and nothing is learned from it otherwise (the cap was the app's, lower than
the bound: whether the bound would have held is unknown). In warm-up a
censored score counts as longer than any other, so no offset learned from it
is too small. The state is a small JSON document per key, kept by the
budget store (``SQLiteBudgetStore``, ``RedisBudgetStore``), so every process
on one store shares it.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from typing import Any

from tokenlean.core import ConfigError, InvalidRequestError, Request

__all__ = ["Calibration", "CalibrationState", "Observation", "calibration_key"]

#: store key prefix of the calibration state of one (model, route)
KEY_PREFIX = "~length|"
#: ``finish_reason`` values meaning the answer was cut by the output cap
CUT_REASONS = frozenset({"length", "max_tokens", "MAX_TOKENS"})
_MAX_SCORE = 20.0  # |log ratio| clipped: exp(20) tokens is past any real cap


@dataclass(frozen=True, slots=True)
class Calibration:
    """How :class:`~tokenlean.budget.BudgetLayer` calibrates its predictor.

    ``warmup``: completions per ``(model, route)`` before the prediction is
    used (until then: the app's own cap). ``coverage``: the share of answers
    the bound should let finish (None: the predictor's ``quantile``, 0.92 for
    the shipped one, else 0.9). ``step``: the quantile tracker's step, in log
    units. ``route_key``: the :attr:`Request.metadata` key naming the call's
    route (its kind of traffic: "summarise", "chat", ...); calls without it
    share ``default_route``.
    """

    warmup: int = 100
    coverage: float | None = None
    step: float = 0.05
    route_key: str = "route"
    default_route: str = "-"

    def __post_init__(self) -> None:
        if isinstance(self.warmup, bool) or not isinstance(self.warmup, int) or self.warmup < 1:
            raise ConfigError(f"Calibration.warmup must be a positive integer, got "
                              f"{self.warmup!r}")
        if self.coverage is not None and (isinstance(self.coverage, bool) or not isinstance(
                self.coverage, (int, float)) or not 0.5 <= self.coverage < 1):
            raise ConfigError(f"Calibration.coverage must be in [0.5, 1), got {self.coverage!r}")
        if isinstance(self.step, bool) or not isinstance(self.step, (int, float)) \
                or not 0 < self.step <= 1:
            raise ConfigError(f"Calibration.step must be in (0, 1], got {self.step!r}")
        for name in ("route_key", "default_route"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise ConfigError(f"Calibration.{name} must be a non-empty string, got {value!r}")
        if self.coverage is not None:
            needed = math.ceil(1 / (1 - self.coverage)) - 1
            if self.warmup < needed:
                raise ConfigError(f"Calibration.warmup must be at least {needed} for coverage "
                                  f"{self.coverage} (a conformal quantile needs n >= "
                                  "1/(1-coverage) - 1)")

    def target(self, predictor: Any) -> float:
        """The coverage aimed at: ``coverage``, else the predictor's quantile, else 0.9."""
        if self.coverage is not None:
            return float(self.coverage)
        quantile = getattr(predictor, "quantile", None)
        return float(quantile) if isinstance(quantile, (int, float)) \
            and 0.5 <= quantile < 1 else 0.9

    def route(self, request: Request) -> str:
        """The request's route (``metadata[route_key]``, else ``default_route``)."""
        value = request.metadata.get(self.route_key)
        if value is None:
            return self.default_route
        if not isinstance(value, str) or not value:
            raise InvalidRequestError(f"metadata[{self.route_key!r}] (the calibration route) "
                                      f"must be a non-empty string, got {value!r}")
        return value


def calibration_key(model: str, route: str) -> str:
    """The store key of the calibration of ``model`` on ``route``."""
    return f"{KEY_PREFIX}{model}|{route}"


@dataclass(frozen=True, slots=True)
class Observation:
    """One settled completion, as the layer saw it."""

    prior: int              # the prior predictor's max_tokens
    actual: int             # output tokens billed
    cut: bool               # finish_reason said the output cap stopped it
    cap: int | None         # the output cap the call was sent with
    issued: int | None      # the calibrated bound the layer issued (None in warm-up)


@dataclass(frozen=True, slots=True)
class CalibrationState:
    """What one ``(model, route)`` has learned (stored as JSON)."""

    n: int = 0                       # completions learned from
    offset: float | None = None      # log offset over the prior (None: warming up)
    scores: tuple[float, ...] = field(default=())     # warm-up scores
    censored: tuple[float, ...] = field(default=())   # warm-up lower bounds (answers cut)
    misses: int = 0                  # misses after warm-up
    skipped: int = 0                 # censored by a cap below the bound: nothing learned

    @property
    def warm(self) -> bool:
        return self.offset is not None

    def bound(self, prior: int) -> int | None:
        """The calibrated ``max_tokens`` for a prior's figure; None while warming up."""
        if self.offset is None:
            return None
        return max(1, math.ceil(prior * math.exp(self.offset)))

    def to_json(self) -> str:
        return json.dumps({"v": 1, "n": self.n, "offset": self.offset,
                           "scores": list(self.scores),
                           "censored": list(self.censored), "misses": self.misses,
                           "skipped": self.skipped}, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes | None) -> CalibrationState:
        """The stored state; an absent or unreadable one is a fresh start."""
        if not text:
            return cls()
        try:
            data = json.loads(text)
            offset = data.get("offset")
            return cls(n=int(data["n"]), offset=None if offset is None else float(offset),
                       scores=tuple(float(s) for s in data["scores"]),
                       censored=tuple(float(s) for s in data.get("censored", ())),
                       misses=int(data.get("misses", 0)), skipped=int(data.get("skipped", 0)))
        except (ValueError, TypeError, KeyError, AttributeError):
            return cls()


def _score(tokens: int, prior: int) -> float:
    value = math.log(max(tokens, 1) / max(prior, 1))
    return max(-_MAX_SCORE, min(_MAX_SCORE, value))


def conformal_offset(scores: tuple[float, ...], censored: tuple[float, ...],
                     coverage: float) -> float:
    """Split-conformal quantile: the ``ceil((n+1) * coverage)``-th smallest of the ``n``
    scores, the censored ones (lower bounds) ranked above every other. When that rank
    falls on a censored score (too many answers were cut) the largest lower bound
    known is used, and the tracker raises it from there."""
    n = len(scores) + len(censored)
    rank = math.ceil((n + 1) * coverage)
    if rank <= len(scores):
        return sorted(scores)[rank - 1]
    return max(scores + censored, default=0.0)


def observe(state: CalibrationState, obs: Observation, *, warmup: int, coverage: float,
            step: float) -> CalibrationState:
    """The state after learning from ``obs`` (pure: the stores apply it atomically)."""
    if not state.warm:
        if obs.cut:  # censored: at least the cap it was cut at
            state = replace(state, censored=state.censored + (
                _score(max(obs.cap or 0, obs.actual), obs.prior),))
        else:
            state = replace(state, scores=state.scores + (_score(obs.actual, obs.prior),))
        state = replace(state, n=state.n + 1)
        if len(state.scores) + len(state.censored) < warmup:
            return state
        return replace(state, offset=conformal_offset(state.scores, state.censored, coverage),
                       scores=(), censored=())
    assert state.offset is not None  # narrowed by state.warm
    issued = obs.issued if obs.issued is not None else state.bound(obs.prior) or 1
    if obs.cut:
        if obs.cap is None or obs.cap < issued:
            return replace(state, skipped=state.skipped + 1)  # the app's lower cap cut it
        miss = True
    else:
        miss = obs.actual > issued
    alpha = 1.0 - coverage
    offset = state.offset + step * ((1.0 if miss else 0.0) - alpha)
    offset = max(-_MAX_SCORE, min(_MAX_SCORE, offset))
    return replace(state, n=state.n + 1, offset=offset, misses=state.misses + int(miss))


def resolve(option: Calibration | bool | None, predictor: Any) -> Calibration | None:
    """``BudgetLayer(calibration=...)``: a :class:`Calibration`, ``True`` (the defaults),
    or ``None`` / ``False`` (the prior as it is)."""
    if option is None or option is False:
        return None
    if option is True:
        option = Calibration()
    if not isinstance(option, Calibration):
        raise ConfigError(f"calibration must be a Calibration, True or None, got {option!r}")
    if predictor is None:
        raise ConfigError("calibration= calibrates a predictor; pass "
                          "predictor=LengthPredictor.default()")
    return option
