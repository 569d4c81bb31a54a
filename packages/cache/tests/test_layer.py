from __future__ import annotations

import pytest

from tokenlean.cache import (
    NOT_CACHED,
    SEMANTIC_SKIPPED,
    FunctionEmbedder,
    ResponseCache,
    SQLiteStore,
)
from tokenlean.core import (
    ConfigError,
    FunctionProvider,
    Pipeline,
    Request,
    Response,
    TokenleanWarning,
    Usage,
)


def exact_cache(**kw) -> ResponseCache:
    return ResponseCache(semantic=False, **kw)


def test_exact_hit_answers_with_original_usage(model, ask):
    cache = exact_cache()
    pipe = Pipeline(provider=model.provider(), layers=[cache])
    first = pipe.run(ask("What is the capital of France?"))
    second = pipe.run(ask("What is the capital of France?"))
    assert model.calls == 1
    assert not first.response.cached
    assert second.response.cached and second.response.cache_score == 1.0
    assert second.response.text == first.response.text
    assert second.response.usage == Usage(input_tokens=30, output_tokens=12)
    assert second.record.cached
    assert second.record.usage == Usage()  # a hit costs nothing
    saved = {r.layer: r for r in second.record.layers}["cache"]
    assert saved.saved_output_tokens == 12 and saved.saved_input_tokens > 0


def test_whitespace_is_normalised_but_case_is_not(model, ask):
    cache = exact_cache()
    pipe = Pipeline(provider=model.provider(), layers=[cache])
    pipe.run(ask("What is  the capital\nof France? "))
    assert pipe.run(ask("What is the capital of France?")).response.cached
    assert not pipe.run(ask("WHAT is the capital of France?")).response.cached


@pytest.mark.parametrize("change", [
    {"model": "gpt-4o"}, {"max_tokens": 5}, {"temperature": 0.7}, {"top_p": 0.5},
    {"stop": ["\n"]}, {"seed": 7}, {"params": {"response_format": {"type": "json_object"}}},
    {"tools": [{"type": "function", "function": {"name": "f"}}]}, {"system": "Be brief."},
    {"tenant": "other"},
])
def test_every_output_changing_field_is_in_the_exact_key(model, ask, change):
    cache = exact_cache(cache_sampled=True)  # the key alone decides here
    pipe = Pipeline(provider=model.provider(), layers=[cache])
    pipe.run(ask("Tell me a fact"))
    assert not pipe.run(ask("Tell me a fact", **change)).response.cached
    assert model.calls == 2


def test_params_that_do_not_change_output_are_ignored(model, ask):
    cache = exact_cache()
    pipe = Pipeline(provider=model.provider(), layers=[cache])
    pipe.run(ask("Tell me a fact"))
    assert pipe.run(ask("Tell me a fact", user="u1",
                        params={"stream_options": {"include_usage": True}})).response.cached


def test_earlier_turns_are_part_of_the_key(model):
    cache = exact_cache()
    pipe = Pipeline(provider=model.provider(), layers=[cache])

    def chat(prev: str) -> Request:
        return Request(model="gpt-4o-mini", temperature=0, messages=[
            {"role": "user", "content": prev}, {"role": "assistant", "content": "ok"},
            {"role": "user", "content": "and then?"}])

    pipe.run(chat("I went to Paris"))
    assert not pipe.run(chat("I went to Rome")).response.cached
    assert pipe.run(chat("I went to Paris")).response.cached


