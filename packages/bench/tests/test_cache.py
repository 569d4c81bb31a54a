from __future__ import annotations

import json

import typer
from typer.testing import CliRunner

from tokenlean.bench.cache import bench, held_out

PAIRS = [
    {"id": "p1", "a": "How can I learn to play the guitar quickly?",
     "b": "how can i learn to play guitar fast?", "label": 1},
    {"id": "p2", "a": "What is the boiling point of water?",
     "b": "What is the capital of Peru?", "label": 0},
    {"id": "p3", "a": "How do I bake bread at home?", "b": "How do I bake bread at home?",
     "label": 1},
    {"id": "p4", "a": "Flights from Paris to Rome", "b": "Flights from Rome to Paris", "label": 0},
]


def _run(tmp_path, *args):
    path = tmp_path / "pairs.jsonl"
    path.write_text("\n".join(json.dumps(p) for p in PAIRS) + "\n")
    app = typer.Typer()
    app.command()(bench)
    result = CliRunner().invoke(app, [str(path), *args])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_bench_prints_one_json_object_with_counts(tmp_path):
    out = _run(tmp_path, "--no-guard", "--threshold", "0.9", "--baselines", "--entries", "300")
    assert out["n_pairs"] == 4 and out["threshold"] == 0.9
    labels = out["per_label"]
    assert labels["1"]["hit"] + labels["1"]["miss"] == 2
    assert labels["0"]["hit"] + labels["0"]["miss"] == 2
    # bag-of-words cosine: the exact repeat hits and the reversed flight is a false hit
    assert labels["1"]["hit"] >= 1 and labels["0"]["hit"] >= 1
    assert set(out["plain_cosine"]) == {"0.80", "0.90", "0.95"}
    latency = out["latency"]
    assert latency["entries"] == 300 and latency["lookup_ms_p99"] > 0
    # exact scan at 300 entries: the perturbed stored vector is always a candidate
    assert latency["neighbour_recall"] == 1.0
    assert set(latency["step_ms_p50"]) == {"exact_get", "sync_check", "ann_search",
                                           "candidate_rows"}


def test_bench_runs_gptcache_default_beside_ours(tmp_path, monkeypatch):
    import pytest

    pytest.importorskip("gptcache")
    pytest.importorskip("faiss")
    pytest.importorskip("wordllama")
    monkeypatch.chdir(tmp_path)  # GPTCache must not leave files in the working directory
    out = _run(tmp_path, "--no-guard", "--gptcache")
    gpt = out["gptcache_default"]
    assert gpt["per_label"]["1"]["hit"] + gpt["per_label"]["1"]["miss"] == 2
    # its cosine >= 0.6 rule serves the reversed flight (a false hit) and the repeat
    assert gpt["per_label"]["0"]["hit"] >= 1 and gpt["per_label"]["1"]["hit"] >= 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pairs.jsonl"]


def test_held_out_split_is_stable():
    assert [held_out(f"qqp-{i}") for i in range(10)] == [held_out(f"qqp-{i}") for i in range(10)]
    share = sum(held_out(f"x-{i}") for i in range(5000)) / 5000
    assert 0.17 < share < 0.23
