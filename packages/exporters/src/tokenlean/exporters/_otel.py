"""OpenTelemetry exporter following the GenAI semantic conventions.

Per call it records the semconv metrics ``gen_ai.client.token.usage``
(histogram, ``{token}``, split by ``gen_ai.token.type`` = ``input``/``output``)
and ``gen_ai.client.operation.duration`` (histogram, ``s``), tokenlean's own
counters ``tokenlean.cost`` (``USD``), ``tokenlean.calls``,
``tokenlean.saved.tokens`` and ``tokenlean.saved.cost`` (by
``tokenlean.layer``), and one ``CLIENT`` span named ``chat {model}`` with the
``gen_ai.usage.*`` attributes. The exact list is in ``docs/accounting.md``.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from tokenlean.core import CallRecord, ConfigError
from tokenlean.core._optional import require
from tokenlean.core.outage import Outage

from ._fields import provider_name, saved_by_layer, spent_usd
from ._outage import exporter_outage

if TYPE_CHECKING:
    from opentelemetry.trace import Tracer

__all__ = ["OTelExporter"]

# Bucket boundaries the GenAI semantic conventions recommend.
TOKEN_BUCKETS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304,
                 16777216, 67108864)
DURATION_BUCKETS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48,
                    40.96, 81.92)
_FEATURE = "the OpenTelemetry exporter"


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("tokenlean-exporters")
    except PackageNotFoundError:
        return "0.0.0"


def base_attributes(record: CallRecord, operation: str) -> dict[str, Any]:
    """Attributes every metric point of a call carries (low cardinality only)."""
    provider = provider_name(record)
    return {
        "gen_ai.operation.name": operation,
        "gen_ai.provider.name": provider,
        "gen_ai.system": provider,  # deprecated name, still read by many backends
        "gen_ai.request.model": record.model,
        "gen_ai.response.model": record.model,
        "tokenlean.tenant": record.tenant,
    }


def span_attributes(record: CallRecord, operation: str) -> dict[str, Any]:
    """The span's attributes: semconv ``gen_ai.*`` plus ``tokenlean.*``."""
    usage = record.usage
    attrs: dict[str, Any] = {
        **base_attributes(record, operation),
        "gen_ai.usage.input_tokens": usage.input_tokens,
        "gen_ai.usage.output_tokens": usage.output_tokens,
        "gen_ai.usage.cache_read.input_tokens": usage.cache_read_tokens,
        "gen_ai.usage.cache_creation.input_tokens": usage.cache_write_tokens,
        "gen_ai.usage.reasoning.output_tokens": usage.reasoning_tokens,
        "gen_ai.response.finish_reasons": (record.finish_reason,),
        "tokenlean.request_id": record.request_id,
        "tokenlean.cached": record.cached,
        "tokenlean.saved.tokens": record.saved_tokens,
    }
    if record.cost is not None:
        attrs["tokenlean.cost"] = float(record.cost.total_usd)
        attrs["tokenlean.cost.input"] = float(record.cost.input_usd)
        attrs["tokenlean.cost.output"] = float(record.cost.output_usd)
        if usage.reasoning_tokens:  # the reasoning share of the output dollars
            attrs["tokenlean.cost.reasoning"] = float(record.reasoning_cost_usd or 0)
        attrs["tokenlean.price.source"] = record.cost.source
        if record.cost.price_date is not None:
            attrs["tokenlean.price.date"] = record.cost.price_date.isoformat()
    saved_usd = [s for *_, s in saved_by_layer(record) if s is not None]
    if saved_usd:
        attrs["tokenlean.saved.cost"] = float(sum(saved_usd))
    if record.cache_score is not None:
        attrs["tokenlean.cache.score"] = record.cache_score
    if record.user:
        attrs["enduser.id"] = record.user
    if record.run_id:
        attrs["tokenlean.run_id"] = record.run_id
    if record.parent_run_id:
        attrs["tokenlean.parent_run_id"] = record.parent_run_id
    if record.tags:
        attrs["tokenlean.tags"] = tuple(record.tags)
    return attrs


class _Watched:
    """Wraps an SDK exporter (span or metric) so that its results feed an outage watch."""

    def __init__(self, inner: Any, watch: Outage) -> None:
        self._inner, self._watch = inner, watch

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def export(self, batch: Any, *args: Any, **kwargs: Any) -> Any:
        """Runs on the SDK's background thread: failures are deferred to the user's."""
        seen = self._watch.begin()
        try:
            result = self._inner.export(batch, *args, **kwargs)
        except Exception as exc:
            self._watch.failed(seen, exc, "export", defer=True)
            raise
        if getattr(result, "name", "") == "SUCCESS":
            self._watch.ok(seen)
        else:
            self._watch.failed(seen, f"{self._endpoint()} returned {result}", "export",
                               defer=True)
        return result

    def _endpoint(self) -> str:
        return str(getattr(self._inner, "_endpoint", type(self._inner).__name__))