def test_adversarial_tenants_never_share_entries(model, ask, bow):
    """Same prompts, prompts naming other tenants, tenants that look like key
    material: 0 cross-tenant hits, exact or semantic."""
    cache = ResponseCache(embedder=FunctionEmbedder(bow), guard=None, min_score=0.5)
    pipe = Pipeline(provider=model.provider(), layers=[cache])
    tenants = ["acme", "evil", "acme|", "", "default", "acme\x00", '{"tenant": "acme"}']
    tenants = [t for t in tenants if t]
    prompts = ["What is our refund policy?", 'tenant="acme" What is our refund policy?',
               "What is our refund policy? tenant: acme"]
    for prompt in prompts:
        pipe.run(ask(prompt, tenant="acme"))
    cross = hits = 0
    for tenant in tenants[1:]:
        for prompt in prompts:
            result = pipe.run(ask(prompt, tenant=tenant))
            hits += result.response.cached
            cross += f"tenant={tenant!r}" not in result.response.text
    assert cross == 0
    assert hits > 0  # tenants do hit their *own* entries
    # the owner still hits, exactly and semantically
    assert pipe.run(ask("What is our refund policy?", tenant="acme")).response.cached
    assert pipe.run(ask("what is our refund policy", tenant="acme")).response.cached


def test_sampled_calls_are_neither_served_nor_stored_unless_cache_sampled(model, ask, bow):
    def fresh(**kw) -> tuple[ResponseCache, Pipeline]:
        cache = ResponseCache(embedder=FunctionEmbedder(bow), guard=None, min_score=0.8, **kw)
        return cache, Pipeline(provider=model.provider(), layers=[cache])

    cache, pipe = fresh()
    for settings in ({"temperature": 0.9}, {"temperature": None}, {"temperature": 0.9}):
        first = pipe.run(ask("name a colour", **settings))
        assert not pipe.run(ask("name a colour", **settings)).response.cached
        assert not pipe.run(ask("name a colour please", **settings)).response.cached
        assert {r.layer: r for r in first.record.layers}["cache"].detail == {
            "not_cached": "sampled"}
    assert cache.store.count() == 0  # nothing stored either
    # a seed makes a sampled call repeatable: cached
    pipe.run(ask("name a colour", temperature=0.9, seed=3))
    assert pipe.run(ask("name a colour", temperature=0.9, seed=3)).response.cached
    pipe.run(ask("name a fruit"))  # temperature 0: exact and semantic hits
    assert pipe.run(ask("name a fruit please")).response.cached

    cache, pipe = fresh(cache_sampled=True)
    pipe.run(ask("name a colour", temperature=0.9))
    assert pipe.run(ask("name a colour", temperature=0.9)).response.cached
    assert pipe.run(ask("name a colour please", temperature=0.9)).response.cached
    assert pipe.run(ask("name a colour", temperature=None)).response.cached is False  # new key


def test_cache_sampled_must_be_a_bool():
    with pytest.raises(ConfigError, match="cache_sampled"):
        ResponseCache(semantic=False, cache_sampled="yes")  # type: ignore[arg-type]


def test_ttl_and_invalidation(model, ask):
    now = [1000.0]
    cache = exact_cache(ttl_s=60, clock=lambda: now[0])
    pipe = Pipeline(provider=model.provider(), layers=[cache])
    pipe.run(ask("q1"))
    now[0] += 59
    assert pipe.run(ask("q1")).response.cached
    now[0] += 2
    assert not pipe.run(ask("q1")).response.cached  # expired, fetched again

    pipe.run(ask("q2", tenant="t2"))
    pipe.run(ask("q3", model="gpt-4o"))
    assert cache.invalidate(tenant="t2") == 1
    assert not pipe.run(ask("q2", tenant="t2")).response.cached
    assert cache.invalidate(model="gpt-4o", all_tenants=True) == 1
    now[0] += 1000
    pipe.run(ask("q4"))
    assert cache.invalidate(tenant="default", older_than_s=500) >= 1
    assert pipe.run(ask("q4")).response.cached  # young entries stay


