"""A wrong semantic hit reported back through LangChain (issue #21): ``lean()``'s
``LeanChatModel``, the agent middleware and the ``TokenleanCache`` (``BaseCache``).

The models are langchain_core's fakes; the cache is the real ``ResponseCache`` under a
false-hit bound, with plain cosine (``guard=None``) over an embedder whose vectors are
built so each query's cosine to its stored question is known: ``"hours ~0.97 #a"`` is
at cosine 0.97 to ``"hours"``. A warm start on such pairs, all right, opens the bound
at 0.97 before any traffic.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from langchain_core.language_models import GenericFakeChatModel
from langchain_core.language_models.fake_chat_models import FakeListChatModel
from langchain_core.messages import AIMessage, BaseMessage

from langchain_tokenlean import LeanChatModel, TokenleanCache, lean

cache_mod = pytest.importorskip("tokenlean.cache")

from tokenlean.cache.testing import known_cosine_embedder  # noqa: E402
from tokenlean.core import ConfigError, InvalidRequestError  # noqa: E402

ANGLES = known_cosine_embedder(name="angles")


def bounded_cache(**kw: object) -> cache_mod.ResponseCache:
    """A cache under a 5% bound, warm-started on 300 right pairs at cosine 0.97."""
    cache = cache_mod.ResponseCache(embedder=ANGLES, guard=None, min_score=0.5,
                                    max_false_hit_rate=0.05, seed=0, **kw)
    cache.warm_start([(f"p{k}", f"p{k} ~0.97 #{k}", True) for k in range(300)])
    assert cache.bound_stats()["thresholds"]["new"] is not None  # the bound is open
    return cache


def answers() -> Iterator[AIMessage]:
    for k in range(1000):
        yield AIMessage(content=f"model answer {k}",
                        usage_metadata={"input_tokens": 5, "output_tokens": 3,
                                        "total_tokens": 8})


def wrapped(layers: list) -> LeanChatModel:
    """A repeatable (temperature 0) fake chat model behind ``layers``, priced as a real one."""
    return LeanChatModel(inner=GenericFakeChatModel(messages=answers()), layers=layers,
                         temperature=0, model="gpt-4o-mini")


def _hit_id(message: BaseMessage) -> str | None:
    return message.response_metadata.get("tokenlean", {}).get("cache_hit_id")


def served_paraphrase(ask, topic: str) -> tuple[str, BaseMessage]:
    """Ask paraphrases of ``topic`` at cosine 0.97 until one is served from the cache (a
    share of would-be hits is explored: sent to the model anyway, to learn)."""
    for k in range(8):
        query = f"{topic} ~0.97 #{k}"
        message = ask(query)
        if _hit_id(message) is not None:
            return query, message
    raise AssertionError("no paraphrase was served from the cache")


# ---- lean(): LeanChatModel ------------------------------------------------------------


def test_lean_chat_model_hit_carries_its_id_and_a_report_vetoes_the_entry() -> None:
    cache = bounded_cache()
    model = wrapped([cache])
    miss = model.invoke("hours")
    assert miss.content == "model answer 0" and _hit_id(miss) is None
    assert not model.report_wrong_hit(miss)  # a miss: nothing to report
    query, hit = served_paraphrase(lambda q: model.invoke(q), "hours")
    assert hit.content == "model answer 0"
    meta = hit.response_metadata["tokenlean"]
    assert meta["cached"] and meta["cache_hit_id"] == _hit_id(hit)
    exact = model.invoke("hours")
    assert exact.response_metadata["tokenlean"]["cached"] and _hit_id(exact) is None
    assert not model.report_wrong_hit(exact)  # an exact hit: nothing to learn
    before = cache.bound_stats()["labelled_by_source"].get("feedback", 0)

    assert model.report_wrong_hit(hit) is True
    assert cache.bound_stats()["labelled_by_source"]["feedback"] == before + 1
    again = model.invoke(query)  # the same paraphrase: the entry is vetoed for it now
    assert _hit_id(again) is None and not again.response_metadata["tokenlean"]["cached"]
    assert again.content.startswith("model answer") and again.content != "model answer 0"


def test_lean_chat_model_report_takes_the_id_and_rejects_an_unknown_one() -> None:
    cache = bounded_cache()
    model = wrapped([cache])
    model.invoke("fees")
    _, hit = served_paraphrase(lambda q: model.invoke(q), "fees")
    assert model.report_wrong_hit(hit.response_metadata["tokenlean"]["cache_hit_id"])
    with pytest.raises(InvalidRequestError):
        model.report_wrong_hit("not-a-hit-id")
    with pytest.raises(InvalidRequestError, match="report_wrong_hit takes"):
        model.report_wrong_hit(42)  # type: ignore[arg-type]
    # no cache among the layers: nothing to report to
    plain = wrapped([])
    assert not plain.report_wrong_hit(hit)


def test_a_streamed_hit_carries_its_id_too_and_async_reports_work() -> None:
    cache = bounded_cache()
    model = wrapped([cache])

    def streamed(query: str) -> BaseMessage:
        total = None
        for piece in model.stream(query):
            total = piece if total is None else total + piece
        assert total is not None
        return total

    model.invoke("rates")
    query, hit = served_paraphrase(streamed, "rates")
    assert hit.content == "model answer 0"
    assert asyncio.run(model.areport_wrong_hit(hit)) is True
    assert _hit_id(asyncio.run(model.ainvoke(query))) is None  # vetoed


def test_lean_passes_max_false_hit_rate_to_the_semantic_cache_it_builds() -> None:
    model = lean(GenericFakeChatModel(messages=answers()), cache="semantic",
                 max_false_hit_rate=0.01, ledger=False)
    assert model.layers[0].name == "cache" and model.layers[0].max_false_hit_rate == 0.01
    with pytest.raises(ConfigError, match="max_false_hit_rate"):
        lean(GenericFakeChatModel(messages=answers()), cache="semantic",
             max_false_hit_rate=2, ledger=False)
    with pytest.raises(ConfigError, match="max_false_hit_rate"):
        lean(GenericFakeChatModel(messages=answers()), cache="exact",
             max_false_hit_rate=0.01, ledger=False)
    with pytest.raises(ConfigError, match="max_false_hit_rate"):
        lean(GenericFakeChatModel(messages=answers()), layers=[bounded_cache()],
             max_false_hit_rate=0.01, ledger=False)


def test_the_middleware_reports_to_its_cache() -> None:
    pytest.importorskip("langchain.agents")
    from langchain_tokenlean import TokenleanMiddleware

    cache = bounded_cache()
    middleware = TokenleanMiddleware(layers=[cache], ledger=False)
    model = wrapped(middleware.layers)  # as the middleware wraps the agent's model
    model.invoke("visas")
    _, hit = served_paraphrase(lambda q: model.invoke(q), "visas")
    assert middleware.report_wrong_hit(hit) is True
    assert asyncio.run(middleware.areport_wrong_hit(hit)) is True
    assert not TokenleanMiddleware(cache=False, ledger=False).report_wrong_hit(hit)
    built = TokenleanMiddleware(cache="semantic", max_false_hit_rate=0.02, ledger=False)
    assert built.layers[0].max_false_hit_rate == 0.02


# ---- TokenleanCache (LangChain's BaseCache) -------------------------------------------


class GreedyChat(FakeListChatModel):
    """A fake chat model that names temperature 0 in its settings (a repeatable call)."""

    temperature: float = 0.0

    @property
    def _identifying_params(self) -> dict:
        return {**super()._identifying_params, "temperature": self.temperature}


def greedy(cache: TokenleanCache) -> GreedyChat:
    return GreedyChat(responses=[f"model answer {k}" for k in range(50)], cache=cache)


def test_tokenlean_cache_hit_carries_its_id_and_a_report_vetoes_the_entry() -> None:
    lc_cache = TokenleanCache(cache=bounded_cache())
    model = greedy(lc_cache)
    miss = model.invoke("hours")
    assert miss.content == "model answer 0" and _hit_id(miss) is None
    assert not lc_cache.report_wrong_hit(miss)
    query, hit = served_paraphrase(lambda q: model.invoke(q), "hours")
    assert hit.content == "model answer 0"
    exact = model.invoke("hours")
    assert exact.content == "model answer 0" and _hit_id(exact) is None
    assert not lc_cache.report_wrong_hit(exact)

    assert lc_cache.report_wrong_hit(hit) is True
    again = model.invoke(query)
    assert _hit_id(again) is None and again.content != "model answer 0"  # the model's
    with pytest.raises(InvalidRequestError):
        lc_cache.report_wrong_hit("not-a-hit-id")


def test_tokenlean_cache_learns_from_a_miss_the_model_then_answers() -> None:
    """LangChain looks up, calls the model, then updates with a request built anew from
    the same prompt: the candidate the lookup did not serve is labelled by that answer."""
    lc_cache = TokenleanCache(embedder=ANGLES, guard=None, min_score=0.5,
                              max_false_hit_rate=0.05)
    assert lc_cache.cache.max_false_hit_rate == 0.05
    model = greedy(lc_cache)
    model.invoke("fees")
    assert lc_cache.cache.bound_stats()["labelled"] == 0
    model.invoke("fees ~0.97 #1")  # a candidate, not served (cold start): the model answers
    stats = lc_cache.cache.bound_stats()
    assert stats["labelled"] == 1 and stats["labelled_by_source"]["miss"] == 1


def test_tokenlean_cache_text_llm_hit_and_async_report() -> None:
    from langchain_core.language_models.fake import FakeListLLM

    class GreedyLLM(FakeListLLM):
        temperature: float = 0.0

        @property
        def _identifying_params(self) -> dict:
            return {**super()._identifying_params, "temperature": self.temperature}

    lc_cache = TokenleanCache(cache=bounded_cache())
    llm = GreedyLLM(responses=[f"text answer {k}" for k in range(50)], cache=lc_cache)
    llm.invoke("tides")
    for k in range(8):
        generation = llm.generate([f"tides ~0.97 #{k}"]).generations[0][0]
        if generation.generation_info and "tokenlean" in generation.generation_info:
            break
    else:
        raise AssertionError("no paraphrase was served from the cache")
    assert generation.text == "text answer 0"
    assert asyncio.run(lc_cache.areport_wrong_hit(generation)) is True


def test_tokenlean_cache_max_false_hit_rate_is_checked_and_not_doubled() -> None:
    with pytest.raises(ConfigError, match="max_false_hit_rate"):
        TokenleanCache(embedder=ANGLES, max_false_hit_rate=1.5)
    with pytest.raises(ConfigError, match="max_false_hit_rate"):
        TokenleanCache(cache=bounded_cache(), max_false_hit_rate=0.01)
    assert TokenleanCache(embedder=ANGLES, guard=None).cache.max_false_hit_rate is None
