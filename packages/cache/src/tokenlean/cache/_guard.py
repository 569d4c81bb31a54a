"""The false-hit guard: a second look at the few candidates the vector search found.

A cosine score over a bag of words (WordLlama) or a mean-pooled sentence vector
(MiniLM) cannot tell "flights from Paris to Rome" from "from Rome to Paris".
The guard re-reads each candidate pair with:

* MiniLM sentence vectors of both texts (``|u - v|``, ``u * v``, cosine): the
  second embedder;
* MiniLM *contextual token* vectors aligned BERTScore-style: a token whose role
  changed (a swapped subject and object) aligns worse than its word suggests;
* lexical checks: numbers, negations, named entities, question words, n-gram
  overlap, word order of shared words, neighbours of shared words;

and a small learned verifier (one hidden layer, numpy forward pass, weights in
``verifier.npz`` shipped with the package, trained by
``scripts/train_cache_verifier.py`` on the development pair files only) turns
them into the probability that the two texts ask the same thing. A candidate is
served only when that probability clears the verifier's threshold.

Cost: one MiniLM forward pass per text not seen before (memoised), a few
microseconds of numpy per candidate; only the top candidates are verified.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tokenlean.core import ConfigError
from tokenlean.core._optional import require

from ._features import LEXICAL_FEATURES, TOKEN_FEATURES, lexical_features, token_features

__all__ = ["FalseHitGuard", "GuardVerdict", "PairEncoder", "pair_features"]

DEFAULT_VERIFIER = Path(__file__).parent / "verifier.npz"


class PairEncoder:
    """MiniLM sentence and contextual token vectors for texts, memoised."""

    def __init__(self, *, path: str | Path | None = None, memo_size: int = 20_000,
                 batch_size: int = 32) -> None:
        from ._embed import minilm_path

        st = require("sentence_transformers", extra="cache", feature="the false-hit guard")
        self.path = Path(path) if path is not None else minilm_path()
        self._model = st.SentenceTransformer(str(self.path), device="cpu",
                                             local_files_only=True)
        self.batch_size = batch_size
        self._memo: OrderedDict[str, tuple[np.ndarray, np.ndarray]] = OrderedDict()
        self._size = memo_size
        self._lock = threading.Lock()

    def encode(self, texts: Sequence[str]) -> list[tuple[np.ndarray, np.ndarray]]:
        """(unit sentence vector, unit token vectors without [CLS]/[SEP]) per text."""
        computed: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        with self._lock:
            todo = list(dict.fromkeys(t for t in texts if t not in self._memo))
        if todo:
            outs = self._model.encode(todo, batch_size=self.batch_size, output_value=None,
                                      convert_to_numpy=True, show_progress_bar=False)
            for text, out in zip(todo, outs, strict=True):
                n = int(out["attention_mask"].sum())
                tokens = out["token_embeddings"][1:n - 1].float().numpy()
                tokens /= np.maximum(np.linalg.norm(tokens, axis=1, keepdims=True), 1e-9)
                sent = out["sentence_embedding"].float().numpy()
                sent /= max(float(np.linalg.norm(sent)), 1e-9)
                computed[text] = (sent.astype(np.float32), tokens.astype(np.float32))
            with self._lock:
                self._memo.update(computed)
                while len(self._memo) > self._size:
                    self._memo.popitem(last=False)
        with self._lock:
            return [computed[t] if t in computed else self._memo[t] for t in texts]


def pair_features(a: str, b: str, enc_a: tuple[np.ndarray, np.ndarray],
                  enc_b: tuple[np.ndarray, np.ndarray], wordllama_cos: float) -> np.ndarray:
    """The verifier's input vector for one pair (same order as in training)."""
    (ua, ta), (ub, tb) = enc_a, enc_b
    head = np.asarray([wordllama_cos, float(ua @ ub)], dtype=np.float32)
    return np.concatenate([head, lexical_features(a, b), token_features(ta, tb),
                           np.abs(ua - ub), ua * ub]).astype(np.float32)


