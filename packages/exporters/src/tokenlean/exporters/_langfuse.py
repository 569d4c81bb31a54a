"""Langfuse exporter: one ``generation`` observation per call, with our numbers.

Langfuse re-infers usage and cost from its own price table unless an
observation carries ``usage_details`` and ``cost_details``; this exporter
always sends both, so Langfuse shows tokenlean's token counts and dollars
(cache reads and writes and reasoning tokens each under their own key, a cache
hit as cost 0).
"""

from __future__ import annotations

import base64
from decimal import Decimal
from typing import Any

from tokenlean.core import CallRecord, ConfigError, Usage, price
from tokenlean.core._optional import require

from ._fields import saved_by_layer
from ._otel import _Watched
from ._outage import exporter_outage

__all__ = ["LangfuseExporter", "langfuse_cost_details", "langfuse_usage_details"]

_FEATURE = "the Langfuse exporter"


def langfuse_usage_details(usage: Usage) -> dict[str, int]:
    """Usage in Langfuse's keys (the ones its LangChain integration uses): ``input``
    and ``output`` exclude the cache / reasoning tokens listed under their own key,
    ``total`` is all tokens once."""
    details = {
        "input": usage.input_tokens - usage.cache_read_tokens - usage.cache_write_tokens,
        "output": usage.output_tokens - usage.reasoning_tokens,
        "total": usage.total_tokens,
    }
    for key, value in (("input_cache_read", usage.cache_read_tokens),
                       ("input_cache_creation", usage.cache_write_tokens),
                       ("output_reasoning", usage.reasoning_tokens)):
        if value:
            details[key] = value
    return details


def _component(usage: Usage, record: CallRecord) -> Decimal | None:
    cost = price(usage, model=record.model, provider=record.provider)
    return None if cost is None else cost.input_usd


def langfuse_cost_details(record: CallRecord) -> dict[str, float] | None:
    """Dollars under the same keys as :func:`langfuse_usage_details` (``None`` if unpriced).

    Input cost is split into plain / cache-read / cache-write by pricing each
    part alone with the same price table; when the parts do not add up to the
    recorded input cost (a price override, tiered prices) the split is dropped
    and all input dollars go under ``input``. Reasoning tokens are output
    tokens and cost the output rate.
    """
    cost = record.cost
    if cost is None:
        return None
    usage = record.usage
    details: dict[str, Decimal] = {"input": cost.input_usd, "output": cost.output_usd}
    read, write = usage.cache_read_tokens, usage.cache_write_tokens
    if (read or write) and cost.source != "override":
        plain_tokens = usage.input_tokens - read - write
        parts = {
            "input": _component(Usage(input_tokens=plain_tokens), record),
            "input_cache_read": _component(Usage(input_tokens=read, cache_read_tokens=read),
                                           record),
            "input_cache_creation": _component(
                Usage(input_tokens=write, cache_write_tokens=write), record),
        }
        known = {k: v for k, v in parts.items() if v is not None}
        if len(known) == len(parts) and sum(known.values()) == cost.input_usd:
            details.update({k: v for k, v in known.items()
                            if k == "input" or (read if k == "input_cache_read" else write)})
    reasoning = record.reasoning_cost_usd
    if reasoning:
        details["output_reasoning"] = reasoning
        details["output"] = cost.output_usd - reasoning
    out = {k: float(v) for k, v in details.items()}
    out["total"] = float(cost.total_usd)
    return out


def generation_metadata(record: CallRecord) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "tokenlean.request_id": record.request_id,
        "tokenlean.tenant": record.tenant,
        "tokenlean.cached": record.cached,
        "tokenlean.finish_reason": record.finish_reason,
        "tokenlean.latency_s": record.latency_s,
    }
    if record.cost is not None:
        meta["tokenlean.price_source"] = record.cost.source
        if record.cost.price_date is not None:
            meta["tokenlean.price_date"] = record.cost.price_date.isoformat()
    else:
        meta["tokenlean.priced"] = False
    if record.cache_score is not None:
        meta["tokenlean.cache_score"] = record.cache_score
    layers = []
    for layer, saved_in, saved_out, saved_usd in saved_by_layer(record):
        layers.append({"layer": layer, "saved_input_tokens": saved_in,
                       "saved_output_tokens": saved_out,
                       "saved_usd": None if saved_usd is None else float(saved_usd)})
    if layers:
        meta["tokenlean.layers"] = layers
    if record.run_id:
        meta["tokenlean.run_id"] = record.run_id
    if record.parent_run_id:
        meta["tokenlean.parent_run_id"] = record.parent_run_id
    return meta


