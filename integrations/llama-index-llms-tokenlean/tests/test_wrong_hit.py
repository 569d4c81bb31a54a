"""A wrong semantic hit reported back through LlamaIndex (issue #21):
``lean(llm).report_wrong_hit(response)``.

The wrapped model is a real LlamaIndex ``CustomLLM`` that numbers its answers; the
cache is the real ``ResponseCache`` under a false-hit bound, with plain cosine
(``guard=None``) over an embedder whose vectors are built so each query's cosine to
its stored question is known: ``"hours ~0.97 #a"`` is at cosine 0.97 to ``"hours"``.
A warm start on such pairs, all right, opens the bound at 0.97 before any traffic.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from llama_index.core.base.llms.types import (
    ChatMessage,
    CompletionResponse,
    CompletionResponseGen,
    LLMMetadata,
    MessageRole,
)
from llama_index.core.llms.callbacks import llm_completion_callback
from llama_index.core.llms.custom import CustomLLM
from pydantic import PrivateAttr

from llama_index.llms.tokenlean import LeanLLM, lean
from tokenlean.core import ConfigError, InvalidRequestError

cache_mod = pytest.importorskip("tokenlean.cache")

from tokenlean.cache.testing import known_cosine_embedder  # noqa: E402

ANGLES = known_cosine_embedder(name="angles")


class NumberedLLM(CustomLLM):
    """Answers "model answer <n>" (n counts its calls); temperature 0, so repeatable."""

    temperature: float = 0.0
    _calls: int = PrivateAttr(default=0)

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(model_name="gpt-4o-mini")

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        answer = f"model answer {self._calls}"
        self._calls += 1
        return CompletionResponse(text=answer)

    @llm_completion_callback()
    def stream_complete(self, prompt: str, formatted: bool = False,
                        **kwargs: Any) -> CompletionResponseGen:
        response = self.complete(prompt, formatted)

        def gen() -> CompletionResponseGen:
            yield CompletionResponse(text=response.text, delta=response.text)

        return gen()


def bounded_llm() -> tuple[LeanLLM, Any]:
    """``lean(NumberedLLM)`` over a cache under a 5% bound, warm-started on 300 right
    pairs at cosine 0.97 (so it serves paraphrases at 0.97)."""
    cache = cache_mod.ResponseCache(embedder=ANGLES, guard=None, min_score=0.5,
                                    max_false_hit_rate=0.05, seed=0)
    cache.warm_start([(f"p{k}", f"p{k} ~0.97 #{k}", True) for k in range(300)])
    assert cache.bound_stats()["thresholds"]["new"] is not None  # the bound is open
    return lean(NumberedLLM(), layers=[cache], ledger=False), cache


def _hit_id(response: Any) -> str | None:
    hit_id: str | None = response.additional_kwargs["tokenlean"]["cache_hit_id"]
    return hit_id


def served_paraphrase(ask: Callable[[str], Any], topic: str) -> tuple[str, Any]:
    """Ask paraphrases of ``topic`` at cosine 0.97 until one is served from the cache (a
    share of would-be hits is explored: sent to the model anyway, to learn)."""
    for k in range(8):
        query = f"{topic} ~0.97 #{k}"
        response = ask(query)
        if _hit_id(response) is not None:
            return query, response
    raise AssertionError("no paraphrase was served from the cache")


def _user(text: str) -> list[ChatMessage]:
    return [ChatMessage(role=MessageRole.USER, content=text)]


def test_a_hit_carries_its_id_and_a_report_vetoes_the_entry() -> None:
    llm, cache = bounded_llm()
    miss = llm.complete("hours")
    assert miss.text == "model answer 0" and _hit_id(miss) is None
    assert not llm.report_wrong_hit(miss)  # a miss: nothing to report
    query, hit = served_paraphrase(llm.complete, "hours")
    assert hit.text == "model answer 0" and hit.additional_kwargs["tokenlean"]["cached"]
    exact = llm.complete("hours")
    assert exact.additional_kwargs["tokenlean"]["cached"] and _hit_id(exact) is None
    assert not llm.report_wrong_hit(exact)  # an exact hit: nothing to learn
    before = cache.bound_stats()["labelled_by_source"].get("feedback", 0)

    assert llm.report_wrong_hit(hit) is True
    assert cache.bound_stats()["labelled_by_source"]["feedback"] == before + 1
    again = llm.complete(query)  # the same paraphrase: the entry is vetoed for it now
    assert _hit_id(again) is None and not again.additional_kwargs["tokenlean"]["cached"]
    assert again.text != "model answer 0"


def test_chat_hits_the_id_itself_and_async_reports() -> None:
    llm, _ = bounded_llm()
    llm.chat(_user("fees"))
    query, hit = served_paraphrase(lambda q: llm.chat(_user(q)), "fees")
    assert hit.message.content == "model answer 0"
    assert llm.report_wrong_hit(_hit_id(hit)) is True  # the id alone
    assert asyncio.run(llm.areport_wrong_hit(hit)) is True
    assert _hit_id(asyncio.run(llm.achat(_user(query)))) is None  # vetoed
    with pytest.raises(InvalidRequestError):
        llm.report_wrong_hit("not-a-hit-id")
    with pytest.raises(InvalidRequestError, match="report_wrong_hit takes"):
        llm.report_wrong_hit(42)  # type: ignore[arg-type]


def test_without_a_cache_layer_there_is_nothing_to_report() -> None:
    llm, _ = bounded_llm()
    llm.complete("tides")
    _, hit = served_paraphrase(llm.complete, "tides")
    plain = lean(NumberedLLM(), layers=[], ledger=False)
    assert plain.report_wrong_hit(hit) is False
    assert asyncio.run(plain.areport_wrong_hit(hit)) is False


def test_lean_passes_max_false_hit_rate_to_the_semantic_cache_it_builds() -> None:
    llm = lean(NumberedLLM(), cache="semantic", max_false_hit_rate=0.01, ledger=False)
    assert llm.layers[0].name == "cache" and llm.layers[0].max_false_hit_rate == 0.01
    for bad in ({"cache": "semantic", "max_false_hit_rate": 0},
                {"cache": "exact", "max_false_hit_rate": 0.01},
                {"cache": False, "max_false_hit_rate": 0.01}):
        with pytest.raises(ConfigError, match="max_false_hit_rate"):
            lean(NumberedLLM(), ledger=False, **bad)
