"""Prometheus exporter, scraped over real HTTP from its own endpoint."""

from __future__ import annotations

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tokenlean.core import ConfigError, LayerReport
from tokenlean.exporters import PrometheusExporter


def scrape(port: int) -> dict[tuple[str, tuple], float]:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    out: dict[tuple[str, tuple], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def total(samples: dict, name: str, **labels: str) -> float:
    return sum(v for (n, lab), v in samples.items()
               if n == name and all(dict(lab).get(k) == w for k, w in labels.items()))


@pytest.fixture
def prom():
    exporter = PrometheusExporter()
    port = exporter.serve(0)
    yield exporter, port
    exporter.close()


def test_scrape_counts_tokens_cost_and_savings(prom, record_factory, compress_layer) -> None:
    exporter, port = prom
    a = record_factory(layers=(compress_layer(),))
    b = record_factory(tenant="beta")
    exporter.record(a)
    exporter.record(b)
    got = scrape(port)
    assert total(got, "tokenlean_calls_total") == 2
    assert total(got, "tokenlean_tokens_total", type="input") == 2400
    assert total(got, "tokenlean_tokens_total", type="output") == 600
    assert total(got, "tokenlean_tokens_total", type="cache_read") == 2000
    assert total(got, "tokenlean_tokens_total", type="reasoning") == 200
    assert total(got, "tokenlean_tokens_total", tenant="beta", type="input") == 1200
    assert total(got, "tokenlean_cost_usd_total") == pytest.approx(
        float(a.cost_usd + b.cost_usd), rel=1e-12)
    # 100 of 300 output tokens are reasoning: a third of the output dollars, by hand
    assert total(got, "tokenlean_reasoning_cost_usd_total") == pytest.approx(
        2 * 300 * 0.60 / 1e6 / 3, rel=1e-12)
    assert total(got, "tokenlean_saved_tokens_total", layer="compress", type="input") == 500
    assert total(got, "tokenlean_saved_usd_total", layer="compress") == pytest.approx(
        float(a.layers[0].saved_usd))
    assert total(got, "tokenlean_call_duration_seconds_count", model="gpt-4o-mini") == 2


def test_cache_hit_is_zero_cost_and_saved(prom, record_factory) -> None:
    exporter, port = prom
    full = record_factory()
    exporter.record(record_factory(cached=True, layers=(LayerReport(
        layer="cache", saved_input_tokens=1200, saved_output_tokens=300,
        saved_usd=full.cost_usd),)))
    got = scrape(port)
    assert total(got, "tokenlean_calls_total", cached="true") == 1
    assert total(got, "tokenlean_tokens_total") == 0
    assert total(got, "tokenlean_cost_usd_total") == 0
    assert total(got, "tokenlean_saved_usd_total", layer="cache") == pytest.approx(
        float(full.cost_usd))


def test_generate_latest_and_bad_namespace(record_factory) -> None:
    exporter = PrometheusExporter(namespace="myapp")
    exporter.record(record_factory())
    assert b"myapp_cost_usd_total" in exporter.generate_latest()
    with pytest.raises(ConfigError):
        PrometheusExporter(namespace="not valid")
