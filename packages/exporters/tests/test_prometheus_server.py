"""End to end against a real Prometheus (Debian's ``prometheus`` package): real
pipeline calls go through one Fanout into the ledger and the Prometheus exporter;
Prometheus scrapes the exporter's /metrics on loopback, and what its HTTP API
answers equals the ledger's totals. An unpriced model has no cost series there
(unknown), as its ledger total is unknown: never $0."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
import warnings
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from tokenlean.core import (
    FunctionProvider,
    Message,
    Pipeline,
    Request,
    Response,
    SQLiteLedger,
    TokenleanWarning,
    Usage,
)
from tokenlean.exporters import Fanout, PrometheusExporter

PROMETHEUS = shutil.which("prometheus")
pytestmark = [
    pytest.mark.server,
    pytest.mark.skipif(PROMETHEUS is None, reason="Debian's prometheus is not installed "
                       "(scripts/setup.sh apt-installs it)"),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PrometheusServer:
    """A prometheus process scraping one target every second, queried over its HTTP API."""

    def __init__(self, workdir: Path, target_port: int) -> None:
        self.port = _free_port()
        config = workdir / "prometheus.yml"
        config.write_text(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
            "scrape_configs:\n  - job_name: tokenlean\n    static_configs:\n"
            f"      - targets: ['127.0.0.1:{target_port}']\n")
        assert PROMETHEUS is not None
        self.proc = subprocess.Popen(
            [PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={workdir / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.url = f"http://127.0.0.1:{self.port}"

    def query(self, promql: str) -> list[dict[str, object]]:
        answer = httpx.get(f"{self.url}/api/v1/query", params={"query": promql}, timeout=5)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["status"] == "success", body
        return list(body["data"]["result"])

    def value(self, promql: str) -> float | None:
        """The single value of an aggregate query, ``None`` when Prometheus has no series."""
        result = self.query(promql)
        assert len(result) <= 1, result
        return float(result[0]["value"][1]) if result else None  # type: ignore[index]

    def wait_for_scrape(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"prometheus exited: {self.proc.stderr.read()!r}")  # type: ignore[union-attr]
            try:  # not listening yet, or answering 503 until its storage is ready
                ready = httpx.get(f"{self.url}/-/ready", timeout=5).status_code == 200
            except httpx.HTTPError:
                ready = False
            if ready and self.value('up{job="tokenlean"}') == 1 \
                    and self.query("tokenlean_calls_total"):
                return
            time.sleep(0.2)
        pytest.fail("prometheus did not scrape tokenlean's /metrics in time")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        if self.proc.stderr is not None:
            self.proc.stderr.close()


class Repeat:
    """A real layer that answers a question it has seen (an exact cache)."""

    name = "cache"

    def __init__(self) -> None:
        self.seen: dict[tuple[str, str], Response] = {}

    def process(self, request: Request) -> Request | Response:
        hit = self.seen.get((request.model, request.last_user_text))
        if hit is None:
            return request
        return Response(text=hit.text, model=hit.model, usage=hit.usage, cached=True,
                        cache_score=1.0)

    async def aprocess(self, request: Request) -> Request | Response:
        return self.process(request)

    def on_response(self, request: Request, response: Response) -> None:
        self.seen[(request.model, request.last_user_text)] = response


def answer(request: Request) -> Response:
    """Reports usage for OpenAI models, nothing for the house model (estimated)."""
    text = f"An answer to: {request.last_user_text}"
    if request.model.startswith("gpt"):
        return Response(text=text, model=request.model, usage=Usage(
            input_tokens=900 + len(request.last_user_text), output_tokens=120,
            cache_read_tokens=512, reasoning_tokens=40))
    return Response(text=text, model=request.model)


@pytest.fixture
def exporter() -> Iterator[PrometheusExporter]:
    pytest.importorskip("prometheus_client")
    exp = PrometheusExporter()
    yield exp
    exp.close()


def test_a_real_prometheus_scrape_equals_the_ledger(tmp_path: Path,
                                                    exporter: PrometheusExporter) -> None:
    ledger = SQLiteLedger(tmp_path / "ledger.sqlite")
    pipe = Pipeline(provider=FunctionProvider(answer), layers=[Repeat()],
                    ledger=Fanout(ledger, exporter))
    calls = [("gpt-4o-mini", "acme", "capital of France?"), ("gpt-4o-mini", "acme", "and Spain?"),
             ("gpt-4o-mini", "acme", "capital of France?"),  # a cache hit
             ("gpt-4o", "globex", "capital of Italy?"),
             ("house-model-7b", "globex", "capital of Peru?"),  # unpriced, usage estimated
             ("house-model-7b", "globex", "capital of Peru?")]  # unpriced model, a hit: $0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TokenleanWarning)  # no price known for house-model-7b
        for model, tenant, text in calls:
            pipe.run(Request(model=model, tenant=tenant,
                             messages=(Message(role="user", content=text),)))
    by_model = {t.key: t for t in ledger.totals(by="model")}
    by_layer = {t.key: t for t in ledger.totals(by="layer")}
    assert by_model["house-model-7b"].cost_usd is None  # unknown, never $0
    assert by_model["house-model-7b"].unpriced_calls == 1

    server = PrometheusServer(tmp_path, exporter.serve(0))
    try:
        server.wait_for_scrape()
        assert server.value("sum(tokenlean_calls_total)") == len(calls)
        assert server.value('sum(tokenlean_calls_total{cached="true"})') == sum(
            t.cached_calls for t in by_model.values())
        assert server.value('sum(tokenlean_calls_total{priced="false"})') == sum(
            t.unpriced_calls for t in by_model.values())
        for model, row in by_model.items():
            selector = f'model="{model}"'
            assert server.value(f'sum(tokenlean_tokens_total{{{selector},type="input"}})') == \
                row.input_tokens
            assert server.value(f'sum(tokenlean_tokens_total{{{selector},type="output"}})') == \
                row.output_tokens
            cost = server.value(f"sum(tokenlean_cost_usd_total{{{selector}}})")
            if row.cost_usd is None:
                assert cost is None, "an unknown cost has no series, it is never 0"
            else:
                assert cost == pytest.approx(float(row.cost_usd), rel=1e-12, abs=0)
        for layer, row in by_layer.items():
            saved = server.value(f'sum(tokenlean_saved_usd_total{{layer="{layer}"}})')
            assert row.saved_usd is None or saved == pytest.approx(float(row.saved_usd),
                                                                     rel=1e-12, abs=0)
            tokens = server.value(f'sum(tokenlean_saved_tokens_total{{layer="{layer}"}})')
            assert tokens == row.saved_tokens
        spent = server.value("sum(tokenlean_cost_usd_total)")
        priced = sum((t.priced_cost_usd for t in by_model.values()), Decimal(0))
        assert spent == pytest.approx(float(priced), rel=1e-12, abs=0)
    finally:
        server.stop()
        ledger.close()
