"""Fixtures: call records priced by the real price table, and a real OTLP/HTTP receiver."""

from __future__ import annotations

import gzip
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tokenlean.core import CallRecord, LayerReport, Usage, price


def make_record(*, model: str = "gpt-4o-mini", tenant: str = "acme", cached: bool = False,
                usage: Usage | None = None, layers: tuple[LayerReport, ...] = (),
                user: str | None = "u1", **kw: Any) -> CallRecord:
    usage = usage if usage is not None else Usage(
        input_tokens=1200, output_tokens=300, cache_read_tokens=1000, reasoning_tokens=100)
    billed = Usage() if cached else usage
    return CallRecord(request_id=kw.pop("request_id", f"req-{time.monotonic_ns()}"), model=model,
                      tenant=tenant, user=user, usage=billed,
                      cost=price(billed, model=model), cached=cached, latency_s=0.25,
                      layers=layers, **kw)


def compress_report(model: str = "gpt-4o-mini") -> LayerReport:
    rates = price(Usage(input_tokens=1_000_000, output_tokens=1_000_000), model=model)
    assert rates is not None
    return LayerReport(layer="compress", saved_input_tokens=500,
                       saved_usd=500 * rates.input_usd / 1_000_000)


@pytest.fixture
def record_factory():
    return make_record


@pytest.fixture
def compress_layer():
    return compress_report


class OTLPReceiver:
    """A real OTLP/HTTP (protobuf) endpoint on loopback that decodes what it gets."""

    def __init__(self, port: int = 0) -> None:
        from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
            ExportMetricsServiceRequest,
        )
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
            ExportTraceServiceRequest,
        )

        receiver = self
        self.spans: list[Any] = []
        self.metrics: list[Any] = []
        self.headers: list[dict[str, str]] = []
        self.paths: list[str] = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                receiver.headers.append({k.lower(): v for k, v in self.headers.items()})
                receiver.paths.append(self.path)
                if self.path.endswith("/v1/traces"):
                    msg = ExportTraceServiceRequest()
                    msg.ParseFromString(body)
                    for rs in msg.resource_spans:
                        for ss in rs.scope_spans:
                            receiver.spans.extend(ss.spans)
                elif self.path.endswith("/v1/metrics"):
                    msg = ExportMetricsServiceRequest()
                    msg.ParseFromString(body)
                    receiver.metrics.append(msg)
                else:
                    self.send_response(404)
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def span_attrs(span: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kv in span.attributes:
        value = kv.value
        kind = value.WhichOneof("value")
        if kind == "array_value":
            out[kv.key] = [getattr(v, v.WhichOneof("value")) for v in value.array_value.values]
        else:
            out[kv.key] = getattr(value, kind)
    return out


@pytest.fixture
def otlp_receiver() -> Iterator[OTLPReceiver]:
    receiver = OTLPReceiver()
    yield receiver
    receiver.close()


def closed_port() -> int:
    """A loopback port with nothing listening (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def free_port() -> int:
    return closed_port()


@pytest.fixture
def decode_attrs():
    return span_attrs


@pytest.fixture
def receiver_on():
    """Start an :class:`OTLPReceiver` on a given port; closed at teardown."""
    started: list[OTLPReceiver] = []

    def start(port: int) -> OTLPReceiver:
        receiver = OTLPReceiver(port)
        started.append(receiver)
        return receiver

    yield start
    for receiver in started:
        receiver.close()
