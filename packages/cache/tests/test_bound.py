"""The false-hit bound (issue #21): what it learns, when it serves, what it shares.

Most tests use plain cosine (``guard=None``, the ``cosine`` channel only) over an
embedder whose vectors are built so each query's cosine to its stored question
is known exactly; the last ones run the shipped guard on real sentences.
"""

from __future__ import annotations

import pytest

from tokenlean.cache import ResponseCache, SQLiteStore
from tokenlean.cache._bound import FalseHitBound, exact_judge, wilson_upper
from tokenlean.cache._labels import Label
from tokenlean.cache.testing import known_cosine_embedder
from tokenlean.core import ConfigError, InvalidRequestError, Message, Request, Response, Usage

EMBEDDER = known_cosine_embedder(name="angles")


def ask(text: str, tenant: str = "t") -> Request:
    return Request(messages=(Message(role="user", content=text),), model="m", tenant=tenant,
                   temperature=0)


def answer(text: str) -> Response:
    return Response(text=text, usage=Usage(output_tokens=3))


def cosine_cache(**kw) -> ResponseCache:
    return ResponseCache(embedder=EMBEDDER, guard=None, min_score=0.5,
                         max_false_hit_rate=kw.pop("max_false_hit_rate", 0.05), seed=0, **kw)


def play(cache: ResponseCache, topic: str, query: str, right: bool, *,
         tenant: str = "t") -> bool:
    """Store ``topic``, ask ``query``; on a miss answer it (the same answer when
    ``right``) so the cache learns a label. True when it was served from the cache."""
    cache.update(ask(topic, tenant), answer(f"answer to {topic}"))
    request = ask(query, tenant)
    if cache.lookup(request) is not None:
        return True
    cache.update(request, answer(f"answer to {topic}" if right else f"other: {query}"))
    return False


def test_wilson_upper_bound_matches_the_formula() -> None:
    # 0 wrong of 100 at z = 1.96: z^2 / (n + z^2)
    assert wilson_upper(0, 100, 1.96) == pytest.approx(1.96 ** 2 / (100 + 1.96 ** 2))
    assert wilson_upper(8, 332, 1.96) == pytest.approx(0.04682, abs=1e-5)
    assert wilson_upper(0, 0, 1.96) == 1.0
    assert wilson_upper(5, 10, 1.96) > 0.5


def test_bad_options_are_config_errors() -> None:
    for bad in ({"max_false_hit_rate": 0}, {"max_false_hit_rate": 1.5},
                {"max_false_hit_rate": True}, {"explore_rate": 0}, {"explore_rate": 0.9},
                {"confidence": 1.0}):
        with pytest.raises(ConfigError):
            ResponseCache(embedder=EMBEDDER, **{"max_false_hit_rate": 0.05, **bad})


def test_cold_start_serves_exact_hits_only() -> None:
    cache = cosine_cache()
    assert not play(cache, "refund", "refund ~0.99 #1", right=True)  # nothing learned yet
    cache.update(ask("refund"), answer("answer to refund"))
    assert cache.lookup(ask("refund")) is not None  # exact hits need no bound
    stats = cache.bound_stats()
    assert stats["labelled"] == 1 and stats["thresholds"]["new"] is None


def test_it_learns_a_threshold_between_right_and_wrong_scores() -> None:
    """Queries at cosine >= 0.95 get the stored answer right; at 0.85-0.9 wrong. After
    enough misses the cache serves the high band and never the low one."""
    cache = cosine_cache()
    for k in range(150):
        play(cache, f"q{k}", f"q{k} ~0.97 #{k}", right=True)
        play(cache, f"w{k}", f"w{k} ~0.87 #{k}", right=False)
    rule = cache.bound_stats()["thresholds"]["new"]
    assert rule["channel"] == "cosine" and 0.87 < rule["threshold"] <= 0.97
    before = cache.bound_stats()
    served_high = sum(play(cache, f"h{k}", f"h{k} ~0.97 #{k}", right=True) for k in range(100))
    served_low = sum(play(cache, f"l{k}", f"l{k} ~0.87 #{k}", right=False) for k in range(40))
    assert served_high >= 85 and served_low == 0  # a few are explored, none low served
    after = cache.bound_stats()
    explored = after["explored"] - before["explored"]
    assert after["served"] - before["served"] == served_high
    assert served_high + explored == 100 and explored >= 1


