"""Question-aware segment relevance.

Signals per segment (sentence): BM25 over the question's words weighted by
their rarity (wordfreq self-information), soft term matches and sentence
similarity from WordLlama's static embeddings, answer-type cues (a year for
"when", a number for "how many", a name for "who"), the relevance of the
paragraph and of the neighbours. A small ranker (a one-hidden-layer MLP, weights
in ``_ranker.npz``, trained on the development splits by
``packages/compress/tools/train_ranker.py``) combines them; entity following
then lifts segments that share rare names/numbers with the best ones.

Pure functions over numpy arrays; WordLlama and wordfreq load once, lazily.
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np

from tokenlean.core._guest import quiet_model_loading
from tokenlean.core._optional import require

from ._text import STOPWORDS, Segment, stem, words

__all__ = ["FEATURES", "Features", "Ranker", "answer_cue", "features", "word_info"]

_lock = threading.Lock()


@lru_cache(maxsize=1)
def _wordllama() -> Any:
    wordllama = require("wordllama", extra="compress", feature="the embedded compressor")
    with _lock, quiet_model_loading():
        return wordllama.WordLlama.load(cache_dir=Path(str(wordllama.__file__)).parent)


@lru_cache(maxsize=500_000)
def word_info(word: str) -> float:
    """Self-information of a lower-cased word in bits-like units (0 = very common).

    From wordfreq's Zipf frequency (log10 of occurrences per billion words):
    ``8 - zipf``, so "the" ≈ 0.3 and an unseen word = 8.
    """
    wordfreq = require("wordfreq", extra="compress", feature="the embedded compressor")
    return max(0.0, 8.0 - wordfreq.zipf_frequency(word, "en"))


_YEAR = re.compile(r"\b(1[0-9]{3}|20[0-9]{2})s?\b")
_MONTH = re.compile(
    r"\b(January|February|March|April|May|June|July|August|September|October|November|"
    r"December|century|centuries|decade|BC|AD|BCE|CE)\b")
_NUMBER = re.compile(
    r"\d|\b(one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|twenty|thirty|"
    r"forty|fifty|hundred|thousand|million|billion|half|dozen|percent)\b", re.IGNORECASE)
_CAP = re.compile(r"(?<![.!?]\s)(?<!^)\b[A-Z][\w'-]*(?:\s+(?:of|the|de|von|van)?\s*[A-Z][\w'-]*)*")
_ENTITY = re.compile(r"\b(?:[A-Z][\w'-]+|\d[\d,.]*)\b")


def _qtype(question: str) -> str:
    q = question.lower()
    if re.search(r"\b(when|what year|which year|what date|what century|what decade|"
                 r"what time|what day|how long ago|in what year|what period)\b", q):
        return "time"
    if re.search(r"\b(how many|how much|how long|how old|how far|how large|how big|how high|"
                 r"how tall|how deep|how wide|how often|what percentage|what percent|"
                 r"what number|what amount|what proportion|what fraction|how heavy)\b", q):
        return "number"
    if re.search(r"\b(who|whom|whose)\b", q):
        return "person"
    if re.search(r"\bwhere\b", q):
        return "place"
    return "other"


def _cue(qtype: str, text: str, qwords: frozenset[str]) -> float:
    if qtype == "time":
        return 1.0 if (_YEAR.search(text) or _MONTH.search(text)) else 0.0
    if qtype == "number":
        return 1.0 if _NUMBER.search(text) else 0.0
    if qtype in ("person", "place"):
        for m in _CAP.finditer(text):
            if m.group(0).split()[0].lower() not in qwords:
                return 1.0
        return 0.0
    return 0.0


def answer_cue(question: str | None) -> Callable[[str], bool]:
    """Does a single word look like this question's answer type? (a year or month
    for "when", a number for "how many", a capitalised name for "who"/"where")."""
    qtype = _qtype(question or "")
    if qtype == "time":
        return lambda w: bool(_YEAR.search(w) or _MONTH.search(w))
    if qtype == "number":
        return lambda w: bool(_NUMBER.search(w))
    if qtype in ("person", "place"):
        qwords = frozenset(words(question or ""))
        return lambda w: w[:1].isupper() and w.strip(".,;:()'\"").lower() not in qwords
    return lambda w: False


FEATURES = ("lexical", "lexical_rel", "cover", "semantic", "semantic_rel", "bigram", "cue",
            "cue_cover", "neighbour", "paragraph", "loglen", "novel", "first", "soft",
            "soft_rel", "rank_lexical", "rank_semantic", "rank_soft", "lexical_x_semantic",
            "soft_x_paragraph", "local", "local_rel", "rank_local", "numbers")


def _question_terms(question: str) -> dict[str, float]:
    terms: dict[str, float] = {}
    for w in words(question):
        if w in STOPWORDS:
            continue
        s = stem(w)
        terms[s] = max(terms.get(s, 0.0), word_info(w))
    return terms


def _bm25(qterms: dict[str, float], bags: list[list[str]], k1: float = 1.2,
          b: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """BM25 with word rarity as IDF, normalised to [0, ~1], and the share of the
    question's weight each bag covers."""
    n = len(bags)
    lex, cover = np.zeros(n), np.zeros(n)
    if not qterms or not n:
        return lex, cover
    lengths = np.array([max(1, len(bag)) for bag in bags], dtype=np.float64)
    avg = float(lengths.mean())
    total = sum(qterms.values()) or 1.0
    for i, bag in enumerate(bags):
        tf: dict[str, int] = {}
        for st in bag:
            if st in qterms:
                tf[st] = tf.get(st, 0) + 1
        if not tf:
            continue
        norm = k1 * (1 - b + b * lengths[i] / avg)
        lex[i] = sum(qterms[t] * (c * (k1 + 1)) / (c + norm) for t, c in tf.items())
        cover[i] = sum(qterms[t] for t in tf)
    return lex / (total * (k1 + 1) / (1 + k1)), cover / total


