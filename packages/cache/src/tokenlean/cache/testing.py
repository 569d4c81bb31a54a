"""Test helpers for code built on the cache.

:func:`known_cosine_embedder` returns an embedder whose cosines are written in the
texts, so a test can say exactly how similar a query is to a stored question
without loading a model::

    emb = known_cosine_embedder()
    # "refund" -> a random unit vector; "refund ~0.97 #1" -> one at cosine 0.97 to it
    ResponseCache(embedder=emb, guard=None, max_false_hit_rate=0.05)
"""

from __future__ import annotations

import hashlib
import math

import numpy as np

from ._embed import FunctionEmbedder

__all__ = ["known_cosine_embedder", "known_cosine_vector"]


def _unit(seed: str, dim: int) -> np.ndarray:
    rng = np.random.default_rng(int(hashlib.md5(seed.encode()).hexdigest()[:8], 16))
    v = rng.standard_normal(dim)
    return v / np.linalg.norm(v)


def known_cosine_vector(text: str, dim: int = 64) -> np.ndarray:
    """``"topic"`` -> a random unit vector (seeded by the text); ``"topic ~0.93 #k"``
    -> a unit vector at cosine 0.93 to ``topic``'s (``#k`` makes distinct texts at the
    same cosine; any text after the number does)."""
    if " ~" not in text:
        return _unit(text, dim)
    topic, rest = text.split(" ~", 1)
    cosine = float(rest.split()[0])
    base, other = _unit(topic, dim), _unit(text, dim)
    other -= (other @ base) * base
    other /= np.linalg.norm(other)
    return cosine * base + math.sqrt(max(0.0, 1 - cosine * cosine)) * other


def known_cosine_embedder(dim: int = 64, name: str = "known-cosine") -> FunctionEmbedder:
    """An embedder of :func:`known_cosine_vector` (its name scopes the cache's labels)."""
    return FunctionEmbedder(
        lambda texts: np.stack([known_cosine_vector(t, dim) for t in texts]), name=name)
