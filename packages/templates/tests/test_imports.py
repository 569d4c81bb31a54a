import tokenlean.templates as t


def test_all_is_pinned():
    assert sorted(t.__all__) == sorted([
        "CONSTRAINT_KEYWORDS", "CacheBreakpoints", "LayoutResult", "anthropic_cache_breakpoints",
        "cacheable_prefix_tokens", "layout_template", "DEFAULT_SIMILARITY_FLOOR", "PASS_DESCRIPTIONS", "MiniLMScorer",
        "PassReport", "RewriteResult", "Selection", "SimilarityScorer", "TemplateRewriter", "TemplatesLayer",
        "Violation", "check_invariants", "constraint_clauses", "diff", "find_variables", "lean_llamaindex_prompts",
        "lean_llamaindex_template", "rewrite", "select_examples",
    ])
    for name in t.__all__:
        assert getattr(t, name) is not None