FEATURE_NAMES: tuple[str, ...] = ("wordllama_cos", "minilm_cos", *LEXICAL_FEATURES,
                                  *TOKEN_FEATURES)


@dataclass(frozen=True, slots=True)
class GuardVerdict:
    """The guard's reading of one candidate: probability of same meaning and
    whether it clears the threshold."""

    probability: float
    accepted: bool


class _Verifier:
    """Standardise -> hidden ReLU layer(s) -> sigmoid; weights from an ``.npz``."""

    def __init__(self, path: Path) -> None:
        try:
            data = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot read the cache verifier {path}: {exc}; re-run "
                              "scripts/train_cache_verifier.py or pass verifier=None") from exc
        self.mean = data["mean"]
        self.scale = data["scale"]
        self.layers = [(data[f"w{i}"], data[f"b{i}"]) for i in range(int(data["n_layers"]))]
        self.threshold = float(data["threshold"])
        self.search_embedder = str(data["search_embedder"])
        self.meta = {k: data[k].tolist() for k in data.files if k.startswith("meta_")}

    def __call__(self, x: np.ndarray) -> np.ndarray:
        h = (x - self.mean) / self.scale
        for i, (w, b) in enumerate(self.layers):
            h = h @ w + b
            if i < len(self.layers) - 1:
                h = np.maximum(h, 0.0)
        return 1.0 / (1.0 + np.exp(-h[:, 0]))


class FalseHitGuard:
    """Decides whether a stored question may answer a new one.

    ``threshold`` overrides the verifier's tuned threshold (higher: fewer,
    safer hits). ``verifier`` is the path of a trained ``.npz``.
    """

    def __init__(self, *, threshold: float | None = None,
                 verifier: str | Path | None = None,
                 encoder: PairEncoder | None = None) -> None:
        path = Path(verifier) if verifier is not None else DEFAULT_VERIFIER
        self._verifier = _Verifier(path)
        if threshold is not None and not 0.0 <= threshold <= 1.0:
            raise ConfigError(f"guard threshold must be in [0, 1], got {threshold}")
        self.threshold = self._verifier.threshold if threshold is None else float(threshold)
        self._encoder = encoder
        self._lock = threading.Lock()

    @property
    def encoder(self) -> PairEncoder:
        with self._lock:
            if self._encoder is None:
                self._encoder = _shared_encoder()
            return self._encoder

    @property
    def wordllama(self) -> Any:
        from ._embed import get_embedder

        return get_embedder(self.trained_for)

    @property
    def trained_for(self) -> str:
        """The search embedder whose cosine the verifier was trained with."""
        return self._verifier.search_embedder

    def probabilities(self, query: str, candidates: Sequence[str]) -> np.ndarray:
        """P(same meaning) of ``query`` and each stored question in ``candidates``."""
        if not candidates:
            return np.empty(0, dtype=np.float32)
        encoded = self.encoder.encode([query, *candidates])
        wl = self.wordllama.embed([query, *candidates])
        rows = [pair_features(c, query, e, encoded[0], float(w @ wl[0]))
                for c, e, w in zip(candidates, encoded[1:], wl[1:], strict=True)]
        return self._verifier(np.stack(rows))

    def check(self, query: str, candidates: Sequence[str]) -> list[GuardVerdict]:
        """One verdict per candidate (stored question), same order."""
        probs = self.probabilities(query, candidates)
        return [GuardVerdict(float(p), bool(p >= self.threshold)) for p in probs]

    def describe(self) -> dict[str, Any]:
        return {"threshold": self.threshold, "trained_for": self.trained_for,
                **self._verifier.meta}


_ENCODER: PairEncoder | None = None
_ENCODER_LOCK = threading.Lock()


def _shared_encoder() -> PairEncoder:
    global _ENCODER
    with _ENCODER_LOCK:
        if _ENCODER is None:
            _ENCODER = PairEncoder()
        return _ENCODER
