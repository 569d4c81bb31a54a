"""Pair features for the false-hit guard: what a cosine score cannot see.

Two texts that a bag-of-words embedding calls near-identical can still ask
different things: a swapped subject and object ("flights from Paris to Rome"
vs "from Rome to Paris"), another number, a negation, another named entity,
another question word. These features measure exactly those differences, plus
the two embedders' cosines, feed the small learned verifier in :mod:`._guard`.

Pure functions of two strings; shared by the
runtime guard and ``scripts/train_cache_verifier.py`` so training and serving
compute the same thing.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence, Set

import numpy as np

__all__ = ["LEXICAL_FEATURES", "lexical_features"]

_WORD = re.compile(r"[A-Za-z]+(?:'[a-z]+)?|\d+(?:[.,]\d+)*")
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
NEGATIONS = frozenset({
    "not", "no", "never", "none", "nobody", "nothing", "neither", "nor", "without",
    "cannot", "can't", "don't", "doesn't", "didn't", "isn't", "aren't", "wasn't",
    "weren't", "won't", "wouldn't", "shouldn't", "couldn't", "hasn't", "haven't",
    "hadn't", "n't",
})
QUESTION_WORDS = frozenset({"what", "why", "how", "who", "whom", "whose", "when", "where",
                            "which", "whether", "can", "should", "is", "are", "do", "does"})
STOPWORDS = frozenset("""a an the of to in on at for by with from and or but as is are was were be
been being it its this that these those i you he she we they me my your our their his her them us
do does did so if then than there here into about over under up down out off very just also
will would can could should may might must shall have has had what which who whom whose when
where why how""".split())
_NUMBER_WORDS = {
    "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5", "six": "6",
    "seven": "7", "eight": "8", "nine": "9", "ten": "10", "eleven": "11", "twelve": "12",
    "first": "1st", "second": "2nd", "third": "3rd",
}

LEXICAL_FEATURES: tuple[str, ...] = (
    "jaccard", "bigram_jaccard", "trigram_jaccard", "lcs_ratio", "content_only_a",
    "content_only_b", "content_jaccard", "number_mismatch", "number_any", "negation_mismatch",
    "entity_mismatch", "entity_only_count", "qword_mismatch", "len_ratio", "log_len",
    "order_discordance", "neighbour_agreement", "first_word_same", "exact_lower",
)


def _words(text: str) -> list[str]:
    return _WORD.findall(text)


def _ngrams(words: Sequence[str], n: int) -> set[tuple[str, ...]]:
    return {tuple(words[i:i + n]) for i in range(len(words) - n + 1)}


def _jaccard(a: Set[object], b: Set[object]) -> float:
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


def _lcs(a: Sequence[str], b: Sequence[str]) -> int:
    if not a or not b:
        return 0
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b):
            cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
        prev = cur
    return prev[-1]


def _numbers(words: Sequence[str], text: str) -> set[str]:
    nums = {n.replace(",", "") for n in _NUMBER.findall(text)}
    nums |= {_NUMBER_WORDS[w] for w in words if w in _NUMBER_WORDS}
    return nums


def _entities(text: str) -> set[str]:
    """Capitalised words not at a sentence start, lower-cased (a cheap NER)."""
    out: set[str] = set()
    start = True
    for match in re.finditer(r"\S+", text):
        token = match.group(0)
        word = re.sub(r"^\W+|\W+$", "", token)
        if word and word[0].isupper() and not start and word.lower() not in STOPWORDS:
            out.add(word.lower())
        elif word and any(c.isdigit() for c in word):
            out.add(word.lower())
        start = token.endswith((".", "?", "!", ":"))
    return out


def _kendall_discordance(pos_a: list[int], pos_b: list[int]) -> float:
    n = len(pos_a)
    if n < 2:
        return 0.0
    bad = total = 0
    for i in range(n):
        for j in range(i + 1, n):
            total += 1
            if (pos_a[i] - pos_a[j]) * (pos_b[i] - pos_b[j]) < 0:
                bad += 1
    return bad / total


def lexical_features(a: str, b: str) -> np.ndarray:
    """The :data:`LEXICAL_FEATURES` of a pair, as float32 (symmetric where it can be)."""
    wa_raw, wb_raw = _words(a), _words(b)
    wa, wb = [w.lower() for w in wa_raw], [w.lower() for w in wb_raw]
    sa, sb = set(wa), set(wb)
    ca, cb = sa - STOPWORDS, sb - STOPWORDS
    na, nb = _numbers(wa, a), _numbers(wb, b)
    ea, eb = _entities(a), _entities(b)
    neg_a = sum(w in NEGATIONS or w.endswith("n't") for w in wa)
    neg_b = sum(w in NEGATIONS or w.endswith("n't") for w in wb)
    qa, qb = sa & QUESTION_WORDS, sb & QUESTION_WORDS
    la, lb = max(len(wa), 1), max(len(wb), 1)
    # order of the content words both texts use exactly once
    shared = [w for w in ca & cb if wa.count(w) == 1 and wb.count(w) == 1]
    pos_a = [wa.index(w) for w in shared]
    pos_b = [wb.index(w) for w in shared]
    # do shared content words keep their neighbours? (swaps move them)
    agree = 0
    for w in shared:
        i, j = wa.index(w), wb.index(w)
        left = (wa[i - 1] if i else "^") == (wb[j - 1] if j else "^")
        right = (wa[i + 1] if i + 1 < len(wa) else "$") == (wb[j + 1] if j + 1 < len(wb) else "$")
        agree += left + right
    feats = [
        _jaccard(sa, sb),
        _jaccard(_ngrams(wa, 2), _ngrams(wb, 2)),
        _jaccard(_ngrams(wa, 3), _ngrams(wb, 3)),
        _lcs(wa, wb) / max(la, lb),
        len(ca - cb) / max(len(ca), 1),
        len(cb - ca) / max(len(cb), 1),
        _jaccard(ca, cb),
        float(na != nb),
        float(bool(na or nb)),
        float((neg_a > 0) != (neg_b > 0)),
        float(ea != eb),
        math.log1p(len(ea ^ eb)),
        float(bool(qa ^ qb)),
        min(la, lb) / max(la, lb),
        math.log(la + lb),
        _kendall_discordance(pos_a, pos_b),
        agree / (2 * len(shared)) if shared else 0.0,
        float(bool(wa and wb and wa[0] == wb[0])),
        float(a.strip().lower() == b.strip().lower()),
    ]
    return np.asarray(feats, dtype=np.float32)