def test_noisy_top_band_is_not_served_at_a_tight_bound() -> None:
    """1 in 10 of the high band is wrong: a 2% bound never opens, a 20% one does."""
    for delta, opens in ((0.02, False), (0.2, True)):
        cache = cosine_cache(max_false_hit_rate=delta)
        for k in range(300):
            play(cache, f"q{k}", f"q{k} ~0.97 #{k}", right=k % 10 != 0)
        assert (cache.bound_stats()["thresholds"]["new"] is not None) is opens


def test_a_wrong_hit_report_disputes_the_entry_and_vetoes_it() -> None:
    cache = cosine_cache()
    cache.warm_start([(f"p{k}", f"p{k} ~0.97 #{k}", True) for k in range(300)])
    assert play(cache, "hours", "hours ~0.97 #a", right=True)
    hit = cache.lookup(ask("hours ~0.97 #b"))
    assert hit is not None and hit.hit_id
    assert cache.report_wrong_hit(hit)
    # the same entry, no closer than the reported query: never served again
    assert cache.lookup(ask("hours ~0.96 #c")) is None
    stats = cache.bound_stats()
    assert stats["labelled_by_source"]["feedback"] == 1
    assert cache.bound.stratum_of("t", _entry_key(cache, "hours"))[0] == "disputed"
    # another tenant's entry of the same text is untouched
    assert play(cache, "hours", "hours ~0.97 #d", right=True, tenant="other")


def _entry_key(cache: ResponseCache, text: str) -> str:
    return cache._keys(ask(text)).exact


def test_report_wrong_hit_takes_the_response_or_the_id_and_rejects_junk() -> None:
    cache = cosine_cache()
    cache.warm_start([(f"p{k}", f"p{k} ~0.97 #{k}", True) for k in range(300)])
    cache.update(ask("tax"), answer("answer to tax"))
    hit = cache.lookup(ask("tax ~0.98 #1"))
    assert hit is not None
    assert cache.report_wrong_hit(hit.response)
    assert cache.report_wrong_hit(hit.response.raw["cache"]["hit_id"])
    exact = cache.lookup(ask("tax"))
    assert exact is not None and not cache.report_wrong_hit(exact)  # exact: nothing to learn
    with pytest.raises(InvalidRequestError):
        cache.report_wrong_hit("not-a-hit-id")


def test_processes_sharing_a_store_share_what_was_learned(tmp_path) -> None:
    path = tmp_path / "cache.sqlite"
    first = cosine_cache(store=SQLiteStore(path))
    for k in range(150):
        play(first, f"q{k}", f"q{k} ~0.97 #{k}", right=True)
    assert first.bound_stats()["thresholds"]["new"] is not None
    second = cosine_cache(store=SQLiteStore(path))  # another process, same file
    stats, learned = second.bound_stats(), first.bound_stats()
    assert stats["labelled"] == learned["labelled"] > 0  # misses until the bound opened
    assert stats["thresholds"] == learned["thresholds"]
    assert play(second, "new-topic", "new-topic ~0.98 #1", right=True)


def test_labels_of_another_scorer_are_not_mixed_in(tmp_path) -> None:
    path = tmp_path / "cache.sqlite"
    first = cosine_cache(store=SQLiteStore(path))
    for k in range(150):
        play(first, f"q{k}", f"q{k} ~0.97 #{k}", right=True)
    other = known_cosine_embedder(name="angles-v2")
    second = ResponseCache(embedder=other, guard=None, max_false_hit_rate=0.05,
                           store=SQLiteStore(path))
    assert second.bound_stats()["labelled"] == 0


def test_sampled_and_truncated_answers_teach_nothing() -> None:
    cache = cosine_cache()
    cache.update(ask("fees"), answer("answer to fees"))
    request = ask("fees ~0.97 #1")
    assert cache.lookup(request) is None
    cache.update(request, Response(text="cut", finish_reason="length",
                                   usage=Usage(output_tokens=3)))
    sampled = Request(messages=(Message(role="user", content="fees ~0.97 #2"),), model="m",
                      tenant="t", temperature=0.7)
    assert cache.lookup(sampled) is None
    cache.update(sampled, answer("answer to fees"))
    assert cache.bound_stats()["labelled"] == 0


