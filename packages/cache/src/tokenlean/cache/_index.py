"""In-process vector index, partitioned by (tenant, context).

A partition answers with an exact numpy scan while it is small and switches to
a usearch HNSW index once it holds ``ann_from`` vectors. Vectors are unit
length, so the inner product is the cosine.

The HNSW graph stores int8-quantised vectors and searches wide (``_EXPANSION``
candidates per step, ``_CANDIDATES`` returned); the candidates are then
re-scored exactly against the float32 rows we keep anyway. Measured on 100k
random unit vectors in 256 dimensions (the worst case: no cluster structure),
this finds the true nearest neighbour more often *and* faster than a float32
graph at the default search width (recall@1 0.89 vs 0.71, p99 1.2 vs 1.6 ms):
quantisation makes each distance cheap, the wide search and the exact re-score
win back the precision. Scores returned are always the exact float32 cosines.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

__all__ = ["VectorIndex"]

_EXPANSION = 128   # HNSW search width
_CANDIDATES = 32   # graph results re-scored exactly


class _Partition:
    def __init__(self, dim: int, ann_from: int) -> None:
        self.dim = dim
        self.ann_from = ann_from
        self.matrix = np.empty((16, dim), dtype=np.float32)
        self.keys: list[str] = []
        self.alive = np.zeros(16, dtype=bool)
        self.row_of: dict[str, int] = {}
        self.ann: Any = None

    @property
    def size(self) -> int:
        return len(self.keys)

    def add(self, keys: list[str], vectors: np.ndarray) -> None:
        """Append vectors (bulk: one index insertion call for the batch)."""
        start = len(self.keys)
        need = start + len(keys)
        if need > len(self.matrix):
            cap = max(need, 2 * len(self.matrix))
            matrix = np.empty((cap, self.dim), dtype=np.float32)
            matrix[:start] = self.matrix[:start]
            alive = np.zeros(cap, dtype=bool)
            alive[:start] = self.alive[:start]
            self.matrix, self.alive = matrix, alive
        self.matrix[start:need] = vectors
        self.alive[start:need] = True
        for offset, key in enumerate(keys):
            old = self.row_of.get(key)
            if old is not None:
                self.alive[old] = False
            self.row_of[key] = start + offset
        self.keys.extend(keys)
        if self.ann is not None:
            self.ann.add(np.arange(start, need, dtype=np.uint64), self.matrix[start:need])
        elif need >= self.ann_from:
            self._build_ann()

    def _build_ann(self) -> None:
        try:
            from usearch.index import Index
        except ImportError:  # no usearch: keep scanning exactly
            self.ann_from = 1 << 62
            return
        index = Index(ndim=self.dim, metric="ip", dtype="i8", connectivity=16,
                      expansion_add=64, expansion_search=_EXPANSION)
        n = len(self.keys)
        index.add(np.arange(n, dtype=np.uint64), self.matrix[:n])
        self.ann = index

    def remove(self, key: str) -> None:
        row = self.row_of.pop(key, None)
        if row is not None:
            self.alive[row] = False

    def search(self, vector: np.ndarray, k: int, min_score: float) -> list[tuple[str, float]]:
        n = len(self.keys)
        if n == 0:
            return []
        if self.ann is None:
            scores = self.matrix[:n] @ vector
            scores[~self.alive[:n]] = -2.0
            take = min(k, n)
            top = np.argpartition(-scores, take - 1)[:take] if take < n else np.arange(n)
            rows = top[np.argsort(-scores[top])]
            return [(self.keys[r], float(scores[r])) for r in rows
                    if scores[r] >= min_score and self.alive[r]]
        dead = n - len(self.row_of)
        want = min(n, max(_CANDIDATES, k + min(dead, 4 * k)))
        rows = np.asarray(self.ann.search(vector, want, threads=1).keys, dtype=np.int64)
        rows = rows[self.alive[rows]]
        scores = self.matrix[rows] @ vector  # exact cosines of the candidates
        order = np.argsort(-scores)[:k]
        return [(self.keys[int(rows[i])], float(scores[i])) for i in order
                if scores[i] >= min_score]


class VectorIndex:
    """Thread-safe map of (tenant, context) -> partition."""

    def __init__(self, *, ann_from: int = 5_000) -> None:
        self.ann_from = ann_from
        self._parts: dict[tuple[str, str], _Partition] = {}
        self._lock = threading.Lock()

    def add(self, tenant: str, context: str, key: str, vector: np.ndarray) -> None:
        self.add_many(tenant, context, [key], np.asarray(vector, dtype=np.float32)[None, :])

    def add_many(self, tenant: str, context: str, keys: list[str], vectors: np.ndarray) -> None:
        with self._lock:
            part = self._parts.get((tenant, context))
            if part is None:
                part = self._parts[(tenant, context)] = _Partition(vectors.shape[1],
                                                                   self.ann_from)
            if vectors.shape[1] != part.dim:
                return  # another embedder's vectors: never comparable
            part.add(keys, vectors)

    def remove(self, tenant: str, context: str, key: str) -> None:
        with self._lock:
            part = self._parts.get((tenant, context))
            if part is not None:
                part.remove(key)

    def search(self, tenant: str, context: str, vector: np.ndarray, k: int,
               min_score: float) -> list[tuple[str, float]]:
        with self._lock:
            part = self._parts.get((tenant, context))
            if part is None or part.dim != len(vector):
                return []
            return part.search(vector, k, min_score)

    def clear(self) -> None:
        with self._lock:
            self._parts.clear()

    def __len__(self) -> int:
        with self._lock:
            return sum(len(p.row_of) for p in self._parts.values())