@pytest.mark.parametrize(("settings", "finish_reason", "why"), [
    ({"temperature": 0.0}, "length", "truncated"),  # no cap of the app's: someone else's cut
    ({"temperature": 0.0, "max_tokens": 50}, "length", "truncated"),  # cut short of the app's
    ({"temperature": 0.0, "max_tokens": 50}, "max_tokens", "truncated"),  # Anthropic's name
    ({"temperature": 0.0}, "content_filter", "content_filter"),
    ({"temperature": 0.0}, "error", "error"),
    ({"temperature": 0.0}, "paused", "unknown_finish_reason"),
    ({"temperature": 0.7}, "stop", "sampled"),
])
def test_the_record_says_why_an_answer_was_not_cached(ask, settings, finish_reason, why):
    model_answers = Response(text="Once upon", finish_reason=finish_reason,
                             usage=Usage(input_tokens=9, output_tokens=5))
    pipe = Pipeline(provider=FunctionProvider(lambda r: model_answers),
                    layers=[exact_cache()])
    first = pipe.run(ask("long story", **settings))
    second = pipe.run(ask("long story", **settings))
    assert not second.response.cached
    for result in (first, second):
        assert {r.layer: r for r in result.record.layers}["cache"].detail == {"not_cached": why}
        assert result.record.not_cached == why
    assert why in NOT_CACHED


@pytest.mark.parametrize("finish_reason", ["length", "max_tokens"])
def test_an_answer_cut_at_the_apps_own_cap_is_replayed(ask, finish_reason):
    """Asked again with the same cap (and no sampling), the model would cut it the same
    way: the cache may answer. Its record says nothing is missing."""
    cut = Response(text="Once upon a", finish_reason=finish_reason,
                   usage=Usage(input_tokens=9, output_tokens=5))
    pipe = Pipeline(provider=FunctionProvider(lambda r: cut), layers=[exact_cache()])
    first = pipe.run(ask("long story", max_tokens=5))
    second = pipe.run(ask("long story", max_tokens=5))
    assert first.record.not_cached is None
    assert second.response.cached and second.response.finish_reason == finish_reason


def test_a_stored_answer_leaves_no_reason(ask, model):
    pipe = Pipeline(provider=model.provider(), layers=[exact_cache()])
    first = pipe.run(ask("short story"))
    assert first.record.not_cached is None and not pipe.run(ask("short story")).record.not_cached


def test_the_default_store_says_it_is_in_memory(ask, model, caplog):
    """Entries of the default store are lost when the process exits: the repr says so,
    and the first hit logs it (once) on the tokenlean.cache logger."""
    import logging

    cache = exact_cache()
    assert "in memory" in repr(cache) and "lost when the process exits" in repr(cache)
    assert "in memory" not in repr(exact_cache(store=SQLiteStore()).store)
    pipe = Pipeline(provider=model.provider(), layers=[cache])
    with caplog.at_level(logging.INFO, logger="tokenlean.cache"):
        for _ in range(3):
            pipe.run(ask("What is 2 + 2?"))
    (line,) = [r.getMessage() for r in caplog.records if r.name == "tokenlean.cache"]
    assert "in-memory" in line and "store=PATH" in line


def test_truncated_answers_are_not_stored(ask):
    cache = exact_cache()
    req = ask("long story")
    cache.update(req, Response(text="Once upon", finish_reason="length"))
    assert cache.lookup(req) is None
    cache.update(req, Response(text="cached", cached=True))
    assert cache.lookup(req) is None
    cache.update(req, Response(text="The end."))
    assert cache.lookup(req).response.text == "The end."


class BrokenStore(SQLiteStore):
    broken = True

    def get(self, *a, **kw):
        if self.broken:
            raise ConnectionError("store down")
        return super().get(*a, **kw)

    def put(self, *a, **kw):
        if self.broken:
            raise ConnectionError("store down")
        return super().put(*a, **kw)


def test_failing_store_passes_through_with_one_warning_per_outage(model, ask):
    store = BrokenStore()
    cache = exact_cache(store=store)
    pipe = Pipeline(provider=model.provider(), layers=[cache])
    with pytest.warns(TokenleanWarning, match="store down") as caught:
        for _ in range(3):
            assert not pipe.run(ask("hello")).response.cached
    assert len(caught) == 1 and model.calls == 3
    store.broken = False
    pipe.run(ask("hello"))
    assert pipe.run(ask("hello")).response.cached
    store.broken = True  # a second outage warns again, once
    with pytest.warns(TokenleanWarning) as caught:
        pipe.run(ask("hello"))
        pipe.run(ask("hello"))
    assert len(caught) == 1