class OTelExporter:
    """Record each call as OpenTelemetry metrics and a span.

    By default it uses the global ``MeterProvider`` / ``TracerProvider``
    (configure them as you already do, or with :meth:`otlp`). Pass
    ``meter_provider=`` / ``tracer_provider=`` to use others; ``traces=False``
    or ``metrics=False`` turn one signal off.
    """

    name = "otel"

    def __init__(self, *, meter_provider: Any = None, tracer_provider: Any = None,
                 metrics: bool = True, traces: bool = True, operation: str = "chat") -> None:
        if not (metrics or traces):
            raise ConfigError("OTelExporter needs metrics=True or traces=True")
        if not isinstance(operation, str) or not operation:
            raise ConfigError("operation must be a gen_ai.operation.name such as 'chat'")
        otel_metrics = require("opentelemetry.metrics", extra="otel", feature=_FEATURE)
        otel_trace = require("opentelemetry.trace", extra="otel", feature=_FEATURE)
        self.operation = operation
        self._trace = otel_trace
        self.watch = exporter_outage(self.name)  # exports (background threads)
        self._record_watch = exporter_outage(self.name)  # recording on the caller's thread
        self._providers: list[Any] = []
        self._meter_provider = meter_provider
        self._tracer_provider = tracer_provider
        self._tracer: Tracer | None = None
        if traces:
            provider = tracer_provider or otel_trace.get_tracer_provider()
            self._tracer = provider.get_tracer("tokenlean", _version())
        self._metrics = metrics
        if metrics:
            meter = (meter_provider or otel_metrics.get_meter_provider()).get_meter(
                "tokenlean", _version())
            self._token_usage = meter.create_histogram(
                "gen_ai.client.token.usage", unit="{token}",
                description="Number of input and output tokens used.",
                explicit_bucket_boundaries_advisory=list(TOKEN_BUCKETS))
            self._duration = meter.create_histogram(
                "gen_ai.client.operation.duration", unit="s",
                description="GenAI operation duration.",
                explicit_bucket_boundaries_advisory=list(DURATION_BUCKETS))
            self._cost = meter.create_counter(
                "tokenlean.cost", unit="USD",
                description="Dollars spent on model calls (priced calls only).")
            self._calls = meter.create_counter(
                "tokenlean.calls", unit="{call}",
                description="Model calls, by cache hit and by whether a price was known.")
            self._saved_tokens = meter.create_counter(
                "tokenlean.saved.tokens", unit="{token}",
                description="Tokens a tokenlean layer removed, by layer and token type.")
            self._saved_cost = meter.create_counter(
                "tokenlean.saved.cost", unit="USD",
                description="Dollars a tokenlean layer saved at the model's rates, by layer.")
        self._lock = threading.Lock()

    @classmethod
    def otlp(cls, *, endpoint: str = "http://localhost:4318",
             headers: Mapping[str, str] | None = None,
             timeout_s: float = 10.0, export_interval_s: float = 60.0,
             resource_attributes: Mapping[str, Any] | None = None,
             metrics: bool = True, traces: bool = True) -> OTelExporter:
        """An exporter with its own providers that send OTLP/HTTP (protobuf) to
        ``endpoint`` (a collector, Langfuse's OTel endpoint, ...).

        Spans go through a batch processor and metrics through a periodic
        reader, both on background threads; a failed export starts an outage
        whose single warning is raised on the next :meth:`record` or
        :meth:`force_flush` on your thread.
        """
        require("opentelemetry.sdk", extra="otel", feature=_FEATURE)
        require("opentelemetry.exporter.otlp.proto.http", extra="otel", feature=_FEATURE)
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        if timeout_s <= 0 or export_interval_s <= 0:
            raise ConfigError("timeout_s and export_interval_s must be positive")
        base = endpoint.rstrip("/")
        resource = Resource.create({"service.name": "tokenlean", **(resource_attributes or {})})
        watch = exporter_outage(cls.name)
        meter_provider = tracer_provider = None
        # the arg-type ignores below: _Watched stands in for the SDK exporter it wraps
        # (duck-typed, not a subclass)
        if metrics:
            metric_exporter = _Watched(OTLPMetricExporter(
                endpoint=f"{base}/v1/metrics", headers=dict(headers or {}), timeout=timeout_s),
                watch)
            reader = PeriodicExportingMetricReader(
                metric_exporter, export_interval_millis=export_interval_s * 1000,  # type: ignore[arg-type]
                export_timeout_millis=timeout_s * 1000)
            meter_provider = MeterProvider(resource=resource, metric_readers=[reader])
        if traces:
            tracer_provider = TracerProvider(resource=resource)
            tracer_provider.add_span_processor(BatchSpanProcessor(_Watched(OTLPSpanExporter(  # type: ignore[arg-type]
                endpoint=f"{base}/v1/traces", headers=dict(headers or {}), timeout=timeout_s),
                watch)))
        exporter = cls(meter_provider=meter_provider, tracer_provider=tracer_provider,
                       metrics=metrics, traces=traces)
        exporter.watch = watch
        exporter._providers = [p for p in (meter_provider, tracer_provider) if p is not None]
        return exporter

    # ---- the sink interface -------------------------------------------------

    def record(self, record: CallRecord) -> None:
        """Record one call. Never raises: a failure warns once per outage."""
        self.watch.emit()
        seen = self._record_watch.begin()
        try:
            if self._metrics:
                self._record_metrics(record)
            if self._tracer is not None:
                self._record_span(self._tracer, record)
        except Exception as exc:
            self._record_watch.failed(seen, exc, "record")
        else:
            self._record_watch.ok(seen)

    async def arecord(self, record: CallRecord) -> None:
        self.record(record)  # in-memory instruments: nothing to wait for

    def force_flush(self, timeout_s: float = 30.0) -> None:
        """Export what the providers buffer now; warns if that starts an outage."""
        for provider in self._flushable():
            provider.force_flush(int(timeout_s * 1000))
        self.watch.emit()

    def close(self) -> None:
        """Flush and shut down the providers this exporter created (see :meth:`otlp`)."""
        for provider in self._providers:
            provider.shutdown()
        self.watch.emit()

    # ---- helpers --------------------------------------------------------------

    def _flushable(self) -> Sequence[Any]:
        own = [p for p in (self._meter_provider, self._tracer_provider) if p is not None]
        return [p for p in own if callable(getattr(p, "force_flush", None))]

    def _record_metrics(self, record: CallRecord) -> None:
        attrs = base_attributes(record, self.operation)
        usage = record.usage
        if not record.cached:
            self._token_usage.record(usage.input_tokens, {**attrs, "gen_ai.token.type": "input"})
            self._token_usage.record(usage.output_tokens, {**attrs, "gen_ai.token.type": "output"})
        self._duration.record(record.latency_s, {**attrs, "tokenlean.cached": record.cached})
        self._calls.add(1, {**attrs, "tokenlean.cached": record.cached,
                            "tokenlean.priced": record.cost is not None})
        spent = spent_usd(record)
        if spent is not None:  # an unknown cost adds no point: missing, never $0
            self._cost.add(spent, attrs)
        for layer, saved_in, saved_out, saved_usd in saved_by_layer(record):
            layer_attrs = {**attrs, "tokenlean.layer": layer}
            if saved_in:
                self._saved_tokens.add(saved_in, {**layer_attrs, "gen_ai.token.type": "input"})
            if saved_out:
                self._saved_tokens.add(saved_out, {**layer_attrs, "gen_ai.token.type": "output"})
            if saved_usd is not None:
                self._saved_cost.add(float(saved_usd), layer_attrs)

    def _record_span(self, tracer: Tracer, record: CallRecord) -> None:
        trace = self._trace
        start_ns = int(record.started_at * 1e9)
        end_ns = start_ns + int(max(record.latency_s, 0.0) * 1e9)
        span = tracer.start_span(
            f"{self.operation} {record.model}", kind=trace.SpanKind.CLIENT,
            attributes=span_attributes(record, self.operation), start_time=start_ns)
        for layer, saved_in, saved_out, saved_usd in saved_by_layer(record):
            event: dict[str, Any] = {"tokenlean.layer": layer,
                                     "tokenlean.saved.input_tokens": saved_in,
                                     "tokenlean.saved.output_tokens": saved_out}
            if saved_usd is not None:
                event["tokenlean.saved.cost"] = float(saved_usd)
            span.add_event("tokenlean.layer", event, timestamp=start_ns)
        if record.finish_reason == "error":
            span.set_status(trace.Status(trace.StatusCode.ERROR))
        span.end(end_time=end_ns)
