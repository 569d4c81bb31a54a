"""Pure helpers shared by the exporters: what one record says, as plain values."""

from __future__ import annotations

from decimal import Decimal

from tokenlean.core import CallRecord

__all__ = ["provider_name", "saved_by_layer", "spent_usd"]

# genai-prices provider ids -> OpenTelemetry gen_ai.provider.name well-known values
_OTEL_PROVIDER = {
    "google": "gcp.gen_ai",
    "azure": "azure.ai.openai",
    "aws": "aws.bedrock",
    "bedrock": "aws.bedrock",
    "mistral": "mistral_ai",
    "x-ai": "x_ai",
    "xai": "x_ai",
}


def provider_name(record: CallRecord) -> str:
    """The provider: the record's, the cost's, a ``provider/`` model prefix, else ``"unknown"``."""
    name = record.provider or (record.cost.provider if record.cost is not None else None)
    if not name and "/" in record.model:
        name = record.model.split("/", 1)[0]
    name = (name or "unknown").lower()
    return _OTEL_PROVIDER.get(name, name)


def saved_by_layer(record: CallRecord) -> list[tuple[str, int, int, Decimal | None]]:
    """``(layer, saved_input_tokens, saved_output_tokens, saved_usd)`` per layer report."""
    return [(r.layer, r.saved_input_tokens, r.saved_output_tokens, r.saved_usd)
            for r in record.layers]


def spent_usd(record: CallRecord) -> float | None:
    """Dollars to add to a cost metric: ``None`` for a call with no known price (no
    sample: a backend shows it as missing, never as $0) and for a cache hit (it
    spent nothing, and a 0 sample would make an unpriced model look free)."""
    if record.cost is None or record.cached:
        return None
    return float(record.cost.total_usd)
