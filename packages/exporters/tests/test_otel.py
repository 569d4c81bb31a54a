"""OpenTelemetry exporter, checked with the SDK's in-memory reader/exporter and
with a real OTLP/HTTP receiver on loopback."""

from __future__ import annotations

import threading
import warnings

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tokenlean.core import ConfigError, LayerReport, TokenleanWarning, Usage
from tokenlean.exporters import OTelExporter


@pytest.fixture
def sdk():
    reader = InMemoryMetricReader()
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    meter_provider = MeterProvider(metric_readers=[reader])
    exporter = OTelExporter(meter_provider=meter_provider, tracer_provider=tracer_provider)
    yield exporter, reader, spans
    meter_provider.shutdown()
    tracer_provider.shutdown()


def points(reader: InMemoryMetricReader) -> dict[str, list]:
    out: dict[str, list] = {}
    data = reader.get_metrics_data()
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                out.setdefault(metric.name, []).extend(
                    (dict(p.attributes), p, metric.unit) for p in metric.data.data_points)
    return out


def test_metrics_follow_genai_semconv(sdk, record_factory, compress_layer) -> None:
    exporter, reader, _ = sdk
    rec = record_factory(layers=(compress_layer(),))
    exporter.record(rec)
    exporter.record(record_factory(tenant="other", layers=(compress_layer(),)))
    got = points(reader)

    usage = got["gen_ai.client.token.usage"]
    assert {u for *_, u in usage} == {"{token}"}
    by_type: dict[str, int] = {}
    for attrs, point, _ in usage:
        assert attrs["gen_ai.operation.name"] == "chat"
        assert attrs["gen_ai.request.model"] == "gpt-4o-mini"
        assert attrs["gen_ai.provider.name"] == "openai"
        by_type[attrs["gen_ai.token.type"]] = by_type.get(attrs["gen_ai.token.type"], 0) + point.sum
    assert by_type == {"input": 2400, "output": 600}

    duration = got["gen_ai.client.operation.duration"]
    assert duration[0][2] == "s"
    assert sum(p.count for _, p, _ in duration) == 2

    cost = got["tokenlean.cost"]
    assert cost[0][2] == "USD"
    assert sum(p.value for _, p, _ in cost) == pytest.approx(2 * float(rec.cost_usd), rel=1e-12)
    assert {a["tokenlean.tenant"] for a, _, _ in cost} == {"acme", "other"}

    saved = got["tokenlean.saved.tokens"]
    assert {(a["tokenlean.layer"], a["gen_ai.token.type"]) for a, _, _ in saved} == {
        ("compress", "input")}
    assert sum(p.value for _, p, _ in saved) == 1000
    saved_cost = got["tokenlean.saved.cost"]
    assert sum(p.value for _, p, _ in saved_cost) == pytest.approx(
        2 * float(rec.layers[0].saved_usd), rel=1e-12)


def test_span_carries_usage_and_cost(sdk, record_factory, compress_layer) -> None:
    exporter, _, spans = sdk
    rec = record_factory(layers=(compress_layer(),), run_id="r1", parent_run_id="p1",
                         tags=("rag",))
    exporter.record(rec)
    (span,) = spans.get_finished_spans()
    attrs = dict(span.attributes)
    assert span.name == "chat gpt-4o-mini"
    assert span.kind.name == "CLIENT"
    assert attrs["gen_ai.usage.input_tokens"] == 1200
    assert attrs["gen_ai.usage.output_tokens"] == 300
    assert attrs["gen_ai.usage.cache_read.input_tokens"] == 1000
    assert attrs["gen_ai.usage.reasoning.output_tokens"] == 100
    # gpt-4o-mini output $0.60/Mtok; 100 of the 300 output tokens are reasoning
    assert attrs["tokenlean.cost.reasoning"] == pytest.approx(100 * 0.60 / 1e6, rel=1e-12)
    assert attrs["gen_ai.request.model"] == "gpt-4o-mini"
    assert attrs["gen_ai.system"] == attrs["gen_ai.provider.name"] == "openai"
    assert attrs["tokenlean.cost"] == pytest.approx(float(rec.cost_usd))
    assert attrs["tokenlean.price.source"].startswith("genai-prices")
    assert attrs["enduser.id"] == "u1"
    assert attrs["tokenlean.run_id"] == "r1" and attrs["tokenlean.parent_run_id"] == "p1"
    assert tuple(attrs["tokenlean.tags"]) == ("rag",)
    assert (span.end_time - span.start_time) == pytest.approx(0.25e9, rel=1e-6)
    (event,) = span.events
    assert event.attributes["tokenlean.layer"] == "compress"
    assert event.attributes["tokenlean.saved.input_tokens"] == 500