def _local_terms(qterms: dict[str, float], bags: list[list[str]]) -> dict[str, float]:
    """Question terms re-weighted by how rare they are *in this context*: the
    article's topic word ("Warsaw" in every sentence) tells sentences apart less
    than a year or a name that occurs once."""
    n = len(bags)
    df = dict.fromkeys(qterms, 0)
    for bag in bags:
        for t in set(bag) & df.keys():
            df[t] += 1
    norm = math.log(n + 1.5) or 1.0
    return {t: w * math.log((n - df[t] + 0.5) / (df[t] + 0.5) + 1) / norm
            for t, w in qterms.items()}


def _number_match(question: str, seg_words: list[list[str]]) -> np.ndarray:
    """Share of the question's numbers ("1901", "50") that a segment repeats."""
    qnums = {w for w in words(question) if any(c.isdigit() for c in w)}
    if not qnums:
        return np.zeros(len(seg_words))
    return np.array([len(qnums & set(ws)) / len(qnums) for ws in seg_words])


def _bigrams(ws: list[str]) -> set[tuple[str, str]]:
    return {(stem(a), stem(b)) for a, b in pairwise(ws)
            if not (a in STOPWORDS and b in STOPWORDS)}


class _WordVectors:
    """WordLlama embeds a text as the mean of its token embeddings, so a text's
    embedding is the token-weighted mean of its words' embeddings. Caching each
    word's (sum of token vectors, token count) makes embedding a context a few
    dictionary look-ups instead of a tokenizer pass over the whole text."""

    _MAX = 400_000

    def __init__(self) -> None:
        self._cache: dict[str, tuple[np.ndarray, int]] = {}
        self._lock = threading.Lock()

    def lookup(self, vocab: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """(sums (V, d), counts (V,)) for ``vocab``."""
        cache = self._cache
        with self._lock:
            missing = [w for w in dict.fromkeys(vocab) if w not in cache]
            if missing:
                model = _wordllama()
                if len(cache) + len(missing) > self._MAX:
                    cache.clear()
                    missing = list(dict.fromkeys(vocab))
                for w, enc in zip(missing, model.tokenizer.encode_batch(
                        missing, is_pretokenized=False, add_special_tokens=False), strict=True):
                    ids = [i for i, m in zip(enc.ids, enc.attention_mask, strict=True) if m]
                    ids = [min(i, model.embedding.shape[0] - 1) for i in ids]
                    vec = model.embedding[ids].sum(axis=0) if ids else \
                        np.zeros(model.embedding.shape[1], dtype=np.float32)
                    cache[w] = (vec, len(ids))
            if not vocab:
                return np.zeros((0, 1), dtype=np.float32), np.zeros(0)
            sums = np.stack([cache[w][0] for w in vocab])
            counts = np.array([cache[w][1] for w in vocab], dtype=np.float32)
        return sums, counts


_vectors = _WordVectors()


def _normalise(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.where(norms == 0, 1.0, norms)


def _embed_bags(bags: list[list[int]], sums: np.ndarray) -> np.ndarray:
    """Unit embeddings of texts given as lists of vocabulary ids."""
    out = np.zeros((len(bags), sums.shape[1]), dtype=np.float32)
    for i, ids in enumerate(bags):
        if ids:
            out[i] = sums[ids].sum(axis=0)
    return _normalise(out)


def _soft_match(qlist: list[str], vocab: dict[str, int], seg_ids: list[list[int]],
                qemb: np.ndarray, vemb: np.ndarray) -> np.ndarray:
    """Soft term coverage: for each rare question word, its best WordLlama word
    similarity within the segment (paraphrases count: "last" ~ "finally")."""
    n = len(seg_ids)
    if not qlist or not vocab:
        return np.zeros(n)
    sim = qemb @ vemb.T  # (q, vocab)
    by_stem: dict[str, list[int]] = {}
    for v, j in vocab.items():
        by_stem.setdefault(stem(v), []).append(j)
    for qi, w in enumerate(qlist):  # exact (stem) matches count fully
        for j in by_stem.get(stem(w), ()):
            sim[qi, j] = 1.0
    sim = np.clip((sim - 0.35) / 0.65, 0.0, 1.0)
    info = np.array([word_info(w) for w in qlist])
    total = info.sum() or 1.0
    out = np.zeros(n)
    for i, ids in enumerate(seg_ids):
        if ids:
            out[i] = float(info @ sim[:, ids].max(axis=1)) / total
    return out


def _rank_feature(values: np.ndarray) -> np.ndarray:
    rank = np.empty(len(values))
    rank[np.argsort(-values, kind="stable")] = np.arange(len(values))
    return 1.0 / (1.0 + rank)


@dataclass(frozen=True, slots=True)
class Features:
    """Per-segment signals: ``matrix`` is (n, len(FEATURES)); ``entities`` the rare
    names and numbers of each segment that the question does not mention."""

    matrix: np.ndarray
    entities: list[frozenset[str]]


def _entities(text: str, qstems: frozenset[str]) -> frozenset[str]:
    return frozenset(
        st for e in _ENTITY.findall(text)
        if (st := stem(e.lower().rstrip(".,"))) not in qstems
        and (e[0].isdigit() or word_info(e.lower()) >= 3.0)
    )


def features(question: str, segments: Sequence[Segment]) -> Features:
    """The ranker's inputs for ``segments`` given ``question``."""
    n = len(segments)
    if n == 0:
        return Features(np.zeros((0, len(FEATURES))), [])
    qterms = _question_terms(question)
    qw = words(question)
    qwords = frozenset(qw)
    qstems = frozenset(qterms)
    qbigrams = _bigrams(qw)
    seg_words = [words(s.text) for s in segments]
    bags = [[stem(w) for w in ws if w not in STOPWORDS] for ws in seg_words]
    lex, cover = _bm25(qterms, bags)
    local, _ = _bm25(_local_terms(qterms, bags), bags)
    # paragraph-level relevance (the passage a sentence sits in)
    para_ids: dict[tuple[int, int], int] = {}
    para_of = [para_ids.setdefault((s.doc, s.para), len(para_ids)) for s in segments]
    para_bags: list[list[str]] = [[] for _ in para_ids]
    for i, bag in enumerate(bags):
        para_bags[para_of[i]].extend(bag)
    plex, _ = _bm25(qterms, para_bags)
    paragraph = plex[para_of] / (plex.max() or 1.0)
    qtype = _qtype(question)
    cue = np.array([_cue(qtype, s.text, qwords) for s in segments], dtype=np.float64)
    # WordLlama: every text is a bag of cached word vectors
    vocab: dict[str, int] = {}
    all_ids = [[vocab.setdefault(w, len(vocab)) for w in ws] for ws in seg_words]
    q_ids = [vocab.setdefault(w, len(vocab)) for w in qw]
    sums, _ = _vectors.lookup(list(vocab))
    emb = _embed_bags([q_ids, *all_ids], sums)
    sem = np.asarray(emb[1:] @ emb[0], dtype=np.float64)
    qlist = sorted({w for w in qw if w not in STOPWORDS})
    content = {w: j for w, j in vocab.items() if w not in STOPWORDS}
    cidx = {j: k for k, j in enumerate(content.values())}
    seg_ids = [[cidx[j] for j in ids if j in cidx] for ids in all_ids]
    wemb = _normalise(sums)
    soft = _soft_match(qlist, {w: cidx[j] for w, j in content.items()}, seg_ids,
                       wemb[[vocab[w] for w in qlist]] if qlist else wemb[:0],
                       wemb[list(content.values())] if content else wemb[:0])
    bigram = np.array([len(qbigrams & _bigrams(ws)) / max(1, len(qbigrams)) for ws in seg_words])
    neighbour = np.zeros(n)
    first = np.zeros(n)
    for i in range(n):
        same_prev = i > 0 and para_of[i - 1] == para_of[i]
        same_next = i + 1 < n and para_of[i + 1] == para_of[i]
        first[i] = 0.0 if same_prev else 1.0
        neighbour[i] = max(lex[i - 1] if same_prev else 0.0, lex[i + 1] if same_next else 0.0)
    loglen = np.log1p(np.array([len(ws) for ws in seg_words], dtype=np.float64)) / 4.0
    novel = np.array([sum(1 for st in bag if st not in qstems) / max(1, len(bag)) for bag in bags])
    matrix = np.stack([
        lex, lex / (lex.max() or 1.0), cover, sem, sem - sem.max(), bigram, cue, cue * cover,
        neighbour, paragraph, loglen, novel, first, soft, soft / (soft.max() or 1.0),
        _rank_feature(lex), _rank_feature(sem), _rank_feature(soft), lex * sem,
        soft * paragraph, local, local / (local.max() or 1.0), _rank_feature(local),
        _number_match(question, seg_words),
    ], axis=1)
    return Features(matrix, [_entities(s.text, qstems) for s in segments])


@dataclass(frozen=True, slots=True)
class Ranker:
    """A one-hidden-layer MLP over :data:`FEATURES` plus a linear skip term."""

    w1: np.ndarray
    b1: np.ndarray
    w2: np.ndarray
    w: np.ndarray

    @classmethod
    def load(cls, path: Path | None = None) -> Ranker:
        with np.load(path or Path(__file__).with_name("_ranker.npz")) as data:
            return cls(data["w1"], data["b1"], data["w2"], data["w"])

    def logits(self, matrix: np.ndarray) -> np.ndarray:
        return np.tanh(matrix @ self.w1 + self.b1) @ self.w2 + matrix @ self.w

    def scores(self, f: Features, *, follow: float = 0.5, follow_top: int = 2) -> np.ndarray:
        """Logits, then entity following: segments sharing rare entities (names,
        numbers) with the ``follow_top`` best ones get up to ``follow`` more, so the
        second hop of a multi-hop question comes along even when it does not look
        like the question."""
        base = self.logits(f.matrix)
        if follow and len(base) > 1:
            top = np.argsort(-base)[:follow_top]
            seeds: set[str] = set()
            for i in top:
                seeds |= f.entities[i]
            if seeds:
                bonus = np.array([len(e & seeds) / (1 + math.sqrt(len(e))) for e in f.entities])
                bonus[top] = 0.0
                base = base + follow * np.minimum(1.0, bonus)
        return base


@lru_cache(maxsize=1)
def default_ranker() -> Ranker:
    return Ranker.load()


def information(segments: Sequence[Segment]) -> np.ndarray:
    """Question-free relevance: mean self-information of a segment's words plus its
    similarity to the document's centroid (what the text is mostly about)."""
    n = len(segments)
    if n == 0:
        return np.zeros(0)
    dens = np.array([
        sum(word_info(w) for w in ws) / max(1, len(ws)) for ws in (words(s.text) for s in segments)
    ]) / 8.0
    bags = [words(s.text) for s in segments]
    vocab: dict[str, int] = {}
    ids = [[vocab.setdefault(w, len(vocab)) for w in ws] for ws in bags]
    sums, _ = _vectors.lookup(list(vocab))
    emb = _embed_bags(ids, sums)
    centroid = emb.mean(axis=0)
    centroid /= float(np.linalg.norm(centroid)) or 1.0
    return dens + np.asarray(emb @ centroid, dtype=np.float64)
