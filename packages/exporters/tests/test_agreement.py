"""Acceptance: one streamed LangChain run (plus a LangChain cache hit) and one
LlamaIndex query, recorded through one Fanout: the ledger, the OpenTelemetry
metrics and a Prometheus scrape agree on tokens and dollars."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from prometheus_client.parser import text_string_to_metric_families

from tokenlean.core import SQLiteLedger
from tokenlean.exporters import Fanout, OTelExporter, PrometheusExporter

langchain_tokenlean = pytest.importorskip("langchain_tokenlean")
li_tokenlean = pytest.importorskip("llama_index.callbacks.tokenlean")


def lc_model(**fields: Any):
    from langchain_core.language_models import BaseChatModel
    from langchain_core.messages import AIMessage, AIMessageChunk
    from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult

    usage = {"input_tokens": 900, "output_tokens": 120, "total_tokens": 1020,
             "input_token_details": {"cache_read": 512},
             "output_token_details": {"reasoning": 40}}
    meta = {"model_name": "gpt-4o-mini", "finish_reason": "stop"}

    class Model(BaseChatModel):
        @property
        def _llm_type(self) -> str:
            return "usage-fake"

        def _generate(self, messages, stop=None, run_manager=None, **kw):
            return ChatResult(generations=[ChatGeneration(message=AIMessage(
                content="Paris.", usage_metadata=usage, response_metadata=meta))])

        def _stream(self, messages, stop=None, run_manager=None, **kw):
            for piece in ("Par", "is."):
                chunk = ChatGenerationChunk(message=AIMessageChunk(content=piece))
                if run_manager:
                    run_manager.on_llm_new_token(piece, chunk=chunk)
                yield chunk
            last = ChatGenerationChunk(message=AIMessageChunk(
                content="", usage_metadata=usage, response_metadata=meta, chunk_position="last"))
            if run_manager:
                run_manager.on_llm_new_token("", chunk=last)
            yield last

    return Model(**fields)


def li_llm():
    from llama_index.core.llms import CompletionResponse, CustomLLM, LLMMetadata
    from llama_index.core.llms.callbacks import llm_completion_callback

    class LLM(CustomLLM):
        @property
        def metadata(self) -> LLMMetadata:
            return LLMMetadata(model_name="gpt-4o")

        @llm_completion_callback()
        def complete(self, prompt: str, formatted: bool = False, **kw: Any) -> CompletionResponse:
            return CompletionResponse(text="Paris", raw={"usage": {
                "prompt_tokens": 300, "completion_tokens": 7, "total_tokens": 307}})

        @llm_completion_callback()
        def stream_complete(self, prompt: str, formatted: bool = False, **kw: Any):
            yield self.complete(prompt)

    return LLM()


def test_ledger_otel_and_prometheus_agree(tmp_path) -> None:
    from langchain_core.caches import InMemoryCache
    from llama_index.core import Document, SummaryIndex

    ledger = SQLiteLedger(tmp_path / "ledger.sqlite")
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    otel = OTelExporter(meter_provider=meter_provider, traces=False)
    prom = PrometheusExporter()
    port = prom.serve(0)
    sink = Fanout(ledger, otel, prom)
    try:
        handler = langchain_tokenlean.TokenleanCostHandler(ledger=sink)
        cfg = {"callbacks": [handler]}
        model = lc_model(cache=InMemoryCache())
        assert "".join(str(c.content) for c in model.stream("capital?", config=cfg)) == "Paris."
        model.invoke("capital of France?", config=cfg)
        model.invoke("capital of France?", config=cfg)  # LangChain cache hit

        li = li_tokenlean.instrument(ledger=sink)
        try:
            SummaryIndex.from_documents([Document(text="Paris is in France.")]).as_query_engine(
                llm=li_llm()).query("capital of France?")
        finally:
            li.detach()

        rows = list(ledger.records())
        assert len(rows) == 4 and sum(r.cached for r in rows) == 1
        ledger_in = sum(r.usage.input_tokens for r in rows)
        ledger_out = sum(r.usage.output_tokens for r in rows)
        ledger_usd = sum((r.cost_usd for r in rows), Decimal(0))
        ledger_saved = sum((rep.saved_usd for r in rows for rep in r.layers), Decimal(0))
        assert (ledger_in, ledger_out) == (900 * 2 + 300, 120 * 2 + 7)
        hit = next(r for r in rows if r.cached)
        assert hit.cost_usd == 0 and ledger_saved == rows[0].cost_usd  # saved = the call's price

        # OpenTelemetry
        tokens: dict[str, int] = {}
        otel_usd = otel_saved = 0.0
        for rm in reader.get_metrics_data().resource_metrics:
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    for p in metric.data.data_points:
                        if metric.name == "gen_ai.client.token.usage":
                            kind = p.attributes["gen_ai.token.type"]
                            tokens[kind] = tokens.get(kind, 0) + int(p.sum)
                        elif metric.name == "tokenlean.cost":
                            otel_usd += p.value
                        elif metric.name == "tokenlean.saved.cost":
                            otel_saved += p.value
        assert tokens == {"input": ledger_in, "output": ledger_out}
        assert otel_usd == pytest.approx(float(ledger_usd), rel=1e-12, abs=0)
        assert otel_saved == pytest.approx(float(ledger_saved), rel=1e-12, abs=0)

        # Prometheus, scraped over HTTP
        samples = {}
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                samples.setdefault(s.name, []).append(s)
        prom_tokens = {t: sum(s.value for s in samples["tokenlean_tokens_total"]
                              if s.labels["type"] == t) for t in ("input", "output")}
        assert prom_tokens == {"input": ledger_in, "output": ledger_out}
        prom_usd = sum(s.value for s in samples["tokenlean_cost_usd_total"])
        assert prom_usd == pytest.approx(float(ledger_usd), rel=1e-12, abs=0)
        assert sum(s.value for s in samples["tokenlean_calls_total"]) == 4
    finally:
        prom.close()
        meter_provider.shutdown()
