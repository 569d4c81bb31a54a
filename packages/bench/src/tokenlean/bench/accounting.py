"""``tokenlean bench accounting DATA``: what accounting costs per call, and whether
the ledger, OpenTelemetry and Prometheus agree on the totals.

For each row of a prompts file (``{"messages", "response", "model"}``) it
counts the prompt and the answer (:func:`tokenlean.core.estimate_usage`, the
accounting's fallback), prices them and builds the call's record
(:func:`tokenlean.core.call_record`, with the row's own model or ``--model``),
and writes it to every sink. Prints one JSON object: rows, tokens, dollars, how
many rows had a known price, microseconds per call for counting, pricing and
each sink, and the difference between the sinks' totals.
"""

from __future__ import annotations

import functools
import itertools
import json
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

from tokenlean.core import (
    CallRecord,
    JSONLLedger,
    ObservedCall,
    SQLiteLedger,
    Usage,
    call_record,
    estimate_usage,
    read_prompts,
)
from tokenlean.core._optional import require


def _timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def _record_all(sink: Any, records: list[CallRecord]) -> None:
    for record in records:
        sink.record(record)


def _otel_sums(reader: Any) -> tuple[dict[str, int], float]:
    tokens: dict[str, int] = {}
    usd = 0.0
    for rm in reader.get_metrics_data().resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                for point in metric.data.data_points:
                    if metric.name == "gen_ai.client.token.usage":
                        kind = point.attributes["gen_ai.token.type"]
                        tokens[kind] = tokens.get(kind, 0) + int(point.sum)
                    elif metric.name == "tokenlean.cost":
                        usd += point.value
    return tokens, usd


def _prom_sums(exporter: Any) -> tuple[dict[str, int], float]:
    from prometheus_client.parser import text_string_to_metric_families

    tokens: dict[str, int] = {"input": 0, "output": 0}
    usd = 0.0
    for family in text_string_to_metric_families(exporter.generate_latest().decode()):
        for sample in family.samples:
            if sample.name == "tokenlean_tokens_total" and sample.labels["type"] in tokens:
                tokens[sample.labels["type"]] += int(sample.value)
            elif sample.name == "tokenlean_cost_usd_total":
                usd += sample.value
    return tokens, usd


def bench(
    data: str = typer.Argument(..., help="prompts JSONL: {messages, response, model}."),
    limit: int = typer.Option(500, "--limit", help="Use the first N rows."),
    model: str | None = typer.Option(None, "--model",
                                     help="Price every row as this model (default: the row's)."),
) -> None:
    """Per-call cost of counting, pricing and each exporter; agreement of their totals."""
    import warnings

    require("opentelemetry.sdk", extra="otel", feature="tokenlean bench accounting")
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider

    from tokenlean.exporters import Fanout, OTelExporter, PrometheusExporter

    rows = list(itertools.islice(read_prompts(data), limit))
    if not rows:
        raise typer.BadParameter(f"{data} has no rows")
    count_s = price_s = 0.0
    records: list[CallRecord] = []
    exact = 0
    models: dict[str, bool] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # unknown-price warnings: counted below instead
        for row, messages in rows:
            name = model or row.get("model") or "gpt-4o-mini"
            start = time.perf_counter()  # the accounting's one fallback: count what nobody reported
            counted = estimate_usage(messages, str(row.get("response") or ""), model=name)
            count_s += time.perf_counter() - start
            usage, is_exact = counted if counted is not None else (Usage(), False)
            exact += int(is_exact)
            start = time.perf_counter()  # price it and build the record: the one accounting path
            record = call_record(ObservedCall(request_id=uuid.uuid4().hex, model=name,
                                              usage=usage, latency_s=0.5, tenant="bench"))
            price_s += time.perf_counter() - start
            models[name] = record.cost is not None
            records.append(record)

    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    tracer_provider = TracerProvider()  # no processor: spans are built, then dropped
    with tempfile.TemporaryDirectory() as tmp:
        sinks: dict[str, Any] = {
            "sqlite": SQLiteLedger(Path(tmp) / "l.sqlite"),
            "jsonl": JSONLLedger(Path(tmp) / "l.jsonl"),
            "otel": OTelExporter(meter_provider=meter_provider, tracer_provider=tracer_provider),
            "prometheus": PrometheusExporter(),
        }
        per_sink: dict[str, float] = {}
        for key, sink in sinks.items():
            _, took = _timed(functools.partial(_record_all, sink, records))
            per_sink[key] = round(took / len(records) * 1e6, 1)
        fan_ledger = SQLiteLedger(Path(tmp) / "fan.sqlite")
        fan = Fanout(fan_ledger, OTelExporter(meter_provider=MeterProvider(),
                                              tracer_provider=tracer_provider),
                     PrometheusExporter())
        _, took = _timed(functools.partial(_record_all, fan, records))
        per_sink["fanout(sqlite+otel+prometheus)"] = round(took / len(records) * 1e6, 1)

        totals = sinks["sqlite"].totals(by="tenant")[0]
        ledger_usd = totals.priced_cost_usd  # what the metrics hold: priced calls only
        otel_tokens, otel_usd = _otel_sums(reader)
        prom_tokens, prom_usd = _prom_sums(sinks["prometheus"])
        for sink in (sinks["sqlite"], sinks["jsonl"], fan_ledger):
            sink.close()
    meter_provider.shutdown()
    ledger_tokens = {"input": totals.input_tokens, "output": totals.output_tokens}
    result = {
        "data": str(data),
        "rows": len(records),
        "price_model": model or "per row",
        "models": len(models),
        "priced_models": sum(models.values()),
        "unpriced_rows": totals.unpriced_calls,
        "exact_count_rows": exact,
        "tokens": ledger_tokens,
        "cost_usd": None if totals.cost_usd is None else float(totals.cost_usd),
        "priced_cost_usd": float(ledger_usd),
        "us_per_call": {
            "count_tokens": round(count_s / len(records) * 1e6, 1),
            "price": round(price_s / len(records) * 1e6, 1),
            **per_sink,
        },
        "agreement": {
            "otel_tokens_equal": otel_tokens == ledger_tokens,
            "prometheus_tokens_equal": prom_tokens == ledger_tokens,
            "otel_usd_abs_diff": abs(otel_usd - float(ledger_usd)),
            "prometheus_usd_abs_diff": abs(prom_usd - float(ledger_usd)),
        },
    }
    typer.echo(json.dumps(result))
