from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from tokenlean.cache import Entry, FunctionEmbedder, ResponseCache, SQLiteStore
from tokenlean.core import Pipeline


def _entry(i: int, context: str = "ctx", tenant: str = "t") -> Entry:
    return Entry(id=f"k{i}", tenant=tenant, model="m", context=context, query=f"q{i}",
                 response="{}", created_at=float(i))


def _unit(rng, n, dim=32):
    v = rng.standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_exact_scan_and_ann_index_find_the_same_neighbour():
    rng = np.random.default_rng(1)
    vecs = _unit(rng, 400)
    small = SQLiteStore(ann_from=10_000)
    ann = SQLiteStore(ann_from=50)  # switches to usearch after 50 vectors
    for store in (small, ann):
        store.put_many([(_entry(i), vecs[i]) for i in range(400)])
    agree = 0
    for i in range(0, 400, 7):
        q = vecs[i] + 0.01 * rng.standard_normal(32).astype(np.float32)
        q /= np.linalg.norm(q)
        a = small.search("t", "ctx", q, 3, 0.0, 1e9)
        b = ann.search("t", "ctx", q, 3, 0.0, 1e9)
        assert a[0][0].id == f"k{i}"
        agree += b[0][0].id == a[0][0].id
    assert agree >= 0.95 * len(range(0, 400, 7))
    assert ann._index._parts[("t", "ctx")].ann is not None
    assert small._index._parts[("t", "ctx")].ann is None


def test_ann_scores_are_exact_cosines_and_removed_rows_never_come_back():
    from tokenlean.cache._index import VectorIndex

    rng = np.random.default_rng(3)
    vecs = _unit(rng, 300, dim=64)
    index = VectorIndex(ann_from=50)  # int8 HNSW graph, candidates re-scored in float32
    index.add_many("t", "c", [f"k{i}" for i in range(300)], vecs)
    q = vecs[7] + 0.02 * rng.standard_normal(64).astype(np.float32)
    q /= np.linalg.norm(q)
    (key, score), *_ = index.search("t", "c", q, 3, -1.0)
    assert key == "k7" and score == pytest.approx(float(vecs[7] @ q), abs=1e-6)
    index.remove("t", "c", "k7")
    assert "k7" not in [k for k, _ in index.search("t", "c", q, 3, -1.0)]
    assert all(s >= 0.5 for _, s in index.search("t", "c", q, 3, 0.5))


def test_search_is_partitioned_by_tenant_and_context():
    rng = np.random.default_rng(2)
    v = _unit(rng, 1)[0]
    store = SQLiteStore()
    store.put(_entry(1, tenant="a"), v)
    store.put(_entry(2, tenant="b"), v)
    store.put(_entry(3, tenant="a", context="other"), v)
    assert [e.id for e, _ in store.search("a", "ctx", v, 5, 0.0, 1e9)] == ["k1"]
    assert [e.id for e, _ in store.search("b", "ctx", v, 5, 0.0, 1e9)] == ["k2"]


def test_eviction_keeps_the_newest(tmp_path):
    store = SQLiteStore(tmp_path / "c.sqlite", max_entries=20)
    for i in range(64):
        store.put(_entry(i), None)
    assert store.count() == 20
    assert store.get("t", "k63", 0.0) is not None and store.get("t", "k0", 0.0) is None


def test_second_instance_sees_writes_and_deletes(tmp_path, bow):
    path = tmp_path / "shared.sqlite"
    emb = FunctionEmbedder(bow)
    one = ResponseCache(store=SQLiteStore(path), embedder=emb, guard=None, min_score=0.8)
    two = ResponseCache(store=SQLiteStore(path), embedder=emb, guard=None, min_score=0.8)
    from tokenlean.core import Request, Response

    def req(text):
        return Request(messages=[{"role": "user", "content": text}], model="gpt-4o-mini",
                       temperature=0)

    assert two.lookup(req("warm the index of two")) is None
    one.update(req("where is the train station"), Response(text="north"))
    hit = two.lookup(req("where is the train station please"))
    assert hit is not None and hit.kind == "semantic" and hit.response.text == "north"
    assert one.invalidate(all_tenants=True) == 1
    assert two.lookup(req("where is the train station please")) is None


