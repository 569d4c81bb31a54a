"""The audit's numbers are lean()'s: the same log replayed by ``tokenlean audit`` and
sent through LangChain's ``lean()`` (around a scripted chat model that gives the
logged answers) runs the same layers in the same order, hits the cache on the same
calls, saves the same input tokens per layer on the calls that reach the model and
sends the same prompts, for every preset. (A hit is booked differently on purpose:
lean()'s ledger books the call it replaced, the audit the whole logged call.)"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult

from langchain_tokenlean import lean
from tokenlean.audit import AuditOptions, audit_log
from tokenlean.core import JSONLLedger, count_messages

SYSTEM = ("You are a very helpful assistant.   Please  make sure to always answer the "
          "question.\n\n\nPlease always be polite and kind. Please make sure to always answer "
          "the question.")
CONTEXT = " ".join(
    f"Paragraph {i}: The harbour town of Vell{i} exports {i * 3} tonnes of salt each year, "
    "and its lighthouse was rebuilt after a storm damaged the old tower." for i in range(30))
CALLS = [
    ("How many tonnes of salt does Vell3 export?", "Vell3 exports 9 tonnes."),
    ("Why was the lighthouse rebuilt?", "A storm damaged the old tower."),
    ("How many tonnes of salt does Vell3 export?", "Vell3 exports 9 tonnes."),
    ("How many tonnes of salt does Vell7 export each year?", "21 tonnes."),
]


def _messages(question: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": SYSTEM},
            {"role": "user", "content": f"Context:\n{CONTEXT}\n\nQuestion: {question}"}]


class ScriptedChat(BaseChatModel):
    """Answers each question with its logged answer."""

    model_name: str = "gpt-4o-mini"
    temperature: float = 0.0

    @property
    def _llm_type(self) -> str:
        return "scripted"

    @property
    def _identifying_params(self) -> dict[str, Any]:  # what LangChain reports it calls with
        return {"model_name": self.model_name, "temperature": self.temperature}

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: Any = None, **kwargs: Any) -> ChatResult:
        question = str(messages[-1].content).rsplit("Question: ", 1)[-1]
        answer = dict(CALLS)[question]
        return ChatResult(generations=[ChatGeneration(message=AIMessage(
            content=answer, response_metadata={"finish_reason": "stop"}))])


@pytest.fixture
def log(tmp_path: Path) -> Path:
    path = tmp_path / "traffic.jsonl"
    rows = [{"request": {"model": "gpt-4o-mini", "temperature": 0.0,
                         "messages": _messages(question)},
             "response": {"choices": [{"finish_reason": "stop",
                                       "message": {"role": "assistant", "content": answer}}]}}
            for question, answer in CALLS]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def _lean_rows(preset: str, ledger_path: Path) -> Iterator[Any]:
    ledger = JSONLLedger(ledger_path)
    llm = lean(ScriptedChat(), preset=preset, ledger=ledger)
    for question, _ in CALLS:
        llm.invoke([(m["role"], m["content"]) for m in _messages(question)])
    return ledger.records()


@pytest.mark.parametrize("preset", ["safe", "max-savings"])
def test_the_audit_saves_what_lean_saves(preset: str, log: Path, tmp_path: Path) -> None:
    report = audit_log(log, options=AuditOptions(preset=preset, price_as="gpt-4o-mini"))
    records = list(_lean_rows(preset, tmp_path / "ledger.jsonl"))
    assert len(records) == len(CALLS) == report["requests"]
    assert report["layer_order"] == [rep.layer for rep in records[0].layers]
    lean_hits = [i + 1 for i, record in enumerate(records) if record.cached]
    assert lean_hits  # the exact repeat (call 3) is a hit either way
    assert [e["line"] for e in report["cache"]["examples"]] == lean_hits
    lean_saved: dict[str, int] = {}
    for record in records:
        for rep in record.layers if not record.cached else ():
            lean_saved[rep.layer] = lean_saved.get(rep.layer, 0) + rep.saved_input_tokens
    audit_saved = {la["layer"]: la["saved_input_tokens"] for la in report["layers"]
                   if la["status"] == "ran" and la["layer"] != "cache"}
    assert audit_saved == {k: v for k, v in lean_saved.items() if k != "cache"}
    assert report["tokens_after"]["input"] == sum(r.usage.input_tokens for r in records)
    whole_calls = sum(count_messages(_messages(CALLS[line - 1][0]), model="gpt-4o-mini").tokens
                      for line in lean_hits)
    cache = next(la for la in report["layers"] if la["layer"] == "cache")
    assert cache["saved_input_tokens"] == whole_calls
