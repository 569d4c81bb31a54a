from __future__ import annotations

from decimal import Decimal

import pytest
from genai_prices import Usage as GPUsage
from genai_prices import calc_price

from tokenlean.core import ConfigError, ModelPrice, PriceTable, TokenleanWarning, Usage, price

M = 1_000_000


def test_gpt4o_matches_genai_prices() -> None:
    ours = price(Usage(input_tokens=M, output_tokens=M), model="gpt-4o")
    theirs = calc_price(GPUsage(input_tokens=M, output_tokens=M), model_ref="gpt-4o",
                        provider_id="openai")
    assert ours is not None
    assert ours.total_usd == theirs.total_price
    assert ours.input_usd == theirs.input_price and ours.output_usd == theirs.output_price
    assert ours.source.startswith("genai-prices ")
    assert ours.price_date is not None


def test_cached_input_is_priced_at_cached_rate() -> None:
    full = price(Usage(input_tokens=M), model="gpt-4o")
    cached = price(Usage(input_tokens=M, cache_read_tokens=M), model="gpt-4o")
    assert full is not None and cached is not None
    assert cached.input_usd == full.input_usd / 2  # gpt-4o: $1.25 cached vs $2.50


def test_anthropic_cache_write_costs_more_than_input() -> None:
    plain = price(Usage(input_tokens=1000), model="claude-sonnet-4-5")
    write = price(Usage(input_tokens=1000, cache_write_tokens=1000), model="claude-sonnet-4-5")
    assert plain is not None and write is not None
    assert write.input_usd > plain.input_usd
    assert write.provider == "anthropic"


def test_unknown_model_is_none_with_warning_never_zero() -> None:
    table = PriceTable()
    with pytest.warns(TokenleanWarning, match="no price known"):
        assert table.price(Usage(input_tokens=10), model="nobody-knows-this-model") is None
    # warned once per model, not on every call
    assert table.price(Usage(input_tokens=10), model="nobody-knows-this-model") is None


def test_override_wins() -> None:
    table = PriceTable(overrides={"gpt-4o": ModelPrice(input_per_mtok=1, output_per_mtok=2,
                                                       cached_input_per_mtok=Decimal("0.1"))})
    cost = table.price(Usage(input_tokens=M, output_tokens=M, cache_read_tokens=M // 2),
                       model="gpt-4o")
    assert cost is not None and cost.source == "override"
    assert cost.input_usd == Decimal("0.55") and cost.output_usd == 2


@pytest.mark.parametrize("bad", [-1, "abc", float("nan")])
def test_bad_override(bad: object) -> None:
    with pytest.raises(ConfigError):
        ModelPrice(input_per_mtok=bad, output_per_mtok=1)  # type: ignore[arg-type]


@pytest.mark.parametrize("model", ["gpt-4o", "gpt-4o-mini", "claude-sonnet-4-5", "gpt-4.1"])
@pytest.mark.parametrize("usage", [
    Usage(input_tokens=123, output_tokens=45),
    Usage(input_tokens=250_000, output_tokens=9_000, cache_read_tokens=100_000),
    Usage(input_tokens=5_000, output_tokens=0, cache_write_tokens=1_000, cache_read_tokens=2_000),
])
def test_fast_path_equals_genai_prices_calculator(model: str, usage: Usage) -> None:
    ours = PriceTable().price(usage, model=model)
    theirs = calc_price(GPUsage(input_tokens=usage.input_tokens, output_tokens=usage.output_tokens,
                                cache_read_tokens=usage.cache_read_tokens,
                                cache_write_tokens=usage.cache_write_tokens), model_ref=model)
    assert ours is not None
    assert ours.input_usd == theirs.input_price and ours.output_usd == theirs.output_price
