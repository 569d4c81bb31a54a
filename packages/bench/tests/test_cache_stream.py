"""``tokenlean bench cache --stream``: the stream builder, the counting, the Wilson
interval, and the command end to end (issue #21)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from tokenlean.bench.cache import bench
from tokenlean.bench.cache_stream import (
    best_within,
    build_stream,
    play,
    summarise,
    wilson,
)
from tokenlean.core import Response


def _pair(pid, a, b, label):
    return {"id": pid, "a": a, "b": b, "label": label}


# ---- the stream builder ------------------------------------------------------------


def test_pairs_stream_stores_a_then_queries_b_in_its_own_tenant():
    rows = [_pair("p1", "A one", "B one", 1), _pair("p2", "A two", "B two", 0)]
    stream = build_stream(rows)
    assert [(e.kind, e.tenant, e.text) for e in stream.events] == [
        ("store", "pair:p1", "A one"), ("query", "pair:p1", "B one"),
        ("store", "pair:p2", "A two"), ("query", "pair:p2", "B two")]
    e = stream.events
    assert e[0].answer == e[1].answer  # label 1: one answer
    assert e[2].answer != e[3].answer  # label 0: two
    assert len({e[0].answer, e[2].answer, e[3].answer}) == 3  # never shared across pairs
    assert stream.n_queries == 2 and stream.label_conflicts == 0 and stream.n_clusters == 2


def test_pairs_stream_counts_a_label_0_pair_of_one_text_as_a_conflict():
    stream = build_stream([_pair("p1", "Same  text", "same text", 0)])
    assert stream.label_conflicts == 1
    # one text, one answer: the repeat is a true duplicate
    assert stream.events[0].answer == stream.events[1].answer


CLUSTER_ROWS = [
    _pair("1", "Q1", "Q2", 1),
    _pair("2", "Q1", "Q3", 0),
    _pair("3", "Q2", "Q4", 1),
    _pair("4", "Q5", "Q6", 1),        # a lone pair: one query, dropped
    _pair("5", "  q1 ", "Q7", 0),     # the same text as Q1, normalised
    _pair("6", "Q8", "Q9", 0),
    _pair("7", "Q9", "Q10", 1),
]


def test_clustered_stream_groups_connected_texts_and_unions_label_1_answers():
    stream = build_stream(CLUSTER_ROWS, clustered=True)
    assert stream.n_clusters == 2 and stream.dropped_texts == 2  # Q5, Q6
    by_text = {e.text: e for e in stream.events}
    # the component's first text is stored; the others come as queries in file order
    assert [(e.kind, e.text) for e in stream.events] == [
        ("store", "Q1"), ("query", "Q2"), ("query", "Q3"), ("query", "Q4"), ("query", "Q7"),
        ("store", "Q8"), ("query", "Q9"), ("query", "Q10")]
    assert len({by_text[t].tenant for t in ("Q1", "Q2", "Q3", "Q4", "Q7")}) == 1
    assert by_text["Q8"].tenant != by_text["Q1"].tenant
    # Q1 = Q2 = Q4 (label-1 path); Q3 and Q7 each their own answer
    assert by_text["Q1"].answer == by_text["Q2"].answer == by_text["Q4"].answer
    assert len({by_text[t].answer for t in ("Q1", "Q3", "Q7")}) == 3
    assert by_text["Q9"].answer == by_text["Q10"].answer != by_text["Q8"].answer
    assert stream.label_conflicts == 0 and stream.n_queries == 6
    # Q1/Q3 and Q1/Q7 are labelled apart; Q3/Q7 never compared (an assumption)
    assert frozenset((by_text["Q1"].answer, by_text["Q3"].answer)) in stream.negatives
    assert frozenset((by_text["Q3"].answer, by_text["Q7"].answer)) not in stream.negatives


def test_clustered_stream_counts_label_0_pairs_inside_one_answer_as_conflicts():
    rows = [*CLUSTER_ROWS, _pair("8", "Q4", "Q1", 0)]  # Q4 = Q2 = Q1 by label 1
    assert build_stream(rows, clustered=True).label_conflicts == 1


def test_clustered_stream_cuts_large_components_into_tenants():
    rows = [_pair(str(i), "hub", f"spoke {i}", 1) for i in range(7)]  # 8 texts
    stream = build_stream(rows, clustered=True, max_component=3)
    tenants = [e.tenant for e in stream.events]
    # chunks of 3, 3 and 2 texts: the last has one query and is dropped
    assert len(set(tenants)) == 2 and stream.dropped_texts == 2 and stream.n_queries == 4
    assert stream.chunked_components == 1
    assert [e.kind for e in stream.events] == ["store", "query", "query"] * 2
    # the answers stay the whole component's: the second chunk's stored spoke answers
    # its own queries (all one answer through the hub)
    assert len({e.answer for e in stream.events}) == 1


# ---- counting ------------------------------------------------------------------------


class _Hit:
    def __init__(self, text, kind="semantic"):
        self.response = Response(text=text, cached=True)
        self.kind = kind


class FakeCache:
    """Always serves the first (or the last) answer stored in the tenant, except to
    the queries in ``miss``; records the updates."""

    def __init__(self, miss=(), last=False):
        self.stored: dict[str, list[str]] = {}
        self.miss = set(miss)
        self.last = last
        self.updates: list[tuple[str, str]] = []

    def lookup(self, request):
        text = request.messages[-1].content
        if text in self.miss or request.tenant not in self.stored:
            return None
        return _Hit(self.stored[request.tenant][-1 if self.last else 0])

    def update(self, request, response):
        self.stored.setdefault(request.tenant, []).append(response.text)
        self.updates.append((request.messages[-1].content, response.text))


def test_play_counts_hits_false_hits_and_true_duplicates():
    stream = build_stream(CLUSTER_ROWS, clustered=True)
    cache = FakeCache(miss={"Q3"})
    counts = play(cache, stream, windows=2, snapshot=lambda: len(cache.updates))
    # queries: Q2 (dup, served right), Q3 (miss: stored), Q4 (dup, right), Q7 (not a dup:
    # served Q1's answer, a false hit labelled by pair 5), Q9 (not a dup: false hit, pair 6),
    # Q10 (Q9's answer, never stored since Q9 was served: not a dup; served Q8's: a false
    # hit, labelled through Q9: Q10 = Q9 != Q8)
    assert counts["n_queries"] == 6 and counts["hits"] == 5
    assert counts["false_hits"] == 3 and counts["false_hits_unlabelled"] == 0
    assert counts["true_duplicates"] == 2 and counts["served_duplicates"] == 2
    assert [w["queries"] for w in counts["windows"]] == [3, 3]
    assert [w["false_hits"] for w in counts["windows"]] == [0, 3]
    assert [w["after"] for w in counts["windows"]] == [2, 3]  # snapshots after each stretch
    # stores, and the model's answer after the one miss, through update
    assert [t for t, _ in cache.updates] == ["Q1", "Q3", "Q8"]
    out = summarise(counts)
    assert out["realized_false_hit_rate"] == 0.6 and out["hit_rate"] == 1.0
    assert out["error_rate_per_query"] == 0.5
    assert out["false_hit_rate_ci95"] == [round(x, 4) for x in wilson(3, 5)]


def test_play_counts_false_hits_no_label_0_pair_backs_apart():
    # serving the newest entry: Q4 gets Q3's answer (labelled apart: Q4 = Q1 != Q3), Q7
    # gets Q3's (Q3 and Q7 were never compared: the assumption), Q11 gets Q3's, stored
    # after Q3's miss: a true duplicate served right
    rows = [*CLUSTER_ROWS, _pair("8", "Q3", "Q11", 1)]
    counts = play(FakeCache(miss={"Q3"}, last=True), build_stream(rows, clustered=True))
    assert counts["n_queries"] == 7
    assert counts["hits"] == 6 and counts["false_hits"] == 4
    assert counts["false_hits_unlabelled"] == 1
    assert counts["true_duplicates"] == 3 and counts["served_duplicates"] == 2


def test_play_keeps_exact_hits_apart():
    class Exact(FakeCache):
        def lookup(self, request):
            hit = super().lookup(request)
            return None if hit is None else _Hit(hit.response.text, "exact")

    counts = play(Exact(), build_stream([_pair("p", "x", "y", 0)]))
    assert counts["exact_hits"] == 1 and counts["exact_false_hits"] == 1
    assert counts["hits"] == 0 and counts["false_hits"] == 0


# ---- the Wilson interval --------------------------------------------------------------


@pytest.mark.parametrize(("k", "n", "lo", "hi"), [
    # Newcombe (1998), Statistics in Medicine 17:857, Table I, method 3 (score)
    (81, 263, 0.2553, 0.3662), (15, 148, 0.0624, 0.1605), (0, 20, 0.0, 0.1611),
    (1, 29, 0.0061, 0.1718), (5, 10, 0.2366, 0.7634)])
def test_wilson_matches_published_intervals(k, n, lo, hi):
    got = wilson(k, n)
    assert got is not None
    assert got[0] == pytest.approx(lo, abs=1e-4) and got[1] == pytest.approx(hi, abs=1e-4)


def test_wilson_of_nothing_is_none():
    assert wilson(0, 0) is None
    with pytest.raises(ValueError):
        wilson(3, 2)


def test_best_within_takes_the_highest_hit_rate_under_the_bound():
    baselines = {"a": {"realized_false_hit_rate": 0.2, "hit_rate": 0.9},
                 "b": {"realized_false_hit_rate": 0.04, "hit_rate": 0.3},
                 "c": {"realized_false_hit_rate": None, "hit_rate": 0.0},
                 "d": {"realized_false_hit_rate": 0.05, "hit_rate": 0.4}}
    assert best_within(0.05, baselines) == {"name": "d", "hit_rate": 0.4,
                                            "realized_false_hit_rate": 0.05}
    assert best_within(0.01, baselines)["name"] == "c"
    assert best_within(None, baselines) is None


# ---- the real cache, with an embedder whose cosines are known ------------------------


def _at(cosine: float) -> np.ndarray:
    return np.array([cosine, np.sqrt(1 - cosine ** 2), 0.0, 0.0], dtype=np.float32)


VECTORS = {"stored one": _at(1.0), "query one": _at(0.97),      # label 1
           "stored two": _at(1.0), "query two": _at(0.92),      # label 0
           "stored three": _at(1.0), "query three": _at(0.85),  # label 1
           "stored four": _at(1.0), "query four": _at(0.5)}     # label 1
KNOWN_ROWS = [_pair("1", "stored one", "query one", 1), _pair("2", "stored two", "query two", 0),
              _pair("3", "stored three", "query three", 1),
              _pair("4", "stored four", "query four", 1)]


class KnownEmbedder:
    name = "known"
    dim = 4

    def embed(self, texts):
        return np.stack([VECTORS.get(t, np.array([0, 0, 1, 0], np.float32)) for t in texts])


# (hits, false hits, served duplicates) of plain cosine at each threshold, by hand: the
# true duplicates are queries one, three and four
BY_HAND = {0.80: (3, 1, 2), 0.90: (2, 1, 1), 0.95: (1, 0, 1)}


@pytest.mark.parametrize("threshold", sorted(BY_HAND))
def test_plain_cosine_on_known_cosines_counts_by_hand(threshold):
    from tokenlean.cache import ResponseCache

    cache = ResponseCache(embedder=KnownEmbedder(), guard=None, min_score=threshold,
                          max_false_hit_rate=None)
    out = summarise(play(cache, build_stream(KNOWN_ROWS)))
    hits, false, served = BY_HAND[threshold]
    assert (out["hits"], out["false_hits"], out["served_duplicates"]) == (hits, false, served)
    assert out["true_duplicates"] == 3
    assert out["hit_rate"] == round(served / 3, 4)


def _invoke(path, *args):
    app = typer.Typer()
    app.command()(bench)
    result = CliRunner().invoke(app, [str(path), *args])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_stream_command_prints_the_bound_and_the_baselines(tmp_path, monkeypatch):
    import tokenlean.cache

    monkeypatch.setattr(tokenlean.cache, "get_embedder", lambda spec: KnownEmbedder())
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in KNOWN_ROWS))
    out = _invoke(path, "--stream", "--max-false-hit-rate", "0.05", "--seed", "3")
    for key in ("data", "split", "n_queries", "max_false_hit_rate", "explore_rate",
                "confidence", "realized_false_hit_rate", "false_hit_rate_ci95",
                "error_rate_per_query", "hit_rate", "hits", "false_hits", "explored",
                "exploration_share", "labelled", "thresholds", "seconds", "baselines",
                "best_static_hit_rate_within_bound"):
        assert key in out, key
    assert out["n_queries"] == 4 and out["max_false_hit_rate"] == 0.05 and out["seed"] == 3
    base = out["baselines"]
    assert set(base) == {"cosine_0.80", "cosine_0.90", "cosine_0.95", "guard"}
    for t, (hits, false, served) in BY_HAND.items():
        got = base[f"cosine_{t:.2f}"]
        assert (got["hits"], got["false_hits"]) == (hits, false)
        assert got["hit_rate"] == round(served / 3, 4)
    assert base["cosine_0.80"]["false_hit_rate_ci95"] == [round(x, 4) for x in wilson(1, 3)]
    # only plain cosine at 0.95 (no false hit) stays within 0.05 among the cosines
    best = out["best_static_hit_rate_within_bound"]
    assert best["realized_false_hit_rate"] is None or best["realized_false_hit_rate"] <= 0.05
    assert best["hit_rate"] >= round(1 / 3, 4)
    # four queries are too few to trust a bound: nothing semantic is served, and every
    # candidate the model answered was labelled
    assert out["hits"] == 0 and out["labelled"] >= 3
    assert out["exploration_share"] == out["explored"] / 4
    assert all("after" in w for w in out["by_window"])  # the thresholds as they were


def test_stream_is_reproducible_and_clustered_reports_its_shape(tmp_path):
    pytest.importorskip("wordllama")
    path = tmp_path / "pairs.jsonl"
    rows = [*CLUSTER_ROWS, *(_pair(f"h{i}", "How do I reset my password?",
                                   f"how can i reset my password {i}?", 1) for i in range(6))]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    first = _invoke(path, "--stream", "--clustered", "--max-false-hit-rate", "0.1")
    again = _invoke(path, "--stream", "--clustered", "--max-false-hit-rate", "0.1")
    first.pop("seconds"), again.pop("seconds")
    assert first == again
    assert first["stream"]["n_clusters"] == 3 and first["n_queries"] == 12
    assert first["stream"]["label_conflicts"] == 0


def test_max_false_hit_rate_needs_stream(tmp_path):
    path = tmp_path / "pairs.jsonl"
    path.write_text(json.dumps(KNOWN_ROWS[0]) + "\n")
    app = typer.Typer()
    app.command()(bench)
    result = CliRunner().invoke(app, [str(path), "--max-false-hit-rate", "0.05"])
    assert result.exit_code != 0


def test_several_bounds_share_one_stream_and_one_set_of_baselines(tmp_path, monkeypatch):
    import tokenlean.cache

    monkeypatch.setattr(tokenlean.cache, "get_embedder", lambda spec: KnownEmbedder())
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in KNOWN_ROWS))
    out = _invoke(path, "--stream", "--max-false-hit-rate", "0.01",
                  "--max-false-hit-rate", "0.05")
    runs = out["by_max_false_hit_rate"]
    assert set(runs) == {"0.01", "0.05"} and "realized_false_hit_rate" not in out
    assert out["n_queries"] == 4
    for delta, run in runs.items():
        assert run["max_false_hit_rate"] == float(delta) and "realized_false_hit_rate" in run
        assert "best_static_hit_rate_within_bound" in run and "baselines" not in run
    assert set(out["baselines"]) == {"cosine_0.80", "cosine_0.90", "cosine_0.95", "guard"}


def test_bounded_latency_runs_the_whole_lookup_path():
    pytest.importorskip("wordllama")
    from tokenlean.bench.cache import _bounded_latency
    from tokenlean.cache import get_embedder

    rows = [_pair(f"p{i}", f"How do I reset password number {i}?",
                  f"How can I reset password number {i}?", 1) for i in range(300)]
    out = _bounded_latency(rows, get_embedder("wordllama"), entries=800, queries=50)
    assert out["entries"] == 800 and 0 < out["lookup_ms_p50"] <= out["lookup_ms_p99"]
    assert out["thresholds"]["new"] is not None  # the warm start opened the bound
