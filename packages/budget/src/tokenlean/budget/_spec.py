"""What a budget is: a limit in tokens and/or dollars, a scope, a period, a policy."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Literal

from tokenlean.core import ConfigError, Request

__all__ = ["Budget", "Period", "Policy", "Scope", "UnknownPrice"]

Scope = Literal["call", "user", "tenant", "global"]
Period = Literal["day", "month", "total"]
Policy = Literal["raise", "clamp", "route", "warn"]
UnknownPrice = Literal["deny", "allow"]

_SCOPES = ("call", "user", "tenant", "global")
_PERIODS = ("day", "month", "total")
_POLICIES = ("raise", "clamp", "route", "warn")

# Money is kept as whole nano-dollars (1e-9 USD) in stores: exact, and an
# INTEGER in SQLite / an integer counter in Redis.
NANO = Decimal(1_000_000_000)


def to_nano(usd: Decimal | float | int, *, up: bool = False) -> int:
    value = Decimal(str(usd)) * NANO
    return int(value.to_integral_value(rounding="ROUND_CEILING" if up else "ROUND_HALF_EVEN"))


@dataclass(frozen=True, slots=True, kw_only=True)
class Budget:
    """One limit on spend.

    * ``max_usd`` / ``max_tokens``: the limits (at least one). Tokens count
      prompt + output tokens of every call in the scope and period.
    * ``scope``: ``"call"`` (each call on its own), ``"user"`` (per
      ``Request.user``; calls without a user share the key ``"-"``),
      ``"tenant"`` (per ``Request.tenant``) or ``"global"``.
    * ``period``: ``"day"`` / ``"month"`` (UTC calendar periods) or
      ``"total"`` (never resets). Ignored for ``scope="call"``.
    * ``policy`` when a call does not fit: ``"raise"``
      :class:`~tokenlean.core.BudgetExceeded`; ``"clamp"`` lower the call's
      ``max_tokens`` to what is left (raise if fewer than ``min_output_tokens``
      would be left); ``"route"`` switch to the first model of ``route_to``
      that fits; ``"warn"`` let it through with a ``TokenleanWarning``.
    * ``unknown_price``: what a ``max_usd`` budget does with a model nobody
      knows the price of: ``"deny"`` (raise ``BudgetExceeded``, the default:
      an unknown cost is never counted as $0) or ``"allow"`` (let it through;
      its tokens still count against ``max_tokens`` limits, its dollars are
      not counted).
    """

    name: str
    max_usd: Decimal | float | None = None
    max_tokens: int | None = None
    scope: Scope = "tenant"
    period: Period = "month"
    policy: Policy = "raise"
    route_to: tuple[str, ...] = ()
    min_output_tokens: int = 16
    unknown_price: UnknownPrice = "deny"

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name or "|" in self.name:
            raise ConfigError("a budget needs a non-empty name without '|'")
        if self.max_usd is None and self.max_tokens is None:
            raise ConfigError(f"budget {self.name!r} needs max_usd and/or max_tokens")
        if self.max_usd is not None:
            try:
                usd = Decimal(str(self.max_usd))
            except InvalidOperation:
                raise ConfigError(f"max_usd must be a number, got {self.max_usd!r}") from None
            if not usd.is_finite() or usd < 0:
                raise ConfigError(f"max_usd must be a non-negative number, got {self.max_usd!r}")
            object.__setattr__(self, "max_usd", usd)
        if self.max_tokens is not None and (isinstance(self.max_tokens, bool)
                                            or not isinstance(self.max_tokens, int)
                                            or self.max_tokens < 0):
            raise ConfigError(f"max_tokens must be a non-negative integer, got {self.max_tokens!r}")
        if self.scope not in _SCOPES:
            raise ConfigError(f"scope must be one of {list(_SCOPES)}, got {self.scope!r}")
        if self.period not in _PERIODS:
            raise ConfigError(f"period must be one of {list(_PERIODS)}, got {self.period!r}")
        if self.policy not in _POLICIES:
            raise ConfigError(f"policy must be one of {list(_POLICIES)}, got {self.policy!r}")
        route = (self.route_to,) if isinstance(self.route_to, str) else tuple(self.route_to)
        if self.policy == "route" and not route:
            raise ConfigError(f"budget {self.name!r} has policy='route' but no route_to models; "
                              "e.g. route_to=('gpt-4o-mini',)")
        object.__setattr__(self, "route_to", route)
        if isinstance(self.min_output_tokens, bool) or not isinstance(self.min_output_tokens, int) \
                or self.min_output_tokens < 1:
            raise ConfigError("min_output_tokens must be a positive integer")
        if self.unknown_price not in ("deny", "allow"):
            raise ConfigError(
                f"unknown_price must be 'deny' or 'allow', got {self.unknown_price!r}")

    @property
    def limit_nano(self) -> int | None:
        return None if self.max_usd is None else to_nano(self.max_usd)

    def key(self, request: Request, *, now: float | None = None) -> str | None:
        """The store key this request charges, ``None`` for per-call budgets."""
        if self.scope == "call":
            return None
        when = datetime.fromtimestamp(now, UTC) if now is not None else datetime.now(UTC)
        period = {"day": when.strftime("%Y-%m-%d"), "month": when.strftime("%Y-%m"),
                  "total": "total"}[self.period]
        who = {"user": request.user or "-", "tenant": request.tenant, "global": "*"}[self.scope]
        return f"{self.name}|{self.scope}={who}|{period}"
