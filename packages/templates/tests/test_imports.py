import tokenlean.templates as t

EXPECTED = [
    "CONSTRAINT_KEYWORDS", "CacheBreakpoints", "DEFAULT_MAX_CHARS", "DEFAULT_SIMILARITY_FLOOR",
    "FIRST_SIGHT_MAX_CHARS", "LayoutResult",
    "MiniLMScorer", "PASS_DESCRIPTIONS", "PassReport", "RewriteResult",
    "STRUCTURAL_SIMILARITY_FLOOR", "Selection",
    "SimilarityScorer", "TemplateRewriter", "TemplatesLayer", "Violation",
    "anthropic_cache_breakpoints", "cacheable_prefix_tokens", "check_invariants",
    "constraint_clauses", "diff", "find_variables", "layout_template",
    "lean_llamaindex_prompts", "lean_llamaindex_template", "rewrite", "select_examples",
]


def test_all_is_pinned():
    assert sorted(t.__all__) == sorted(EXPECTED)
    for name in t.__all__:
        assert getattr(t, name) is not None


def test_importing_does_not_load_heavy_modules():
    import subprocess
    import sys

    code = ("import sys, tokenlean.templates; "
            "print(any(m in sys.modules for m in ('torch', 'sentence_transformers', "
            "'llama_index.core')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
