"""A ``lean()`` LLM's own cache hits, seen by the handler: a call, but no spend."""

from __future__ import annotations

from pathlib import Path

from llama_index.core.llms import ChatMessage
from llama_index.core.llms.mock import MockLLM

from llama_index.callbacks.tokenlean import instrument
from llama_index.llms.tokenlean import lean
from tokenlean.core import SQLiteLedger


def test_lean_cache_hit_is_recorded_as_saved_not_spent(tmp_path: Path) -> None:
    ledger = SQLiteLedger(tmp_path / "ledger.sqlite")
    handler = instrument(ledger=ledger, keep_records=True)
    try:
        llm = lean(MockLLM(max_tokens=8), cache="exact", model="gpt-4o", ledger=False)
        question = [ChatMessage(role="user", content="Name one colour of the rainbow.")]
        first = llm.chat(question, temperature=0)  # deterministic: the cache may answer
        second = llm.chat(question, temperature=0)
    finally:
        handler.detach()
    assert second.message.content == first.message.content
    miss, hit = handler.records
    assert not miss.cached and miss.cost_usd > 0 and miss.usage.input_tokens > 0
    assert hit.cached and hit.cost_usd == 0 and hit.usage.total_tokens == 0
    (report,) = hit.layers
    assert report.layer == "cache" and report.saved_usd == miss.cost_usd
    assert report.saved_input_tokens == miss.usage.input_tokens
    assert handler.calls == 2 and handler.cached_calls == 1
    assert handler.saved_usd == miss.cost_usd and handler.cost_usd == miss.cost_usd
    assert [r.cached for r in ledger.records()] == [False, True]
