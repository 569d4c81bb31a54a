"""TokenleanCache under real LangChain models (fakes from langchain_core as the
*model*: the cache is what is under test)."""

from __future__ import annotations

import pytest
from langchain_core.globals import get_llm_cache, set_llm_cache
from langchain_core.language_models.fake import FakeListLLM
from langchain_core.language_models.fake_chat_models import FakeListChatModel
from langchain_core.messages import HumanMessage, SystemMessage

pytest.importorskip("tokenlean.cache")

from langchain_tokenlean import TokenleanCache
from tokenlean.cache import SQLiteStore


class GreedyChat(FakeListChatModel):
    """A fake chat model that names its temperature (0) in its settings, as real
    ones do: its calls are repeatable, so the cache may answer them."""

    temperature: float = 0.0

    @property
    def _identifying_params(self) -> dict:
        return {**super()._identifying_params, "temperature": self.temperature}


class GreedyLLM(FakeListLLM):
    temperature: float = 0.0

    @property
    def _identifying_params(self) -> dict:
        return {**super()._identifying_params, "temperature": self.temperature}


def chat(cache, responses=("first", "second", "third")):
    return GreedyChat(responses=list(responses), cache=cache)


@pytest.mark.parametrize("settings", [{"temperature": 0.7}, None], ids=["sampled", "unknown"])
def test_a_sampling_model_is_asked_every_time_unless_cache_sampled(settings):
    def model(cache):
        if settings is None:  # names no temperature: the provider's default, which samples
            return FakeListChatModel(responses=["first", "second", "third"], cache=cache)
        return GreedyChat(responses=["first", "second", "third"], cache=cache, **settings)

    sampling = model(TokenleanCache(semantic=False))
    assert [sampling.invoke("Tell me a joke").content for _ in range(2)] == ["first", "second"]
    opted_in = model(TokenleanCache(semantic=False, cache_sampled=True))
    assert [opted_in.invoke("Tell me a joke").content for _ in range(2)] == ["first", "first"]


def test_a_truncated_answer_is_not_stored():
    from langchain_core.messages import AIMessage
    from langchain_core.outputs import ChatGeneration

    cache = TokenleanCache(semantic=False)
    llm_string = GreedyChat(responses=["x"])._get_llm_string()
    cut = AIMessage("The answer is", response_metadata={"finish_reason": "length"})
    cache.update("q", llm_string, [ChatGeneration(message=cut)])
    assert cache.lookup("q", llm_string) is None
    done = AIMessage("The answer is 4.", response_metadata={"finish_reason": "stop"})
    cache.update("q", llm_string, [ChatGeneration(message=done)])
    assert cache.lookup("q", llm_string) is not None


def test_exact_hit_returns_the_first_answer_again():
    model = chat(TokenleanCache(semantic=False))
    assert model.invoke("What is 2 + 2?").content == "first"
    assert model.invoke("What is 2 + 2?").content == "first"
    assert model.invoke("What is 3 + 3?").content == "second"


def test_system_prompt_and_history_are_part_of_the_key():
    model = chat(TokenleanCache(semantic=False))
    q = HumanMessage("Summarise it")
    assert model.invoke([SystemMessage("You are terse."), q]).content == "first"
    assert model.invoke([SystemMessage("You are verbose."), q]).content == "second"
    assert model.invoke([SystemMessage("You are terse."), q]).content == "first"


def test_semantic_hit_on_a_paraphrase_plain_cosine():
    model = chat(TokenleanCache(embedder="wordllama", guard=None, min_score=0.8))
    assert model.invoke("How can I learn to play the guitar quickly?").content == "first"
    assert model.invoke("how can i learn to play guitar fast?").content == "first"
    assert model.invoke("What is the boiling point of water?").content == "second"


def test_tenants_sharing_a_store_never_see_each_other(tmp_path):
    store = SQLiteStore(tmp_path / "lc.sqlite")
    a = chat(TokenleanCache(store=store, tenant="a", semantic=False), ["for a"])
    b = chat(TokenleanCache(store=store, tenant="b", semantic=False), ["for b"])
    assert a.invoke("shared question").content == "for a"
    assert b.invoke("shared question").content == "for b"
    assert a.invoke("shared question").content == "for a"


def test_clear_removes_only_this_tenant(tmp_path):
    store = SQLiteStore(tmp_path / "lc.sqlite")
    ca = TokenleanCache(store=store, tenant="a", semantic=False)
    cb = TokenleanCache(store=store, tenant="b", semantic=False)
    chat(ca).invoke("q")
    chat(cb).invoke("q")
    ca.clear()
    assert store.count("a") == 0 and store.count("b") == 1


async def test_async_lookup_update_and_clear():
    cache = TokenleanCache(semantic=False)
    model = chat(cache)
    assert (await model.ainvoke("async q")).content == "first"
    assert (await model.ainvoke("async q")).content == "first"
    await cache.aclear()
    assert (await model.ainvoke("async q")).content == "second"


def test_global_cache_and_text_llms():
    previous = get_llm_cache()
    try:
        set_llm_cache(TokenleanCache(semantic=False))
        llm = GreedyLLM(responses=["one", "two"])
        assert llm.invoke("complete this") == "one"
        assert llm.invoke("complete this") == "one"
        assert GreedyChat(responses=["x", "y"]).invoke("hello").content == "x"
        assert GreedyChat(responses=["x", "y"]).invoke("hello").content == "x"
    finally:
        set_llm_cache(previous)


def test_model_settings_separate_entries():
    cache = TokenleanCache(semantic=False)
    assert chat(cache, ["a1", "a2"]).invoke("q").content == "a1"
    # a model with other settings (here: other responses) has another llm_string
    assert chat(cache, ["b1", "b2"]).invoke("q").content == "b1"
