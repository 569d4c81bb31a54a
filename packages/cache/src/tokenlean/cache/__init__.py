"""tokenlean.cache: layer 5, an exact + semantic response cache.

Exact hits need the same tenant, model, output-changing parameters, messages
and tools. Semantic hits need all of that except the last user turn, which must
mean the same: a vector search proposes candidates and a false-hit guard (a
number rule, a small learned verifier over lexical checks, and a second
embedder) decides. Entries live in an embedded SQLite file with an in-process
vector index, in Redis (exact hits, TTLs) or in PostgreSQL + pgvector.

    from tokenlean.cache import ResponseCache
    from tokenlean.core import Pipeline

    cache = ResponseCache(store="~/.tokenlean/cache.sqlite")
    pipeline = Pipeline(provider=provider, layers=[cache])

A call that samples (temperature above 0 or unknown, and no seed) is never
answered from the cache unless ``ResponseCache(cache_sampled=True)``.
"""

from ._embed import Embedder, FunctionEmbedder, MiniLMEmbedder, WordLlamaEmbedder, get_embedder
from ._entry import Entry, Store
from ._gptcache import (
    GPTCacheEmbedding,
    GuardEvaluation,
    import_gptcache_sqlite,
    read_gptcache_sqlite,
)
from ._guard import FalseHitGuard, GuardVerdict
from ._keys import RequestKeys, is_sampled, keys_for
from ._layer import MAX_QUERY_CHARS, NOT_CACHED, SEMANTIC_SKIPPED, CacheHit, ResponseCache
from ._postgres import PostgresStore
from ._redis import RedisStore
from ._sqlite import SQLiteStore

__all__ = [
    "MAX_QUERY_CHARS",
    "NOT_CACHED",
    "SEMANTIC_SKIPPED",
    "CacheHit",
    "Embedder",
    "Entry",
    "FalseHitGuard",
    "FunctionEmbedder",
    "GPTCacheEmbedding",
    "GuardEvaluation",
    "GuardVerdict",
    "MiniLMEmbedder",
    "PostgresStore",
    "RedisStore",
    "RequestKeys",
    "ResponseCache",
    "SQLiteStore",
    "Store",
    "WordLlamaEmbedder",
    "get_embedder",
    "import_gptcache_sqlite",
    "is_sampled",
    "keys_for",
    "read_gptcache_sqlite",
]
