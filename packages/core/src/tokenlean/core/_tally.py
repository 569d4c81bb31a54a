"""Running totals of call records, as the framework cost handlers keep them.

Shared by ``langchain-tokenlean``'s callback and ``llama-index-callbacks-tokenlean``'s
event handler, so both add up the records :mod:`tokenlean.core.accounting` made
the same way, and say "unknown" the same way.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from .accounting import check_sink
from .errors import ConfigError
from .prices import PriceTable
from .records import CallRecord
from .settings import check_tenant

__all__ = ["COUNTERS", "Tally", "check_handler_options", "tally", "usd_text"]

# running totals every cost handler keeps (integers, then dollars)
COUNTERS = ("calls", "cached_calls", "unpriced_calls", "unpriced_savings", "input_tokens",
            "output_tokens", "cache_read_tokens", "cache_write_tokens", "reasoning_tokens")
_MONEY = ("priced_cost_usd", "priced_saved_usd")


def check_handler_options(ledger: Any, prices: Any, tenant: Any) -> None:
    """A cost handler's options, checked when it is built (``ConfigError`` naming the option)."""
    check_sink(ledger)
    if prices is not None and not isinstance(prices, PriceTable):
        raise ConfigError("prices must be a tokenlean.core.PriceTable")
    check_tenant(tenant)


def unpriced(record: CallRecord) -> bool:
    """A call whose cost nobody knows (a hit is a known $0; rows written before hits
    carried a cost are read the same way)."""
    return record.cost is None and not record.cached


def unpriced_saving(report: Any) -> bool:
    """A layer report that saved tokens whose price is not known."""
    return report.saved_usd is None and bool(report.saved_input_tokens
                                             or report.saved_output_tokens)


def tally(totals: Any, record: CallRecord) -> None:
    """Add ``record`` to the running totals held as attributes of ``totals``.

    A cache hit counts as a call (``cached_calls``) that cost nothing; a call
    without a known price counts in ``unpriced_calls`` (its cost stays out of
    ``priced_cost_usd`` and makes the total unknown, never $0).
    """
    usage = record.usage
    totals.calls += 1
    totals.cached_calls += int(record.cached)
    totals.unpriced_calls += int(unpriced(record))
    totals.input_tokens += usage.input_tokens
    totals.output_tokens += usage.output_tokens
    totals.cache_read_tokens += usage.cache_read_tokens
    totals.cache_write_tokens += usage.cache_write_tokens
    totals.reasoning_tokens += usage.reasoning_tokens
    totals.priced_cost_usd += record.cost_usd or 0
    for report in record.layers:
        totals.unpriced_savings += int(unpriced_saving(report))
        totals.priced_saved_usd += report.saved_usd or 0


def usd_text(total: Decimal | None, *, priced: Decimal, unpriced_calls: int, calls: int) -> str:
    """A dollar total for people: ``$0.000123``, or ``unknown (...)`` when part of it
    has no known price (never ``$0``)."""
    if total is not None:
        return f"${total:.6f}"
    return (f"unknown ({unpriced_calls} of {calls} calls unpriced; "
            f"the priced ones: ${priced:.6f})")


class Tally:
    """Running totals of :class:`CallRecord` s (``calls``, tokens by kind, dollars).

    ``cost_usd`` / ``saved_usd`` are ``None`` (unknown) as soon as one call (one
    saving) has no known price; ``priced_cost_usd`` / ``priced_saved_usd`` sum
    the priced ones.
    """

    calls: int
    cached_calls: int
    unpriced_calls: int
    unpriced_savings: int
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    reasoning_tokens: int
    priced_cost_usd: Decimal
    priced_saved_usd: Decimal

    def __init__(self) -> None:
        for name in COUNTERS:
            setattr(self, name, 0)
        for name in _MONEY:
            setattr(self, name, Decimal(0))

    def add(self, record: CallRecord) -> None:
        tally(self, record)

    def merge(self, other: Tally) -> None:
        """Add another tally's totals to this one (a nested block's, say)."""
        for name in (*COUNTERS, *_MONEY):
            setattr(self, name, getattr(self, name) + getattr(other, name))

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    @property
    def cost_usd(self) -> Decimal | None:
        """Dollars spent; ``None`` (unknown) when a call had no known price."""
        return None if self.unpriced_calls else self.priced_cost_usd

    @property
    def saved_usd(self) -> Decimal | None:
        """Dollars saved; ``None`` (unknown) when a saving had no known price."""
        return None if self.unpriced_savings else self.priced_saved_usd
