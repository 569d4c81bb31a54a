"""Langfuse exporter: the real SDK sends to a real OTLP/HTTP receiver on loopback
that stands in for Langfuse's ``/api/public/otel/v1/traces`` endpoint."""

from __future__ import annotations

import json
import threading
import uuid
import warnings
from decimal import Decimal

import pytest

from tokenlean.core import ConfigError, LayerReport, ModelPrice, PriceTable, TokenleanWarning, Usage
from tokenlean.exporters import LangfuseExporter, langfuse_cost_details, langfuse_usage_details


def test_usage_details_split_cache_and_reasoning() -> None:
    usage = Usage(input_tokens=1200, output_tokens=300, cache_read_tokens=1000,
                  cache_write_tokens=50, reasoning_tokens=100)
    assert langfuse_usage_details(usage) == {
        "input": 150, "input_cache_read": 1000, "input_cache_creation": 50,
        "output": 200, "output_reasoning": 100, "total": 1500}


def test_cost_details_price_cache_reads_at_cached_rate(record_factory) -> None:
    rec = record_factory(model="claude-3-5-sonnet-20241022", usage=Usage(
        input_tokens=1_000_000 + 2_000_000 + 500_000, cache_read_tokens=2_000_000,
        cache_write_tokens=500_000, output_tokens=1_000_000))
    details = langfuse_cost_details(rec)
    assert details is not None
    # Claude 3.5 Sonnet: $3 in, $0.30 cache read, $3.75 cache write, $15 out per Mtok
    assert details["input"] == pytest.approx(3.0)
    assert details["input_cache_read"] == pytest.approx(0.6)
    assert details["input_cache_creation"] == pytest.approx(1.875)
    assert details["output"] == pytest.approx(15.0)
    assert details["total"] == pytest.approx(float(rec.cost_usd))
    assert sum(v for k, v in details.items() if k != "total") == pytest.approx(details["total"])


def test_cost_details_unknown_split_keeps_totals(record_factory) -> None:
    rec = record_factory()
    override = PriceTable(overrides={"gpt-4o-mini": ModelPrice(
        input_per_mtok=Decimal(1), output_per_mtok=Decimal(2))})
    from dataclasses import replace

    rec = replace(rec, cost=override.price(rec.usage, model="gpt-4o-mini"))
    details = langfuse_cost_details(rec)
    assert details == {"input": pytest.approx(0.0012), "output": pytest.approx(0.0004),
                       "output_reasoning": pytest.approx(0.0002), "total": pytest.approx(0.0018)}


def _export(otlp_receiver, record):
    # the Langfuse SDK keeps one configuration per public key per process: use a fresh key
    exporter = LangfuseExporter(public_key=f"pk-lf-{uuid.uuid4().hex}", secret_key="sk-lf-test",
                                base_url=otlp_receiver.url, timeout_s=5)
    exporter.record(record)
    exporter.force_flush()
    exporter.close()
    return exporter


def test_generation_reaches_langfuse_endpoint(otlp_receiver, record_factory, decode_attrs,
                                              compress_layer) -> None:
    rec = record_factory(layers=(compress_layer(),), tags=("rag",))
    _export(otlp_receiver, rec)
    assert otlp_receiver.paths[-1] == "/api/public/otel/v1/traces"
    assert otlp_receiver.headers[-1]["authorization"].startswith("Basic ")
    (span,) = otlp_receiver.spans
    attrs = decode_attrs(span)
    assert attrs["langfuse.observation.type"] == "generation"
    assert attrs["langfuse.observation.model.name"] == "gpt-4o-mini"
    usage = json.loads(attrs["langfuse.observation.usage_details"])
    assert usage == langfuse_usage_details(rec.usage)
    cost = json.loads(attrs["langfuse.observation.cost_details"])
    assert cost["total"] == pytest.approx(float(rec.cost_usd))
    # per token, the 1000 cache reads cost less than the 200 plain input tokens
    assert cost["input_cache_read"] / usage["input_cache_read"] < cost["input"] / usage["input"]
    assert sum(v for k, v in cost.items() if k != "total") == pytest.approx(cost["total"])
    assert attrs["user.id"] == "u1"
    assert "rag" in attrs["langfuse.trace.tags"]
    meta = {k: v for k, v in attrs.items() if k.startswith("langfuse.observation.metadata")}
    assert any("compress" in str(v) for v in meta.values())
    assert (span.end_time_unix_nano - span.start_time_unix_nano) == pytest.approx(0.25e9, rel=1e-6)


def test_cache_hit_is_cost_zero_in_langfuse(otlp_receiver, record_factory, decode_attrs) -> None:
    full = record_factory()
    rec = record_factory(cached=True, layers=(LayerReport(
        layer="cache", saved_input_tokens=1200, saved_output_tokens=300,
        saved_usd=full.cost_usd),))
    _export(otlp_receiver, rec)
    (span,) = otlp_receiver.spans
    attrs = decode_attrs(span)
    assert json.loads(attrs["langfuse.observation.cost_details"])["total"] == 0
    assert json.loads(attrs["langfuse.observation.usage_details"])["total"] == 0


def test_langfuse_down_warns_once(free_port, record_factory) -> None:
    before = {t.ident for t in threading.enumerate()}
    exporter = LangfuseExporter(public_key=f"pk-lf-{uuid.uuid4().hex}", secret_key="sk",
                                base_url=f"http://127.0.0.1:{free_port}", timeout_s=1)
    try:
        exporter.record(record_factory())
        with pytest.warns(TokenleanWarning, match="exporter 'langfuse' export failed"):
            exporter.force_flush()
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            exporter.record(record_factory())
            exporter.force_flush()
        assert exporter.watch.outages == 1
    finally:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            exporter.close()
    # no leak: the span export thread is stopped (the SDK's own daemon prompt-cache
    # thread, PromptCacheRefreshConsumer, outlives shutdown by the SDK's design)
    left = [t.name for t in threading.enumerate() if t.ident not in before and t.is_alive()]
    assert "OtelBatchSpanRecordProcessor" not in left


def test_needs_connection_or_client() -> None:
    with pytest.raises(ConfigError, match="public_key"):
        LangfuseExporter(public_key="pk")
