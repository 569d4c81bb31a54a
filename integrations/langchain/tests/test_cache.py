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


def chat(cache, responses=("first", "second", "third")):
    return FakeListChatModel(responses=list(responses), cache=cache)


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
        llm = FakeListLLM(responses=["one", "two"])
        assert llm.invoke("complete this") == "one"
        assert llm.invoke("complete this") == "one"
        assert FakeListChatModel(responses=["x", "y"]).invoke("hello").content == "x"
        assert FakeListChatModel(responses=["x", "y"]).invoke("hello").content == "x"
    finally:
        set_llm_cache(previous)


def test_model_settings_separate_entries():
    cache = TokenleanCache(semantic=False)
    assert chat(cache, ["a1", "a2"]).invoke("q").content == "a1"
    # a model with other settings (here: other responses) has another llm_string
    assert chat(cache, ["b1", "b2"]).invoke("q").content == "b1"
