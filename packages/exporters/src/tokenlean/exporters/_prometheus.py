"""Prometheus exporter: counters and a histogram in a ``prometheus_client`` registry.

Metrics (``namespace`` defaults to ``tokenlean``):

* ``tokenlean_calls_total{model,tenant,cached,priced}``
* ``tokenlean_tokens_total{model,tenant,type}`` with ``type`` in ``input``,
  ``output``, ``cache_read``, ``cache_write``, ``reasoning`` (cache and
  reasoning tokens are *included* in input/output, as in the ledger)
* ``tokenlean_cost_usd_total{model,tenant}`` (priced calls that reached the model:
  an unpriced model has no series, unknown rather than $0)
* ``tokenlean_reasoning_cost_usd_total{model,tenant}``: the reasoning share of those
  dollars (*included* in ``tokenlean_cost_usd_total``; priced calls with reasoning only)
* ``tokenlean_saved_tokens_total{model,tenant,layer,type}``
* ``tokenlean_saved_usd_total{model,tenant,layer}``
* ``tokenlean_call_duration_seconds{model,tenant}`` (histogram)
"""

from __future__ import annotations

from typing import Any

from tokenlean.core import CallRecord, ConfigError
from tokenlean.core._optional import require

from ._fields import spent_usd
from ._otel import DURATION_BUCKETS
from ._outage import exporter_outage

__all__ = ["PrometheusExporter"]

_FEATURE = "the Prometheus exporter"


class PrometheusExporter:
    """Count each call into a Prometheus registry and optionally serve it over HTTP.

    Uses a private ``CollectorRegistry`` unless ``registry=`` is given (pass
    ``prometheus_client.REGISTRY`` to join the process-wide one).
    """

    name = "prometheus"

    def __init__(self, *, registry: Any = None, namespace: str = "tokenlean") -> None:
        prometheus = require("prometheus_client", extra="prometheus", feature=_FEATURE)
        if not isinstance(namespace, str) or not namespace.isidentifier():
            raise ConfigError(f"namespace must be a Prometheus name prefix, got {namespace!r}")
        self._prometheus = prometheus
        self.registry = registry if registry is not None else prometheus.CollectorRegistry()
        base = ("model", "tenant")
        kw = {"namespace": namespace, "registry": self.registry}
        self.calls = prometheus.Counter("calls", "Model calls.", [*base, "cached", "priced"], **kw)
        self.tokens = prometheus.Counter("tokens", "Tokens used by model calls.",
                                         [*base, "type"], **kw)
        self.cost = prometheus.Counter("cost_usd", "Dollars spent (priced calls only).",
                                       base, **kw)
        self.reasoning_cost = prometheus.Counter(
            "reasoning_cost_usd", "The reasoning share of the dollars spent (included in "
            "cost_usd; reasoning tokens are billed as output).", base, **kw)
        self.saved_tokens = prometheus.Counter(
            "saved_tokens", "Tokens a tokenlean layer removed.", [*base, "layer", "type"], **kw)
        self.saved_usd = prometheus.Counter(
            "saved_usd", "Dollars a tokenlean layer saved at the model's rates.",
            [*base, "layer"], **kw)
        self.duration = prometheus.Histogram(
            "call_duration_seconds", "Wall time of a model call.", base,
            buckets=DURATION_BUCKETS, **kw)
        self._servers: list[tuple[Any, Any]] = []
        self.watch = exporter_outage(self.name)

    def record(self, record: CallRecord) -> None:
        """Count one call. Never raises: a failure warns once per outage."""
        seen = self.watch.begin()
        try:
            self._count(record)
        except Exception as exc:
            self.watch.failed(seen, exc, "record")
        else:
            self.watch.ok(seen)

    def _count(self, record: CallRecord) -> None:
        model, tenant = record.model, record.tenant
        usage = record.usage
        self.calls.labels(model, tenant, str(record.cached).lower(),
                          str(record.cost is not None).lower()).inc()
        for kind, value in (("input", usage.input_tokens), ("output", usage.output_tokens),
                            ("cache_read", usage.cache_read_tokens),
                            ("cache_write", usage.cache_write_tokens),
                            ("reasoning", usage.reasoning_tokens)):
            if value:
                self.tokens.labels(model, tenant, kind).inc(value)
        spent = spent_usd(record)
        if spent is not None:  # an unknown cost makes no sample: absent, never 0
            self.cost.labels(model, tenant).inc(spent)
            if usage.reasoning_tokens and not record.cached:
                self.reasoning_cost.labels(model, tenant).inc(
                    float(record.reasoning_cost_usd or 0))
        for report in record.layers:
            if report.saved_input_tokens:
                self.saved_tokens.labels(model, tenant, report.layer, "input").inc(
                    report.saved_input_tokens)
            if report.saved_output_tokens:
                self.saved_tokens.labels(model, tenant, report.layer, "output").inc(
                    report.saved_output_tokens)
            if report.saved_usd is not None:
                self.saved_usd.labels(model, tenant, report.layer).inc(float(report.saved_usd))
        self.duration.labels(model, tenant).observe(max(record.latency_s, 0.0))

    async def arecord(self, record: CallRecord) -> None:
        self.record(record)

    def serve(self, port: int = 9464, *, addr: str = "127.0.0.1") -> int:
        """Serve ``/metrics`` on ``addr:port`` in a daemon thread; returns the port
        (pass ``port=0`` for a free one). Stop it with :meth:`close`."""
        server, thread = self._prometheus.start_http_server(port, addr=addr,
                                                            registry=self.registry)
        self._servers.append((server, thread))
        return int(server.server_address[1])

    def generate_latest(self) -> bytes:
        """The registry in the Prometheus text format."""
        return bytes(self._prometheus.generate_latest(self.registry))

    def close(self) -> None:
        """Stop the HTTP servers started by :meth:`serve`."""
        while self._servers:
            server, thread = self._servers.pop()
            server.shutdown()
            server.server_close()
            thread.join(timeout=5)
