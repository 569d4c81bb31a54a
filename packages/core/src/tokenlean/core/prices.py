"""Dollars per call from `genai-prices`, a maintained price database.

``price(usage, model=...)`` returns a :class:`~tokenlean.core.types.Cost` or
``None`` for a model nobody knows the price of (with a warning, once per
model): an unknown cost is never reported as $0.

Per-model overrides (negotiated rates, your own fine-tune, a local model) go in
a :class:`PriceTable`; they win over the database.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from functools import lru_cache
from importlib import metadata

from .errors import ConfigError
from .types import Cost, Usage

__all__ = ["ModelPrice", "PriceTable", "default_price_table", "price"]

_MTOK = Decimal(1_000_000)


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelPrice:
    """USD per million tokens. Unset cache rates fall back to the input rate."""

    input_per_mtok: Decimal
    output_per_mtok: Decimal
    cached_input_per_mtok: Decimal | None = None
    cache_write_per_mtok: Decimal | None = None

    def __post_init__(self) -> None:
        for name in ("input_per_mtok", "output_per_mtok", "cached_input_per_mtok",
                     "cache_write_per_mtok"):
            value = getattr(self, name)
            if value is None:
                continue
            try:
                value = Decimal(str(value))
            except ArithmeticError:
                raise ConfigError(f"{name} must be a number, got {value!r}") from None
            if not value.is_finite() or value < 0:
                raise ConfigError(f"{name} must be a non-negative finite number, got {value}")
            object.__setattr__(self, name, value)

    def cost(self, usage: Usage) -> tuple[Decimal, Decimal]:
        cached = self.cached_input_per_mtok if self.cached_input_per_mtok is not None \
            else self.input_per_mtok
        write = self.cache_write_per_mtok if self.cache_write_per_mtok is not None \
            else self.input_per_mtok
        plain = usage.input_tokens - usage.cache_read_tokens - usage.cache_write_tokens
        input_usd = (plain * self.input_per_mtok + usage.cache_read_tokens * cached
                     + usage.cache_write_tokens * write) / _MTOK
        return input_usd, usage.output_tokens * self.output_per_mtok / _MTOK


@lru_cache(maxsize=1)
def _genai_prices_version() -> str:
    return f"genai-prices {metadata.version('genai-prices')}"


def _genai_prices_source() -> tuple[str, date]:
    """The price source, and the date whose prices apply: genai-prices picks, from
    its bundled snapshot, the price in force at the request time (today, UTC)."""
    return _genai_prices_version(), datetime.now(UTC).date()


class PriceTable:
    """Looks prices up: overrides first, then genai-prices' bundled snapshot.

    The snapshot is what the installed ``genai-prices`` release carries (no
    network). Upgrade the package to refresh prices; ``Cost.source`` and
    ``Cost.price_date`` say which snapshot priced a call.
    """

    def __init__(self, *, overrides: Mapping[str, ModelPrice] | None = None) -> None:
        overrides = dict(overrides or {})
        for model, model_price in overrides.items():
            if not isinstance(model_price, ModelPrice):
                raise ConfigError(f"override for {model!r} must be a ModelPrice")
        self._overrides = overrides
        self._warned: set[str] = set()
        # (model, provider) -> linear per-MTok prices, or None where the database
        # prices tiers (then every call goes through genai-prices' calculator).
        self._linear: dict[tuple[str, str | None], tuple[ModelPrice, str | None] | None] = {}

    def with_override(self, model: str, model_price: ModelPrice) -> PriceTable:
        return PriceTable(overrides={**self._overrides, model: model_price})

    def price(self, usage: Usage, *, model: str, provider: str | None = None) -> Cost | None:
        override = self._overrides.get(model)
        if override is not None:
            input_usd, output_usd = override.cost(usage)
            return Cost(input_usd=input_usd, output_usd=output_usd, model=model,
                        provider=provider, source="override", price_date=None)
        linear = self._linear_prices(model, provider)
        if linear is not None:
            input_usd, output_usd = linear[0].cost(usage)
            source, when = _genai_prices_source()
            return Cost(input_usd=input_usd, output_usd=output_usd, model=model,
                        provider=linear[1], source=source, price_date=when)
        return self._from_database(usage, model=model, provider=provider)

    def rates(self, *, model: str, provider: str | None = None) -> tuple[Decimal, Decimal] | None:
        """USD per input token and per output token (base tier), ``None`` if unknown."""
        override = self._overrides.get(model)
        if override is not None:
            return override.input_per_mtok / _MTOK, override.output_per_mtok / _MTOK
        linear = self._linear_prices(model, provider)
        if linear is not None:
            return linear[0].input_per_mtok / _MTOK, linear[0].output_per_mtok / _MTOK
        small = self._from_database(Usage(input_tokens=1000, output_tokens=1000), model=model,
                                    provider=provider)
        if small is None:
            return None
        return small.input_usd / 1000, small.output_usd / 1000

    def _linear_prices(self, model: str,
                       provider: str | None) -> tuple[ModelPrice, str | None] | None:
        """Per-MTok rates when the model's price is linear in every token kind.

        Found once per model by pricing probe usages with genai-prices and
        checking that a 1,000x larger usage costs exactly 1,000x more; the fast
        path then prices each call with plain arithmetic (genai-prices'
        calculator costs ~1 ms a call, more than everything else tokenlean does).
        """
        key = (model, provider)
        if key in self._linear:
            return self._linear[key]
        result: tuple[ModelPrice, str | None] | None = None
        probes = {
            "input": Usage(input_tokens=1000),
            "output": Usage(output_tokens=1000),
            "read": Usage(input_tokens=1000, cache_read_tokens=1000),
            "write": Usage(input_tokens=1000, cache_write_tokens=1000),
        }
        small = {k: cost for k, u in probes.items()
                 if (cost := self._from_database(u, model=model, provider=provider)) is not None}
        if len(small) == len(probes):  # every probe priced
            big = self._from_database(Usage(input_tokens=1_000_000, output_tokens=1_000_000,
                                            cache_read_tokens=300_000, cache_write_tokens=300_000),
                                      model=model, provider=provider)
            candidate = ModelPrice(
                input_per_mtok=small["input"].input_usd * 1000,
                output_per_mtok=small["output"].output_usd * 1000,
                cached_input_per_mtok=small["read"].input_usd * 1000,
                cache_write_per_mtok=small["write"].input_usd * 1000,
            )
            expected = candidate.cost(Usage(input_tokens=1_000_000, output_tokens=1_000_000,
                                            cache_read_tokens=300_000, cache_write_tokens=300_000))
            if big is not None and (big.input_usd, big.output_usd) == expected:
                result = (candidate, small["input"].provider)
        self._linear[key] = result
        return result

    def _from_database(self, usage: Usage, *, model: str, provider: str | None) -> Cost | None:
        from genai_prices import Usage as GPUsage
        from genai_prices import calc_price

        gp_usage = GPUsage(
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            cache_read_tokens=usage.cache_read_tokens,
            cache_write_tokens=usage.cache_write_tokens,
        )
        bare = model.split("/", 1)[1] if provider is None and "/" in model else model
        guessed_provider = provider or (model.split("/", 1)[0] if "/" in model else None)
        try:
            result = calc_price(gp_usage, model_ref=bare, provider_id=guessed_provider)
        except LookupError:
            try:  # the provider name we guessed may not be genai-prices' id for it
                result = calc_price(gp_usage, model_ref=bare)
            except LookupError:
                self._warn_unknown(model)
                return None
        source, when = _genai_prices_source()
        return Cost(input_usd=Decimal(result.input_price), output_usd=Decimal(result.output_price),
                    model=model, provider=result.provider.id, source=source, price_date=when)

    def _warn_unknown(self, model: str) -> None:
        if model in self._warned:
            return
        self._warned.add(model)
        from .errors import TokenleanWarning

        warnings.warn(
            f"no price known for model {model!r}: its cost is recorded as unknown (None), "
            "not $0. Add one with PriceTable(overrides={...: ModelPrice(...)}).",
            TokenleanWarning, stacklevel=3,
        )


_default = PriceTable()


def default_price_table() -> PriceTable:
    return _default


def price(usage: Usage, *, model: str, provider: str | None = None,
          table: PriceTable | None = None) -> Cost | None:
    """Cost of ``usage`` on ``model`` (``None`` if the price is unknown)."""
    return (table or _default).price(usage, model=model, provider=provider)
