import tokenlean.cache as cache


def test_all_is_pinned():
    assert sorted(cache.__all__) == [
        "CacheHit", "Embedder", "Entry", "FalseHitGuard", "FunctionEmbedder",
        "GPTCacheEmbedding", "GuardEvaluation", "GuardVerdict",
        "MAX_QUERY_CHARS", "MiniLMEmbedder", "NOT_CACHED", "PostgresStore", "RedisStore",
        "RequestKeys", "ResponseCache", "SEMANTIC_SKIPPED", "SQLiteStore", "Store",
        "WordLlamaEmbedder", "get_embedder",
        "import_gptcache_sqlite", "is_sampled", "keys_for", "read_gptcache_sqlite",
    ]
    for name in cache.__all__:
        assert getattr(cache, name) is not None


def test_no_heavy_imports_at_import_time():
    import subprocess
    import sys

    code = ("import sys, tokenlean.cache; "
            "print(sorted(m for m in ('torch', 'sentence_transformers', 'redis', 'wordllama', "
            "'usearch', 'psycopg', 'gptcache', 'faiss') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
