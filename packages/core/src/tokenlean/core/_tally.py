"""Running totals of call records, and a ledger write that warns once per outage.

Shared by the framework cost handlers (``langchain-tokenlean``'s callback,
``llama-index-callbacks-tokenlean``'s event handler), so both count, price and
degrade the same way.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from .errors import ConfigError
from .outage import Outage
from .prices import PriceTable
from .records import CallRecord, LayerReport
from .types import Usage

__all__ = ["COUNTERS", "SinkOutage", "Tally", "cache_hit", "check_handler_options", "tally"]

# running totals every cost handler keeps (integers, then dollars)
COUNTERS = ("calls", "cached_calls", "unpriced_calls", "input_tokens", "output_tokens",
            "cache_read_tokens", "cache_write_tokens", "reasoning_tokens")
_MONEY = ("cost_usd", "saved_usd")


def check_handler_options(ledger: Any, prices: Any, tenant: Any) -> None:
    """A cost handler's options, checked when it is built (``ConfigError`` naming the option)."""
    if ledger is not None and not callable(getattr(ledger, "record", None)):
        raise ConfigError("ledger must have a record(record) method (a ledger or exporter)")
    if prices is not None and not isinstance(prices, PriceTable):
        raise ConfigError("prices must be a tokenlean.core.PriceTable")
    if not isinstance(tenant, str) or not tenant:
        raise ConfigError("tenant must be a non-empty string")


def tally(totals: Any, record: CallRecord) -> None:
    """Add ``record`` to the running totals held as attributes of ``totals``.

    A cache hit counts as a call (``cached_calls``) that cost nothing; a call
    without a known price counts in ``unpriced_calls`` (its cost stays out of
    ``cost_usd``, it is never taken as $0).
    """
    usage = record.usage
    totals.calls += 1
    totals.cached_calls += int(record.cached)
    totals.unpriced_calls += int(record.cost is None and not record.cached)
    totals.input_tokens += usage.input_tokens
    totals.output_tokens += usage.output_tokens
    totals.cache_read_tokens += usage.cache_read_tokens
    totals.cache_write_tokens += usage.cache_write_tokens
    totals.reasoning_tokens += usage.reasoning_tokens
    totals.cost_usd += record.cost_usd or 0
    totals.saved_usd += sum((r.saved_usd or Decimal(0) for r in record.layers), Decimal(0))


def cache_hit(prices: Any, usage: Usage, *, model: str, provider: str | None,
              layer: str) -> tuple[Usage, tuple[LayerReport, ...]]:
    """What to record for a call a cache answered: zero billed usage, and one
    report for ``layer`` that saved the whole call (``usage`` priced at today's
    rates; ``saved_usd`` is ``None`` when the model has no known price)."""
    would_cost = prices.price(usage, model=model, provider=provider)
    return Usage(), (LayerReport(
        layer=layer, saved_input_tokens=usage.input_tokens,
        saved_output_tokens=usage.output_tokens,
        saved_usd=None if would_cost is None else would_cost.total_usd),)


class Tally:
    """Running totals of :class:`CallRecord` s (``calls``, tokens by kind, dollars)."""

    calls: int
    cached_calls: int
    unpriced_calls: int
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    reasoning_tokens: int
    cost_usd: Decimal
    saved_usd: Decimal

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


class SinkOutage:
    """Writes records to a sink (a ledger, an exporter); a failing sink never fails
    the call: its rows are dropped with **one** :class:`TokenleanWarning` per
    outage (:class:`~tokenlean.core.outage.Outage`: the next success ends it)."""

    def __init__(self, what: str = "cost ledger") -> None:
        self.outage = Outage("tokenlean", "rows are dropped until it recovers (one warning "
                                          "per outage), the calls are unaffected")
        self.what = what

    @property
    def down(self) -> bool:
        return self.outage.down

    def write(self, sink: Any, record: CallRecord) -> None:
        if sink is None:
            return
        seen = self.outage.begin()
        try:
            sink.record(record)
        except Exception as exc:
            self.outage.failed(seen, exc, self.what)  # warns on the handler's caller
        else:
            self.outage.ok(seen)

    async def awrite(self, sink: Any, record: CallRecord) -> None:
        """Awaits the sink's ``arecord`` when it has one."""
        arecord = getattr(sink, "arecord", None)
        if arecord is None:
            self.write(sink, record)
            return
        seen = self.outage.begin()
        try:
            await arecord(record)
        except Exception as exc:
            self.outage.failed(seen, exc, self.what)
        else:
            self.outage.ok(seen)