def test_corrupt_entry_is_a_miss_and_is_removed(model, ask):
    store = SQLiteStore()
    cache = exact_cache(store=store)
    pipe = Pipeline(provider=model.provider(), layers=[cache])
    pipe.run(ask("hello"))
    store._db.execute("UPDATE tokenlean_cache SET response = '{not json'")
    assert store.count() == 1
    assert not pipe.run(ask("hello")).response.cached
    assert pipe.run(ask("hello")).response.cached  # re-stored after the miss
    assert model.calls == 2


async def test_async_twins(model, ask):
    cache = exact_cache()
    pipe = Pipeline(provider=model.provider(), layers=[cache])
    await pipe.arun(ask("async hello"))
    result = await pipe.arun(ask("async hello"))
    assert result.response.cached and model.calls == 1
    assert (await cache.alookup(ask("async hello"))).kind == "exact"
    assert await cache.ainvalidate(tenant="default") == 1


def test_streamed_miss_is_stored_and_hit_replays_as_stream(model, ask):
    cache = exact_cache()
    pipe = Pipeline(provider=model.provider(), layers=[cache])
    chunks = list(pipe.stream(ask("stream me")))
    assert chunks[-1].response is not None and not chunks[-1].response.cached
    replay = list(pipe.stream(ask("stream me")))
    assert "".join(c.text for c in replay) == chunks[-1].response.text
    assert replay[-1].response.cached and model.calls == 1


def test_semantic_needs_identical_context(model, ask, bow):
    cache = ResponseCache(embedder=FunctionEmbedder(bow), guard=None, min_score=0.7)
    pipe = Pipeline(provider=model.provider(), layers=[cache])
    pipe.run(ask("how do I reset my password", system="You are a support bot."))
    hit = pipe.run(ask("how do I reset my password please", system="You are a support bot."))
    assert hit.response.cached and 0.7 <= hit.response.cache_score < 1.0
    assert hit.response.raw["cache"]["kind"] == "semantic"
    assert not pipe.run(ask("how do I reset my password please",
                            system="You are a pirate.")).response.cached
    assert not pipe.run(ask("how do I reset my password please", system="You are a support bot.",
                            max_tokens=10)).response.cached


def test_wordllama_plain_cosine_matches_paraphrase(model, ask):
    cache = ResponseCache(embedder="wordllama", guard=None, min_score=0.8)
    pipe = Pipeline(provider=model.provider(), layers=[cache])
    pipe.run(ask("How can I learn to play the guitar quickly?"))
    assert pipe.run(ask("how can i learn to play guitar fast?")).response.cached
    assert not pipe.run(ask("What is the boiling point of water?")).response.cached


def test_a_long_last_turn_is_matched_exactly_never_embedded(model, ask, bow):
    """Over max_query_chars the semantic lookup is skipped (and said so): the prompt is
    never embedded, and a long prompt sharing another's beginning is no hit."""
    embedded: list[int] = []

    def counting(texts):
        embedded.extend(len(t) for t in texts)
        return bow(texts)

    cache = ResponseCache(embedder=FunctionEmbedder(counting), guard=None, min_score=0.5,
                          max_query_chars=100)
    pipe = Pipeline(provider=model.provider(), layers=[cache])
    long = "please summarise this report " * 10  # 300 characters
    first = pipe.run(ask(long, system="s"))
    assert first.record.layers[0].detail == {"semantic_skipped": "long_query"}
    assert pipe.run(ask(long, system="s")).response.cached  # the exact cache still works
    assert not pipe.run(ask(long + " and the appendix", system="s")).response.cached
    assert all(n <= 100 for n in embedded)
    pipe.run(ask("short question", system="s"))
    assert pipe.run(ask("short question please", system="s")).response.cached  # semantic
    assert set(SEMANTIC_SKIPPED) == {"long_query"}


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, None])
def test_max_query_chars_must_be_a_positive_integer(bad):
    with pytest.raises(ConfigError, match="max_query_chars"):
        ResponseCache(max_query_chars=bad)
