"""One changed line, same answers: lean() with its lossless defaults over our local server."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from langchain_core.prompts import ChatPromptTemplate
from langchain_openai import ChatOpenAI

from langchain_tokenlean import lean
from tokenlean.core import SQLiteLedger

TINY_NAME = "tiny-llama"  # the local server's own model name (conftest): no known price

pytestmark = pytest.mark.server

PROMPTS = ["Say hello.", "Name a colour.", "Count to three."]


def test_lean_defaults_answer_exactly_as_the_bare_model_on_a_miss(local_server: Any,
                                                                  tmp_path: Path) -> None:
    chat = ChatOpenAI(model=local_server.aliases[0], base_url=local_server.url + "/v1",
                      api_key="local", max_tokens=6, temperature=0, max_retries=0)
    chain = ChatPromptTemplate.from_messages([("system", "Be brief."), ("human", "{q}")])
    ledger = SQLiteLedger(tmp_path / "ledger.sqlite")
    raw = [(chain | chat).invoke({"q": q}).content for q in PROMPTS]
    leaned = [(chain | lean(chat, ledger=ledger)).invoke({"q": q}).content for q in PROMPTS]
    assert leaned == raw and all(raw)
    rows = list(ledger.records())
    assert len(rows) == 3 and not any(r.cached for r in rows)  # all misses, all recorded
    assert all(r.cost_usd and r.cost_usd > 0 for r in rows)


def test_lean_over_a_local_model_is_booked_as_the_model_it_is_priced_as(local_server: Any) -> None:
    """The issue's case: lean(base, model="gpt-4o") in front of a local model. The answer's
    metadata and tokenlean_costs() report the same cost; a local model's own cost is
    unknown (it has no price), never $0."""
    import warnings

    from langchain_tokenlean import tokenlean_costs
    from tokenlean.core import TokenleanWarning

    base = ChatOpenAI(model=TINY_NAME, base_url=local_server.url + "/v1",
                      api_key="local", max_tokens=6, temperature=0, max_retries=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TokenleanWarning)  # the local model has no price
        with tokenlean_costs() as leaned:
            answer = lean(base, model="gpt-4o", ledger=False).invoke("Say hello.")
        with tokenlean_costs() as bare:
            base.invoke("Say hello.")
    meta_cost = answer.response_metadata["tokenlean"]["cost_usd"]
    assert meta_cost is not None and meta_cost > 0
    assert leaned.calls == 1 and float(leaned.cost_usd) == meta_cost
    assert f"Total Cost (USD): ${meta_cost:.6f}" in repr(leaned)
    assert bare.calls == 1 and bare.cost_usd is None  # unpriced: unknown
    assert "Total Cost (USD): unknown" in repr(bare)
