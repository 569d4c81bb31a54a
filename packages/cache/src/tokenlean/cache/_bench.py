"""``tokenlean bench cache PAIRS.jsonl``: precision / recall of semantic hits, and
lookup latency at N stored entries. Prints one JSON object."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import typer

from tokenlean.core import InvalidRequestError, Request, Response, Usage

__all__ = ["bench", "held_out", "run_pairs"]


def held_out(pair_id: str) -> bool:
    """The 20% of development pairs the verifier never trained on (md5 of id % 5 == 0)."""
    return int(hashlib.md5(pair_id.encode()).hexdigest(), 16) % 5 == 0


def _load(path: Path, split: str, limit: int) -> list[dict[str, Any]]:
    rows = []
    with path.open() as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                pair = {"id": str(row["id"]), "a": str(row["a"]), "b": str(row["b"]),
                        "label": int(row["label"])}
            except (ValueError, KeyError, TypeError) as exc:
                raise InvalidRequestError(
                    f"{path}:{n} is not a pair row {{'id','a','b','label'}}: {exc}") from None
            if split == "all" or (split == "held-out") == held_out(pair["id"]):
                rows.append(pair)
            if limit and len(rows) >= limit:
                break
    return rows


def _request(text: str, tenant: str) -> Request:
    return Request(messages=({"role": "user", "content": text},), model="bench-model",
                   tenant=tenant)


def run_pairs(cache: Any, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Store ``a`` then look up ``b`` for each pair, each pair in its own tenant
    (so a pair can only hit its own ``a``), through the real cache API."""
    counts = {"tp": 0, "fp": 0, "fn": 0, "tn": 0}
    lookup_s = []
    for row in rows:
        tenant = f"pair:{row['id']}"
        cache.update(_request(row["a"], tenant),
                     Response(text=f"answer to {row['id']}", usage=Usage(output_tokens=1)))
        started = time.perf_counter()
        hit = cache.lookup(_request(row["b"], tenant))
        lookup_s.append(time.perf_counter() - started)
        key = ("t" if (hit is not None) == bool(row["label"]) else "f") + (
            "p" if hit is not None else "n")
        counts[key] += 1
    tp, fp, fn = counts["tp"], counts["fp"], counts["fn"]
    return {
        "precision": round(tp / (tp + fp), 4) if tp + fp else None,
        "recall": round(tp / (tp + fn), 4) if tp + fn else None,
        "hits": tp + fp,
        "per_label": {"1": {"hit": tp, "miss": fn}, "0": {"hit": fp, "miss": counts["tn"]}},
        "lookup_ms_mean_incl_embedding_and_guard": round(1000 * float(np.mean(lookup_s)), 3)
        if lookup_s else None,
    }


def _latency(embedder: Any, entries: int, queries: int = 2000) -> dict[str, Any]:
    from ._entry import Entry
    from ._sqlite import SQLiteStore

    rng = np.random.default_rng(0)
    dim = embedder.dim
    base = rng.standard_normal((entries, dim)).astype(np.float32)
    base /= np.linalg.norm(base, axis=1, keepdims=True)
    store = SQLiteStore()
    context = "bench-context"
    started = time.perf_counter()
    store.put_many([(Entry(id=f"k{i}", tenant="t", model="m", context=context, query=f"q{i}",
                           response="{}", created_at=0.0), base[i]) for i in range(entries)])
    store.search("t", context, base[0], 1, 0.0, 1.0)  # load + build the index
    build_s = time.perf_counter() - started
    noise = rng.standard_normal((queries, dim)).astype(np.float32) * 0.02
    probe = base[rng.integers(0, entries, queries)] + noise
    probe /= np.linalg.norm(probe, axis=1, keepdims=True)
    times = []
    for i, vec in enumerate(probe):
        started = time.perf_counter()
        store.get("t", f"missing{i}", 1.0)
        store.search("t", context, vec, 4, 0.5, 1.0)
        times.append(time.perf_counter() - started)
    texts = [f"how do I configure feature number {i} of the product?" for i in range(200)]
    started = time.perf_counter()
    for text in texts:  # one at a time, as a lookup does, never seen before (no memo)
        embedder.embed([text])
    embed_ms = 1000 * (time.perf_counter() - started) / len(texts)
    ms = np.asarray(times) * 1000
    return {"entries": entries, "lookup_ms_p50": round(float(np.percentile(ms, 50)), 4),
            "lookup_ms_p99": round(float(np.percentile(ms, 99)), 4),
            "index_build_s": round(build_s, 2), "embed_ms_mean": round(embed_ms, 3),
            "index": "usearch HNSW" if entries >= 5000 else "exact numpy"}


def bench(
    pairs: Path = typer.Argument(..., exists=True, dir_okay=False,
                                 help="JSONL of {id, a, b, label} pairs"),
    embedder: str = typer.Option("wordllama", help="search embedder: wordllama or minilm"),
    guard: bool = typer.Option(True, help="use the shipped false-hit guard (the default "
                                          "configuration); --no-guard: plain cosine"),
    threshold: float = typer.Option(0.9, help="cosine threshold with --no-guard"),
    baselines: bool = typer.Option(False, help="also report plain cosine at 0.80/0.90/0.95"),
    split: str = typer.Option("all", help="all | held-out (the 20% the verifier never saw) "
                                          "| train"),
    limit: int = typer.Option(0, help="use at most this many pairs (0 = all)"),
    entries: int = typer.Option(0, help="also measure lookup latency with N stored entries"),
) -> None:
    """Store a, look up b for each pair through the real cache; print precision,
    recall and (with --entries) lookup latency as JSON."""
    import os

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from ._embed import get_embedder
    from ._layer import ResponseCache

    if split not in ("all", "held-out", "train"):
        raise typer.BadParameter("split must be all, held-out or train")
    rows = _load(pairs, split, limit)
    emb = get_embedder(embedder)
    cache = ResponseCache(embedder=emb, guard="default" if guard else None,
                          min_score=None if guard else threshold)
    started = time.perf_counter()
    result: dict[str, Any] = {"data": pairs.name, "split": split, "n_pairs": len(rows),
                              "embedder": emb.name, "guard": guard}
    result.update(run_pairs(cache, rows))
    result["threshold"] = (cache.guard.threshold if cache.guard is not None else threshold)
    result["candidate_floor"] = cache.min_score
    result["seconds"] = round(time.perf_counter() - started, 1)
    if baselines:
        result["plain_cosine"] = {}
        for t in (0.80, 0.90, 0.95):
            plain = ResponseCache(embedder=emb, guard=None, min_score=t)
            out = run_pairs(plain, rows)
            result["plain_cosine"][f"{t:.2f}"] = {k: out[k] for k in
                                                  ("precision", "recall", "hits", "per_label")}
    if entries:
        result["latency"] = _latency(emb, entries)
    typer.echo(json.dumps(result))