def test_cache_hit_costs_nothing_and_saves_the_call(sdk, record_factory) -> None:
    exporter, reader, spans = sdk
    full = record_factory()
    hit = LayerReport(layer="cache", saved_input_tokens=1200, saved_output_tokens=300,
                      saved_usd=full.cost_usd)
    exporter.record(record_factory(cached=True, layers=(hit,)))
    got = points(reader)
    assert "gen_ai.client.token.usage" not in got  # no model tokens were used
    assert "tokenlean.cost" not in got  # nothing spent: no point (0 would make unpriced look free)
    assert sum(p.value for _, p, _ in got["tokenlean.saved.cost"]) == pytest.approx(
        float(full.cost_usd))
    calls = got["tokenlean.calls"]
    assert [a["tokenlean.cached"] for a, _, _ in calls] == [True]
    (span,) = spans.get_finished_spans()
    assert span.attributes["tokenlean.cached"] is True
    assert span.attributes["tokenlean.cost"] == 0


def test_unpriced_model_counts_call_but_no_dollars(sdk, record_factory) -> None:
    exporter, reader, _ = sdk
    with pytest.warns(TokenleanWarning, match="no price known"):
        rec = record_factory(model="my-own-finetune-xyz", usage=Usage(input_tokens=10,
                                                                      output_tokens=5))
    assert rec.cost is None
    exporter.record(rec)
    got = points(reader)
    assert "tokenlean.cost" not in got
    assert [a["tokenlean.priced"] for a, _, _ in got["tokenlean.calls"]] == [False]


def test_config_errors() -> None:
    with pytest.raises(ConfigError):
        OTelExporter(metrics=False, traces=False)
    with pytest.raises(ConfigError):
        OTelExporter(operation="")


def test_otlp_http_to_real_receiver(otlp_receiver, record_factory, decode_attrs) -> None:
    exporter = OTelExporter.otlp(endpoint=otlp_receiver.url, timeout_s=5)
    rec = record_factory()
    exporter.record(rec)
    exporter.force_flush()
    exporter.close()
    (span,) = otlp_receiver.spans
    attrs = decode_attrs(span)
    assert span.name == "chat gpt-4o-mini"
    assert attrs["gen_ai.usage.input_tokens"] == 1200
    assert attrs["tokenlean.cost"] == pytest.approx(float(rec.cost_usd))
    names = {m.name for req in otlp_receiver.metrics for rm in req.resource_metrics
             for sm in rm.scope_metrics for m in sm.metrics}
    assert {"gen_ai.client.token.usage", "gen_ai.client.operation.duration", "tokenlean.cost",
            "tokenlean.calls"} <= names
    cost_points = [p for req in otlp_receiver.metrics for rm in req.resource_metrics
                   for sm in rm.scope_metrics for m in sm.metrics if m.name == "tokenlean.cost"
                   for p in m.sum.data_points]
    assert cost_points[-1].as_double == pytest.approx(float(rec.cost_usd))


def test_collector_down_warns_once_per_outage(free_port, receiver_on, record_factory) -> None:
    threads_before = {t.ident for t in threading.enumerate()}
    exporter = OTelExporter.otlp(endpoint=f"http://127.0.0.1:{free_port}", timeout_s=1)
    try:
        exporter.record(record_factory())  # the call itself never fails
        with pytest.warns(TokenleanWarning, match="exporter 'otel' export failed"):
            exporter.force_flush(timeout_s=5)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # same outage: no second warning
            exporter.record(record_factory())
            exporter.force_flush(timeout_s=5)
        assert exporter.watch.down and exporter.watch.outages == 1
        receiver = receiver_on(free_port)  # the collector comes back
        exporter.record(record_factory())
        exporter.force_flush(timeout_s=5)
        assert not exporter.watch.down
        assert receiver.spans
        receiver.close()  # down again: a new outage, a new warning
        exporter.record(record_factory())
        with pytest.warns(TokenleanWarning):
            exporter.force_flush(timeout_s=5)
        assert exporter.watch.outages == 2
    finally:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            exporter.close()
    # no leak: the exporter's worker threads are gone after close()
    leftover = [t for t in threading.enumerate() if t.ident not in threads_before and t.is_alive()
                and not t.name.startswith(("ThreadPoolExecutor", "Thread-"))]
    assert leftover == []

