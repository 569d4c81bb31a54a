"""Telemetry for a LlamaIndex app: OpenTelemetry (console exporter) and a Prometheus endpoint.

The app is a few chat calls through an ``OpenAILike`` LLM pointed at
tokenlean's local server. One line turns on cost telemetry for every LlamaIndex
LLM call in the process (``llama-index-callbacks-tokenlean``)::

    handler = instrument(ledger=Fanout(OTelExporter(...), PrometheusExporter()))

Each call becomes one OpenTelemetry span (GenAI semantic conventions: model,
token usage, cost) written by the console exporter, and counters / a latency
histogram on a Prometheus ``/metrics`` endpoint. The app runs twice, raw and
through ``lean(llm)`` (exact cache on), and the handler's totals show both
costs side by side. Calls are priced as gpt-4o (the local server answers to that
name). Run:

    .venv/bin/python examples/llamaindex_telemetry.py [--base-url URL]
"""

from __future__ import annotations

import io
import urllib.request
from typing import Any

from llama_index.core.llms import ChatMessage
from llama_index.llms.openai_like import OpenAILike
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import ConsoleMetricExporter, PeriodicExportingMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor
from prometheus_client import start_http_server

from llama_index.callbacks.tokenlean import instrument
from llama_index.llms.tokenlean import lean
from tokenlean.exporters import Fanout, OTelExporter, PrometheusExporter

from _shared import PRICED_AS, local_server, parse_args, report

QUESTIONS = [
    "Name one colour of the rainbow.",
    "Name one colour of the rainbow.",  # asked again
    "What is two plus two?",
]


def run_app(llm: Any, questions: list[str]) -> None:
    for question in questions:
        llm.chat([ChatMessage(role="user", content=question)])


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(__doc__, argv, questions=len(QUESTIONS), max_tokens=24)
    questions = QUESTIONS[: args.questions]

    # OpenTelemetry: spans and metrics to a console exporter (here: into a buffer we print)
    console = io.StringIO()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter(out=console)))
    reader = PeriodicExportingMetricReader(ConsoleMetricExporter(out=console),
                                           export_interval_millis=3_600_000)
    meter_provider = MeterProvider(metric_readers=[reader])
    prometheus = PrometheusExporter()
    server, thread = start_http_server(0, addr="127.0.0.1", registry=prometheus.registry)
    sink = Fanout(OTelExporter(meter_provider=meter_provider, tracer_provider=tracer_provider),
                  prometheus)
    result: dict[str, Any] = {}
    try:
        with local_server(args.base_url) as base_url:
            llm = OpenAILike(model=PRICED_AS, api_base=base_url, api_key="local",
                             is_chat_model=True, context_window=2048,
                             max_tokens=args.max_tokens, temperature=0)
            for name, app_llm in (("raw", llm), ("lean", lean(llm, ledger=False))):
                handler = instrument(ledger=sink, tenant=name)  # the one line
                try:
                    run_app(app_llm, questions)
                finally:
                    handler.detach()
                result[name] = {"calls": handler.calls, "cache_hits": handler.cached_calls,
                                "input_tokens": handler.input_tokens,
                                "output_tokens": handler.output_tokens,
                                "cost_usd": None if handler.cost_usd is None
                                else float(handler.cost_usd)}
        meter_provider.force_flush()
        url = f"http://127.0.0.1:{server.server_port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as response:  # what Prometheus scrapes
            metrics = response.read().decode()
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
        meter_provider.shutdown()
        tracer_provider.shutdown()

    result["prometheus_lines"] = [line for line in metrics.splitlines()
                                  if line.startswith("tokenlean_") and 'tenant="' in line]
    result["otel_spans"] = console.getvalue().count('"gen_ai.usage.input_tokens"')
    report(result)
    print(f"\nOpenTelemetry spans with token usage: {result['otel_spans']}")
    print(f"Prometheus {url} (tokenlean_* series):")
    for line in result["prometheus_lines"][:12]:
        print("  " + line)
    return result


if __name__ == "__main__":
    main()
