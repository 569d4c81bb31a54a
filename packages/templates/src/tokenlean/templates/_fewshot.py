"""Few-shot selection: send the k examples most relevant to this query, under a
token budget, instead of every example on every call (opt-in)."""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from tokenlean.core import ConfigError, InvalidRequestError, count_tokens

from ._similarity import default_scorer

__all__ = ["Selection", "select_examples"]

_WORD = re.compile(r"[^\W_]+")


@dataclass(frozen=True, slots=True)
class Selection:
    """The chosen examples (in their original order) and what they cost."""

    examples: tuple[str, ...]
    indices: tuple[int, ...]
    tokens: int
    tokens_all: int  # what sending every example would cost

    @property
    def saved_tokens(self) -> int:
        return self.tokens_all - self.tokens


def _tfidf_scores(examples: Sequence[str], query: str) -> list[float]:
    docs = [Counter(w.lower() for w in _WORD.findall(e)) for e in examples]
    df = Counter(w for d in docs for w in d)
    n = len(docs)

    def vec(counts: Counter[str]) -> dict[str, float]:
        return {w: (1 + math.log(c)) * math.log((n + 1) / (df.get(w, 0) + 1) + 1)
                for w, c in counts.items()}

    q = vec(Counter(w.lower() for w in _WORD.findall(query)))
    qn = math.sqrt(sum(v * v for v in q.values())) or 1.0
    scores = []
    for d in docs:
        v = vec(d)
        dn = math.sqrt(sum(x * x for x in v.values())) or 1.0
        scores.append(sum(q[w] * v.get(w, 0.0) for w in q) / (qn * dn))
    return scores


def select_examples(examples: Sequence[str], query: str, *, k: int = 3,
                    budget_tokens: int | None = None, model: str = "gpt-4o",
                    relevance: Literal["tfidf", "minilm"] = "tfidf") -> Selection:
    """The ``k`` examples most relevant to ``query`` whose tokens fit ``budget_tokens``.

    Relevance is TF-IDF cosine (no model) or MiniLM similarity. Examples are
    taken best first while they fit the budget, then returned in their
    original order (so a prompt reads as the author wrote it).
    """
    if isinstance(examples, str) or not all(isinstance(e, str) for e in examples):
        raise InvalidRequestError("examples must be a list of strings")
    if not isinstance(query, str):
        raise InvalidRequestError("query must be a string")
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ConfigError("k must be a positive integer")
    if budget_tokens is not None and (not isinstance(budget_tokens, int) or budget_tokens < 0):
        raise ConfigError("budget_tokens must be a non-negative integer or None")
    if relevance not in ("tfidf", "minilm"):
        raise ConfigError("relevance must be 'tfidf' or 'minilm'")
    costs = [count_tokens(e, model=model).tokens for e in examples]
    if not examples:
        return Selection((), (), 0, 0)
    if relevance == "minilm":
        scores = default_scorer().similarities([(query, e) for e in examples])
    else:
        scores = _tfidf_scores(examples, query)
    order = sorted(range(len(examples)), key=lambda i: (-scores[i], i))
    chosen: list[int] = []
    spent = 0
    for i in order:
        if len(chosen) == k:
            break
        if budget_tokens is not None and spent + costs[i] > budget_tokens:
            continue
        chosen.append(i)
        spent += costs[i]
    chosen.sort()
    return Selection(tuple(examples[i] for i in chosen), tuple(chosen), spent, sum(costs))
