"""tokenlean.templates: measured prompt-template rewriting and cache-friendly layout.

``rewrite(template)`` runs the safe passes (whitespace, decoration, duplicate
sentences, filler, politeness, hedges, verbose connectives, repeated
constraints, contractions); ``mode="all"`` adds the opt-in structural passes
(markdown, role / input / task labels, telegraphic style). Every pass is checked
against the invariants (variables, code, quoted strings, numbers, URLs,
JSON / XML examples, explicit constraints) and
skipped for a template it would break; the rewrite must keep MiniLM similarity
above a documented floor. ``TemplatesLayer`` applies it to system messages in a
tokenlean pipeline.
"""

from ._fewshot import Selection, select_examples
from ._layer import TemplatesLayer
from ._layout import (
    CacheBreakpoints,
    LayoutResult,
    anthropic_cache_breakpoints,
    cacheable_prefix_tokens,
    layout_template,
)
from ._llamaindex import lean_llamaindex_prompts, lean_llamaindex_template
from ._protect import (
    CONSTRAINT_KEYWORDS,
    Violation,
    check_invariants,
    constraint_clauses,
    find_variables,
)
from ._rewrite import (
    DEFAULT_MAX_CHARS,
    DEFAULT_SIMILARITY_FLOOR,
    FIRST_SIGHT_MAX_CHARS,
    PASS_DESCRIPTIONS,
    STRUCTURAL_SIMILARITY_FLOOR,
    PassReport,
    RewriteResult,
    TemplateRewriter,
    diff,
    rewrite,
)
from ._similarity import MiniLMScorer, SimilarityScorer

__all__ = [
    "CacheBreakpoints",
    "LayoutResult",
    "anthropic_cache_breakpoints",
    "cacheable_prefix_tokens",
    "layout_template",
    "CONSTRAINT_KEYWORDS",
    "DEFAULT_MAX_CHARS",
    "DEFAULT_SIMILARITY_FLOOR",
    "FIRST_SIGHT_MAX_CHARS",
    "PASS_DESCRIPTIONS",
    "MiniLMScorer",
    "PassReport",
    "STRUCTURAL_SIMILARITY_FLOOR",
    "RewriteResult",
    "Selection",
    "SimilarityScorer",
    "TemplateRewriter",
    "TemplatesLayer",
    "Violation",
    "check_invariants",
    "constraint_clauses",
    "diff",
    "find_variables",
    "lean_llamaindex_prompts",
    "lean_llamaindex_template",
    "rewrite",
    "select_examples",
]