def test_exploration_is_the_share_asked_for() -> None:
    bound = FalseHitBound(0.05, scope="s", log=None, channels=("cosine",), explore_rate=0.1,
                          seed=1)
    for k in range(300):
        bound.learn(Label(tenant="t", entry=f"e{k}", score=0.99, cosine=0.99, stratum="new",
                          vetoed=False, correct=True, source="miss", at=0.0))
    decisions = [bound.decide("t", f"x{k}", 0.99, 0.99) for k in range(2000)]
    explored = sum(d.explore for d in decisions)
    assert all(d.serve or d.explore for d in decisions)
    assert 140 <= explored <= 260  # 10% of 2000, binomial sd ~13


def test_label_bodies_round_trip_and_junk_is_skipped() -> None:
    label = Label(tenant="t", entry="e", score=0.9, cosine=0.8, stratum="vouched",
                  vetoed=False, correct=True, source="explore", at=1.5)
    assert Label.from_json(label.to_json()) == label
    for junk in ("", "{}", "[1]", label.to_json().replace("0.9", "1.9"),
                 label.to_json().replace("explore", "guess")):
        assert Label.from_json(junk) is None


def test_the_default_judge_is_strict_text_equality() -> None:
    assert exact_judge("Open  9-5.\n", "Open 9-5.")
    assert not exact_judge("Open 9 to 5.", "Open 9-5.")


def test_the_shipped_guard_serves_look_alikes_never_and_paraphrases_once_learned() -> None:
    """Real sentences, the shipped verifier: warm-started on paraphrases it scores
    high, the bound serves a paraphrase and still refuses a swapped look-alike."""
    cache = ResponseCache(max_false_hit_rate=0.05, seed=0)
    assert cache.max_false_hit_rate == 0.05
    # paraphrases the verifier scores lower (~0.74) than the one asked below (~0.87)
    pairs = [(f"What is the best way to learn {topic}?", f"How should I learn {topic}?", True)
             for topic in [f"language number {k}" for k in range(200)]]
    cache.warm_start(pairs)
    assert cache.bound_stats()["thresholds"]["new"] is not None
    cache.update(ask("How do I lose weight fast?"), answer("Eat less, move more."))
    served = [cache.lookup(ask("How can I lose weight fast?")) for _ in range(3)]
    assert any(hit is not None for hit in served)
    cache.update(ask("flights from Paris to Rome"), answer("Daily, 2h."))
    assert cache.lookup(ask("flights from Rome to Paris")) is None


def test_the_default_bound_applies_with_a_guard_only() -> None:
    assert ResponseCache(embedder=EMBEDDER).max_false_hit_rate == 0.05
    assert ResponseCache(embedder=EMBEDDER, guard=None).max_false_hit_rate is None
    assert ResponseCache(embedder=EMBEDDER, max_false_hit_rate=None).max_false_hit_rate is None
    assert ResponseCache(embedder=EMBEDDER, semantic=False).bound is None


def test_a_failing_label_log_costs_the_label_not_the_answer() -> None:
    """The store keeps the answer; the label write fails: one warning, the answer is
    still served exactly next time, and the cache keeps working."""
    from tokenlean.core import TokenleanWarning

    class FlakyLabels(SQLiteStore):
        def add_labels(self, scope, bodies, keep):  # type: ignore[override]
            raise OSError("label log down")

    cache = ResponseCache(embedder=EMBEDDER, guard=None, min_score=0.5,
                          max_false_hit_rate=0.05, store=FlakyLabels())
    cache.update(ask("hours"), answer("answer to hours"))
    request = ask("hours ~0.97 #1")
    assert cache.lookup(request) is None
    with pytest.warns(TokenleanWarning):
        assert cache.update(request, answer("answer to hours")) is None  # stored
    assert cache.lookup(ask("hours ~0.97 #1")) is not None  # an exact hit now
    assert cache.bound_stats()["labelled"] == 0
