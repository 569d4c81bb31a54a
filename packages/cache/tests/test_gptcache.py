"""The GPTCache adapter against a real GPTCache (SQLite + faiss data manager)."""

from __future__ import annotations

import sqlite3

import pytest

from tokenlean.cache import (
    FunctionEmbedder,
    GPTCacheEmbedding,
    GuardEvaluation,
    ResponseCache,
    import_gptcache_sqlite,
    read_gptcache_sqlite,
)
from tokenlean.core import ConfigError, InvalidRequestError

pytest.importorskip("gptcache")
pytest.importorskip("faiss")
# gptcache 0.1.44 declares its SQL tables the SQLAlchemy 1.x way
pytestmark = pytest.mark.filterwarnings("ignore:.*declarative_base.*")

from gptcache import Cache, Config  # noqa: E402
from gptcache.adapter.api import get, put  # noqa: E402
from gptcache.manager import CacheBase, VectorBase, get_data_manager  # noqa: E402
from gptcache.processor.pre import get_prompt  # noqa: E402
from gptcache.similarity_evaluation import SearchDistanceEvaluation  # noqa: E402


def _gptcache(tmp_path, embedding, evaluation) -> Cache:
    tmp_path.mkdir(parents=True, exist_ok=True)
    manager = get_data_manager(CacheBase("sqlite", sql_url=f"sqlite:///{tmp_path}/gpt.db"),
                               VectorBase("faiss", dimension=embedding.dimension,
                                          index_path=str(tmp_path / "faiss.index")))
    cache = Cache()
    cache.init(pre_embedding_func=get_prompt, embedding_func=embedding.to_embeddings,
               data_manager=manager, similarity_evaluation=evaluation, config=Config())
    return cache


def test_embedding_plugs_into_gptcache(tmp_path, bow) -> None:
    embedding = GPTCacheEmbedding(FunctionEmbedder(bow))
    assert embedding.dimension == 64
    cache = _gptcache(tmp_path, embedding, SearchDistanceEvaluation())
    put("what is the capital of france", "Paris", cache_obj=cache)
    assert get("what is the capital of france", cache_obj=cache) == "Paris"
    # GPTCache's own evaluation serves any near neighbour: word order is invisible
    assert get("france of capital the is what", cache_obj=cache) == "Paris"
    assert get("how do I bake sourdough bread", cache_obj=cache) is None


def test_guard_evaluation_refuses_look_alikes_gptcache_serves(tmp_path) -> None:
    pytest.importorskip("wordllama")
    pytest.importorskip("transformers")
    import torch

    torch.set_num_threads(1)
    embedding = GPTCacheEmbedding("wordllama")
    plain = _gptcache(tmp_path / "plain", embedding, SearchDistanceEvaluation())
    guarded = _gptcache(tmp_path / "guarded", embedding, GuardEvaluation())
    for cache in (plain, guarded):
        put("Is a dog smarter than a cat?", "dogs, on most tests", cache_obj=cache)
    assert get("Is a cat smarter than a dog?", cache_obj=plain) == "dogs, on most tests"
    assert get("Is a cat smarter than a dog?", cache_obj=guarded) is None
    assert get("Is a dog smarter than a cat?", cache_obj=guarded) == "dogs, on most tests"
    evaluation = GuardEvaluation()
    assert evaluation.range() == (0.0, 1.0)
    assert evaluation.evaluation({"question": None}, {"question": "x"}) == 0.0


def test_import_a_gptcache_sqlite_store(tmp_path, bow, ask) -> None:
    gpt = _gptcache(tmp_path, GPTCacheEmbedding(FunctionEmbedder(bow)),
                    SearchDistanceEvaluation())
    put("What is the capital of France?", "Paris", cache_obj=gpt)
    put("Who wrote Hamlet?", "Shakespeare", cache_obj=gpt)
    path = tmp_path / "gpt.db"
    assert sorted(read_gptcache_sqlite(path)) == [("What is the capital of France?", "Paris"),
                                                  ("Who wrote Hamlet?", "Shakespeare")]
    ours = ResponseCache(semantic=False)
    assert import_gptcache_sqlite(ours, path, model="gpt-4o-mini", tenant="acme") == 2
    hit = ours.lookup(ask("Who wrote Hamlet?", tenant="acme"))
    assert hit is not None and hit.response.text == "Shakespeare" and hit.kind == "exact"
    assert ours.lookup(ask("Who wrote Hamlet?", tenant="other")) is None


def test_reader_errors(tmp_path) -> None:
    with pytest.raises(ConfigError):
        list(read_gptcache_sqlite(tmp_path / "missing.db"))
    other = tmp_path / "other.db"
    sqlite3.connect(other).execute("CREATE TABLE t (x)").connection.commit()
    with pytest.raises(InvalidRequestError):
        list(read_gptcache_sqlite(other))
    with pytest.raises(ConfigError):
        list(read_gptcache_sqlite(other, table_prefix="x; DROP TABLE t"))