class LangfuseExporter:
    """Send each call to Langfuse as a ``generation`` with usage and cost details.

    Either pass a configured ``client`` (a ``langfuse.Langfuse``), or the
    connection: ``public_key``, ``secret_key`` and ``base_url`` (e.g. your
    self-hosted ``http://langfuse:3000``). In the second case the exporter
    builds a client on a private OpenTelemetry ``TracerProvider`` (so it never
    replaces your global one) and watches its OTLP export: a failing Langfuse
    gives one :class:`~tokenlean.core.TokenleanWarning` per outage, raised on
    the next :meth:`record` or :meth:`force_flush`.

    The Langfuse SDK keeps one configuration per public key per process: a
    second exporter with the same key reuses the first one's connection.

    Timestamps: the SDK starts an observation "now", so the generation starts
    when the record is written (just after the call) and lasts the call's
    measured latency; the true start time is in ``metadata`` and the ledger.
    """

    name = "langfuse"

    def __init__(self, *, client: Any = None, public_key: str | None = None,
                 secret_key: str | None = None, base_url: str | None = None,
                 timeout_s: int = 5, flush_at: int | None = None,
                 flush_interval_s: float | None = None, name_prefix: str = "tokenlean") -> None:
        langfuse = require("langfuse", extra="langfuse", feature=_FEATURE)
        self._langfuse = langfuse
        self.watch = exporter_outage(self.name)  # exports (the SDK's background thread)
        self._record_watch = exporter_outage(self.name)  # building the generation, your thread
        self._name_prefix = name_prefix
        self._own = client is None
        self._tracer_provider: Any = None
        if client is None:
            if not (public_key and secret_key and base_url):
                raise ConfigError("LangfuseExporter needs client=Langfuse(...) or public_key, "
                                  "secret_key and base_url")
            if isinstance(timeout_s, bool) or not isinstance(timeout_s, int) or timeout_s < 1:
                raise ConfigError(f"timeout_s must be a positive integer, got {timeout_s!r}")
            client = self._build_client(langfuse, public_key=public_key, secret_key=secret_key,
                                        base_url=base_url.rstrip("/"), timeout_s=timeout_s,
                                        flush_at=flush_at, flush_interval_s=flush_interval_s)
        self.client = client

    def _build_client(self, langfuse: Any, *, public_key: str, secret_key: str, base_url: str,
                      timeout_s: int, flush_at: int | None, flush_interval_s: float | None) -> Any:
        require("opentelemetry.sdk", extra="langfuse", feature=_FEATURE)
        from opentelemetry.exporter.otlp.proto.http import Compression
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.trace import TracerProvider

        auth = base64.b64encode(f"{public_key}:{secret_key}".encode()).decode("ascii")
        headers = {"Authorization": f"Basic {auth}", "x-langfuse-sdk-name": "python",
                   "x-langfuse-public-key": public_key, "x-langfuse-ingestion-version": "4"}
        exporter = _Watched(OTLPSpanExporter(
            endpoint=f"{base_url}/api/public/otel/v1/traces", headers=headers,
            timeout=timeout_s, compression=Compression.Gzip), self.watch)
        self._tracer_provider = TracerProvider()
        return langfuse.Langfuse(
            public_key=public_key, secret_key=secret_key, base_url=base_url, timeout=timeout_s,
            tracer_provider=self._tracer_provider, span_exporter=exporter, flush_at=flush_at,
            flush_interval=flush_interval_s)

    def record(self, record: CallRecord) -> None:
        """Queue one generation. Never raises: a failure warns once per outage."""
        self.watch.emit()
        seen = self._record_watch.begin()
        try:
            self._send(record)
        except Exception as exc:
            self._record_watch.failed(seen, exc, "record")
        else:
            self._record_watch.ok(seen)

    def _send(self, record: CallRecord) -> None:
        kwargs = self._generation_kwargs(record)
        attrs: dict[str, Any] = {"trace_name": kwargs["name"]}
        if record.user:
            attrs["user_id"] = record.user
        if record.tags:
            attrs["tags"] = [str(t) for t in record.tags]
        with self._langfuse.propagate_attributes(**attrs):
            generation = self.client.start_observation(**kwargs)
            start_ns = int(generation._otel_span.start_time or 0) if hasattr(
                generation, "_otel_span") else 0
            end_ns = start_ns + int(max(record.latency_s, 0.0) * 1e9) if start_ns else None
            generation.end(end_time=end_ns)

    async def arecord(self, record: CallRecord) -> None:
        self.record(record)  # the SDK only queues the span; export is in its own thread

    def _generation_kwargs(self, record: CallRecord) -> dict[str, Any]:
        return {
            "name": f"{self._name_prefix} {record.model}",
            "as_type": "generation",
            "model": record.model,
            "usage_details": langfuse_usage_details(record.usage),
            "cost_details": langfuse_cost_details(record),
            "metadata": generation_metadata(record),
            "level": "ERROR" if record.finish_reason == "error" else None,
        }

    def force_flush(self) -> None:
        """Send what the SDK buffers now; warns if that starts an outage."""
        self.client.flush()
        self.watch.emit()

    def close(self) -> None:
        """Flush and stop the client (only one this exporter built)."""
        if self._own:
            self.client.shutdown()
            if self._tracer_provider is not None:  # ours: stop its export thread too
                self._tracer_provider.shutdown()
        else:
            self.client.flush()
        self.watch.emit()
