"""Pure text helpers: sentence segmentation with offsets, words, stems.

Everything here is plain Python + regex so it is fast and deterministic.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

__all__ = ["Segment", "content_words", "split_segments", "stem", "words"]

# A sentence ends at . ! ? (optionally followed by closing quotes/brackets) and
# whitespace, when the next character can start a sentence. Newlines always end
# a segment (paragraph or list item).
_BOUNDARY = re.compile(r"""(?<=[.!?])["')\]]*\s+(?=["'(\[]?[A-Z0-9])|\n+""")
# Tokens before a period that do not end a sentence.
_ABBREV = frozenset(
    "mr mrs ms dr prof sr jr st mt ft vs etc inc ltd co corp jan feb mar apr jun jul aug sep "
    "sept oct nov dec no gen col lt sgt rev gov sen rep e.g i.e u.s u.k a.d b.c fig al approx "
    "dept est".split()
)
_LAST_WORD = re.compile(r"([A-Za-z][A-Za-z.]*)\.\W*$")
_WORD = re.compile(r"[^\W_]+(?:[-'.][^\W_]+)*", re.UNICODE)

STOPWORDS = frozenset(
    """a about above after again against all am an and any are as at be because been before
    being below between both but by can could did do does doing down during each few for from
    further had has have having he her here hers herself him himself his how i if in into is it
    its itself just me more most my myself no nor not now of off on once only or other our ours
    ourselves out over own same she should so some such than that the their theirs them
    themselves then there these they this those through to too under until up very was we were
    what when where which while who whom why will with would you your yours yourself
    yourselves also may might must shall s t did does many much one ones whose called name
    named type kind""".split()
)


@dataclass(frozen=True, slots=True)
class Segment:
    """One sentence (or list item) of one document: ``text == doc[start:end]``."""

    doc: int
    index: int  # position within its document
    para: int  # paragraph (blank-line or newline separated block) within its document
    start: int
    end: int
    text: str


def _ends_with_abbreviation(text: str) -> bool:
    m = _LAST_WORD.search(text)
    if m is None:
        return False
    word = m.group(1).lower()
    # single initials ("J. R. R. Tolkien") and known abbreviations do not end sentences
    return len(word) == 1 or word in _ABBREV


def split_segments(text: str, doc: int = 0, *, max_chars: int = 600) -> list[Segment]:
    """Sentences of ``text`` with their character offsets (whitespace trimmed).

    Sentences longer than ``max_chars`` are cut further at ``;`` or ``,`` so that
    the budget can be spent at a finer grain.
    """
    spans: list[tuple[int, int, int]] = []
    start = 0
    para = 0
    for m in _BOUNDARY.finditer(text):
        piece = text[start:m.start()]
        newline = "\n" in m.group(0)
        if not newline and _ends_with_abbreviation(piece):
            continue
        spans.append((start, m.start(), para))
        start = m.end()
        para += newline
    spans.append((start, len(text), para))
    out: list[Segment] = []
    for s, e, p in spans:
        for s2, e2 in _cut_long(text, s, e, max_chars):
            # trim whitespace
            while s2 < e2 and text[s2].isspace():
                s2 += 1
            while e2 > s2 and text[e2 - 1].isspace():
                e2 -= 1
            if e2 > s2:
                out.append(Segment(doc, len(out), p, s2, e2, text[s2:e2]))
    return out


_SOFT = re.compile(r"[;:]\s+|,\s+")


def _cut_long(text: str, s: int, e: int, max_chars: int) -> list[tuple[int, int]]:
    if e - s <= max_chars:
        return [(s, e)]
    pieces: list[tuple[int, int]] = []
    cur = s
    for m in _SOFT.finditer(text, s, e):
        if m.end() - cur >= max_chars // 2:
            pieces.append((cur, m.end()))
            cur = m.end()
    pieces.append((cur, e))
    # a piece may still be long (no punctuation): hard-cut at spaces
    out: list[tuple[int, int]] = []
    for ps, pe in pieces:
        while pe - ps > max_chars:
            cut = text.rfind(" ", ps + max_chars // 2, ps + max_chars)
            cut = ps + max_chars if cut <= ps else cut
            out.append((ps, cut))
            ps = cut
        out.append((ps, pe))
    return out


def words(text: str) -> list[str]:
    """Lower-cased word tokens."""
    return [w.lower() for w in _WORD.findall(text)]


@lru_cache(maxsize=200_000)
def stem(word: str) -> str:
    """A crude but fast stem: strip possessives and common suffixes, cap at 6 chars."""
    if word.endswith("'s"):
        word = word[:-2]
    if len(word) > 4:
        for suffix in ("ies", "ing", "ed", "es", "s", "ly"):
            if word.endswith(suffix) and len(word) - len(suffix) >= 3:
                word = word[: -len(suffix)]
                break
    return word[:6]


def content_words(text: str) -> list[str]:
    """Stems of the non-stopword words of ``text``."""
    return [stem(w) for w in words(text) if w not in STOPWORDS]