def test_lookup_skips_the_sync_query_when_nobody_wrote(tmp_path):
    path = tmp_path / "shared.sqlite"
    one, two = SQLiteStore(path), SQLiteStore(path)
    vecs = _unit(np.random.default_rng(1), 3)
    one.put(_entry(0), vecs[0])
    statements: list[str] = []
    two._db.set_trace_callback(statements.append)
    assert [e.id for e, _ in two.search("t", "ctx", vecs[0], 2, 0.5, 1e9)] == ["k0"]
    assert any("seq >" in sql for sql in statements)  # first lookup: reads the new rows
    statements.clear()
    for _ in range(3):
        two.search("t", "ctx", vecs[0], 2, 0.5, 1e9)
    # nothing written since: only the version check and the candidate row read
    assert not any("seq >" in sql for sql in statements), statements
    assert sum("data_version" in sql for sql in statements) == 3
    one.put(_entry(1), vecs[1])  # another connection commits: the next lookup syncs
    statements.clear()
    assert two.search("t", "ctx", vecs[1], 1, 0.5, 1e9)[0][0].id == "k1"
    assert any("seq >" in sql for sql in statements)
    two.put(_entry(2), vecs[2])  # its own write (data_version does not move for it)
    assert two.search("t", "ctx", vecs[2], 1, 0.5, 1e9)[0][0].id == "k2"
    one.close()
    two.close()


WORKER = textwrap.dedent("""
    import hashlib, json, re, sys
    import numpy as np
    from tokenlean.core import Pipeline, FunctionProvider, Request, Response, Usage
    from tokenlean.cache import FunctionEmbedder, ResponseCache, SQLiteStore

    def bow(texts):
        out = np.zeros((len(texts), 64), dtype=np.float32)
        for i, t in enumerate(texts):
            for w in re.findall(r"\\w+", t.lower()):
                out[i, int(hashlib.md5(w.encode()).hexdigest(), 16) % 64] += 1
        return out

    path, me = sys.argv[1], int(sys.argv[2])
    cache = ResponseCache(store=SQLiteStore(path), embedder=FunctionEmbedder(bow),
                          guard=None, min_score=0.99)
    def answer(req):
        return Response(text="A:" + req.last_user_text, model=req.model,
                        usage=Usage(input_tokens=5, output_tokens=3))
    pipe = Pipeline(provider=FunctionProvider(answer), layers=[cache])
    errors = corrupt = hits = 0
    for round_ in range(3):
        for q in range(40):
            text = f"question number {q} about topic {q * 7}"
            try:
                r = pipe.run(Request(messages=[{"role": "user", "content": text}],
                                     model="gpt-4o-mini", tenant=f"t{q % 2}",
                                     temperature=0)).response
            except Exception:
                errors += 1
                continue
            hits += r.cached
            corrupt += r.text != "A:" + text
    print(json.dumps({"errors": errors, "corrupt": corrupt, "hits": hits}))
""")


def test_four_processes_share_one_file_without_errors_or_corrupt_hits(tmp_path):
    path = tmp_path / "multi.sqlite"
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    procs = [subprocess.Popen([sys.executable, "-W", "error", str(script), str(path), str(i)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(4)]
    outputs = []
    try:
        for p in procs:
            outputs.append(p.communicate(timeout=120))
    finally:  # a failure must not leave workers (and their pipes) to a later test
        for p in procs[len(outputs):]:
            p.kill()
            p.communicate()
    results = []
    for p, (out, err) in zip(procs, outputs, strict=True):
        assert p.returncode == 0, err
        results.append(json.loads(out.strip().splitlines()[-1]))
    assert sum(r["errors"] for r in results) == 0
    assert sum(r["corrupt"] for r in results) == 0
    assert sum(r["hits"] for r in results) >= 4 * 80  # rounds 2 and 3 hit in every process
    assert SQLiteStore(path).count() == 40


def test_pipeline_on_file_store_survives_reopen(tmp_path, model, ask):
    path = tmp_path / "persist.sqlite"
    pipe = Pipeline(provider=model.provider(),
                    layers=[ResponseCache(store=path, semantic=False)])
    pipe.run(ask("persist me"))
    pipe2 = Pipeline(provider=model.provider(),
                     layers=[ResponseCache(store=path, semantic=False)])
    assert pipe2.run(ask("persist me")).response.cached


def test_an_answer_with_lone_surrogates_is_stored_and_served_exactly(tmp_path, ask):
    # found by the layer fuzzing: UTF-8 cannot hold '\ud800', which once made the
    # store fail (and the cache warn of an outage) for that answer
    from tokenlean.core import Response, Usage

    cache = ResponseCache(store=tmp_path / "s.sqlite", semantic=False)
    request = ask("odd bytes please")
    answer = Response(text="caf\u00e9 \ud800 \U0001f642", usage=Usage(input_tokens=3,
                                                                       output_tokens=2))
    cache.update(request, answer)
    hit = cache.lookup(request)
    assert hit is not None and hit.response.text == answer.text
    from tokenlean.cache._keys import keys_for

    normal = ask("plain please")
    cache.update(normal, Response(text="caf\u00e9", usage=Usage(input_tokens=3, output_tokens=1)))
    stored = cache.store.get(normal.tenant, keys_for(normal).exact, 0.0)
    assert stored is not None and "caf\u00e9" in stored.response  # valid text stays UTF-8
    cache.close()
