"""One changed line, same answers: lean() with its lossless defaults over our local server."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from langchain_core.prompts import ChatPromptTemplate
from langchain_openai import ChatOpenAI

from langchain_tokenlean import lean
from tokenlean.core import SQLiteLedger

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
