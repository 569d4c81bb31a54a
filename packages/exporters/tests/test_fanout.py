"""Fanout: every sink gets every record; a failing sink warns once per outage."""

from __future__ import annotations

import json
import threading
import warnings
from http.server import BaseHTTPRequestHandler, HTTPServer

import httpx
import pytest

from tokenlean.core import (
    ConfigError,
    FunctionProvider,
    JSONLLedger,
    Message,
    Pipeline,
    Request,
    Response,
    SQLiteLedger,
    TokenleanWarning,
    Usage,
)
from tokenlean.exporters import Fanout, PrometheusExporter


class HTTPSink:
    """A sink that POSTs each record to a URL (a stand-in for any remote store)."""

    name = "http-sink"

    def __init__(self, url: str) -> None:
        self.url = url

    def record(self, record) -> None:
        httpx.post(self.url, json=record.to_dict(), timeout=2).raise_for_status()


def serve(port: int, bodies: list) -> HTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    server = HTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_every_sink_gets_the_record(tmp_path, record_factory) -> None:
    sqlite, jsonl = SQLiteLedger(tmp_path / "l.sqlite"), JSONLLedger(tmp_path / "l.jsonl")
    prom = PrometheusExporter()
    fan = Fanout(sqlite, jsonl, prom)
    rec = record_factory()
    fan.record(rec)
    assert [r.request_id for r in sqlite.records()] == [rec.request_id]
    assert [r.request_id for r in jsonl.records()] == [rec.request_id]
    assert b'tokenlean_calls_total{cached="false"' in prom.generate_latest()


async def test_async_fanout(tmp_path, record_factory) -> None:
    sqlite = SQLiteLedger(tmp_path / "l.sqlite")
    prom = PrometheusExporter()
    await Fanout(sqlite, prom).arecord(record_factory())
    assert sqlite.count() == 1


def test_closed_port_warns_once_per_outage(free_port, tmp_path, record_factory) -> None:
    ledger = SQLiteLedger(tmp_path / "l.sqlite")
    fan = Fanout(HTTPSink(f"http://127.0.0.1:{free_port}/records"), ledger)
    with pytest.warns(TokenleanWarning, match="sink 'http-sink' write failed") as caught:
        fan.record(record_factory())
        fan.record(record_factory())
        fan.record(record_factory())
    assert len([w for w in caught if issubclass(w.category, TokenleanWarning)]) == 1
    assert ledger.count() == 3  # the other sink got every record

    bodies: list = []
    server = serve(free_port, bodies)  # the endpoint comes back: the outage ends
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            fan.record(record_factory())
        assert len(bodies) == 1
    finally:
        server.shutdown()
        server.server_close()
    with pytest.warns(TokenleanWarning):  # down again: a new outage, one new warning
        fan.record(record_factory())


def test_pipeline_call_survives_a_dead_sink(free_port, tmp_path) -> None:
    ledger = SQLiteLedger(tmp_path / "l.sqlite")
    fan = Fanout(HTTPSink(f"http://127.0.0.1:{free_port}/"), ledger)
    provider = FunctionProvider(lambda r: Response(text="hi", usage=Usage(
        input_tokens=12, output_tokens=3), model=r.model))
    pipeline = Pipeline(provider=provider, ledger=fan)
    with pytest.warns(TokenleanWarning):
        result = pipeline.run(Request(messages=(Message(role="user", content="hello"),),
                                      model="gpt-4o-mini"))
    assert result.response.text == "hi"
    (row,) = ledger.records()
    assert row.usage.input_tokens == 12 and row.cost is not None


def test_needs_sinks() -> None:
    with pytest.raises(ConfigError):
        Fanout()
    with pytest.raises(ConfigError):
        Fanout(object())  # type: ignore[arg-type]


@pytest.mark.parametrize("make", ["prometheus", "otel"])
def test_exporter_alone_never_raises_and_warns_once(make, record_factory) -> None:
    from dataclasses import replace

    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.trace import TracerProvider

    from tokenlean.exporters import OTelExporter

    exporter = PrometheusExporter() if make == "prometheus" else OTelExporter(
        meter_provider=MeterProvider(), tracer_provider=TracerProvider())
    broken = replace(record_factory(), latency_s=None)  # a record from a buggy producer
    with pytest.warns(TokenleanWarning, match=f"exporter '{make}' record failed") as caught:
        exporter.record(broken)
        exporter.record(broken)
    assert len(caught) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        exporter.record(record_factory())  # recovers silently
    with pytest.warns(TokenleanWarning):
        exporter.record(broken)  # a new outage
