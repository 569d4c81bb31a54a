"""What the pipeline remembers about one call: the ledger's row."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from .types import Cost, Usage

__all__ = ["CallRecord", "LayerReport"]


@dataclass(frozen=True, slots=True, kw_only=True)
class LayerReport:
    """One layer's effect on one call.

    ``saved_input_tokens`` is measured (prompt tokens before minus after the
    layer); ``saved_output_tokens`` is the layer's own estimate (a cache hit
    knows it exactly, a budget only bounds it). ``saved_usd`` prices both at
    the model's rates, ``None`` when the model's price is unknown.
    """

    layer: str
    saved_input_tokens: int = 0
    saved_output_tokens: int = 0
    saved_usd: Decimal | None = None
    quality: Mapping[str, float] = field(default_factory=dict)
    detail: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "layer": self.layer,
            "saved_input_tokens": self.saved_input_tokens,
            "saved_output_tokens": self.saved_output_tokens,
            "saved_usd": None if self.saved_usd is None else str(self.saved_usd),
            "quality": dict(self.quality),
            "detail": dict(self.detail),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LayerReport:
        saved = data.get("saved_usd")
        return cls(
            layer=data["layer"],
            saved_input_tokens=int(data.get("saved_input_tokens", 0)),
            saved_output_tokens=int(data.get("saved_output_tokens", 0)),
            saved_usd=None if saved is None else Decimal(str(saved)),
            quality=dict(data.get("quality") or {}),
            detail=dict(data.get("detail") or {}),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class CallRecord:
    """Usage, cost and per-layer savings of one call (one ledger row)."""

    request_id: str
    model: str
    provider: str | None = None
    tenant: str = "default"
    user: str | None = None
    usage: Usage = field(default_factory=Usage)
    cost: Cost | None = None
    cached: bool = False
    cache_score: float | None = None
    finish_reason: str = "stop"
    latency_s: float = 0.0
    started_at: float = field(default_factory=time.time)
    layers: tuple[LayerReport, ...] = ()
    run_id: str | None = None
    parent_run_id: str | None = None
    tags: tuple[str, ...] = ()
    metadata: Mapping[str, Any] = field(default_factory=dict)

    @property
    def cost_usd(self) -> Decimal | None:
        return None if self.cost is None else self.cost.total_usd

    @property
    def reasoning_cost_usd(self) -> Decimal | None:
        """The reasoning share of the cost: reasoning tokens are output tokens, billed at
        the output rate, so their share of the output dollars (``None``: unpriced)."""
        if self.cost is None:
            return None
        usage = self.usage
        if not usage.reasoning_tokens or not usage.output_tokens:
            return Decimal(0)
        return self.cost.output_usd * usage.reasoning_tokens / usage.output_tokens

    @property
    def day(self) -> str:
        return datetime.fromtimestamp(self.started_at, tz=UTC).date().isoformat()

    @property
    def saved_tokens(self) -> int:
        return sum(r.saved_input_tokens + r.saved_output_tokens for r in self.layers)

    @property
    def not_cached(self) -> str | None:
        """Why a cache that ran did not store this call's answer (``"sampled"``,
        ``"truncated"``, ... see ``tokenlean.cache.NOT_CACHED``); None when it was
        stored, was a hit, or no cache ran."""
        for report in self.layers:
            why = report.detail.get("not_cached")
            if why:
                return str(why)
        return None

    def to_dict(self) -> dict[str, Any]:
        usage = self.usage
        return {
            "request_id": self.request_id,
            "model": self.model,
            "provider": self.provider,
            "tenant": self.tenant,
            "user": self.user,
            "input_tokens": usage.input_tokens,
            "output_tokens": usage.output_tokens,
            "cache_read_tokens": usage.cache_read_tokens,
            "cache_write_tokens": usage.cache_write_tokens,
            "reasoning_tokens": usage.reasoning_tokens,
            "cost_usd": None if self.cost is None else str(self.cost.total_usd),
            "input_cost_usd": None if self.cost is None else str(self.cost.input_usd),
            "output_cost_usd": None if self.cost is None else str(self.cost.output_usd),
            "price_source": None if self.cost is None else self.cost.source,
            "price_provider": None if self.cost is None else self.cost.provider,
            "price_date": (None if self.cost is None or self.cost.price_date is None
                           else self.cost.price_date.isoformat()),
            "cached": self.cached,
            "cache_score": self.cache_score,
            "finish_reason": self.finish_reason,
            "latency_s": self.latency_s,
            "started_at": self.started_at,
            "day": self.day,
            "layers": [r.to_dict() for r in self.layers],
            "run_id": self.run_id,
            "parent_run_id": self.parent_run_id,
            "tags": list(self.tags),
            "metadata": dict(self.metadata),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CallRecord:
        cost = None
        if data.get("cost_usd") is not None:
            from datetime import date

            price_date = data.get("price_date")
            cost = Cost(
                input_usd=Decimal(str(data.get("input_cost_usd") or "0")),
                output_usd=Decimal(str(data.get("output_cost_usd") or "0")),
                model=data["model"],
                provider=data.get("price_provider"),
                source=data.get("price_source") or "",
                price_date=date.fromisoformat(price_date) if price_date else None,
            )
        return cls(
            request_id=data["request_id"],
            model=data["model"],
            provider=data.get("provider"),
            tenant=data.get("tenant") or "default",
            user=data.get("user"),
            usage=Usage(
                input_tokens=int(data.get("input_tokens", 0)),
                output_tokens=int(data.get("output_tokens", 0)),
                cache_read_tokens=int(data.get("cache_read_tokens", 0)),
                cache_write_tokens=int(data.get("cache_write_tokens", 0)),
                reasoning_tokens=int(data.get("reasoning_tokens", 0)),
            ),
            cost=cost,
            cached=bool(data.get("cached")),
            cache_score=data.get("cache_score"),
            finish_reason=data.get("finish_reason") or "stop",
            latency_s=float(data.get("latency_s") or 0.0),
            started_at=float(data.get("started_at") or 0.0),
            layers=tuple(LayerReport.from_dict(r) for r in data.get("layers") or ()),
            run_id=data.get("run_id"),
            parent_run_id=data.get("parent_run_id"),
            tags=tuple(data.get("tags") or ()),
            metadata=dict(data.get("metadata") or {}),
        )
