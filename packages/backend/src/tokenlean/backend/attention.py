"""The one attention path every tokenlean model uses (dense, pruned, the compressor's scorer).

Rule (:func:`select_attn_implementation`):

* CUDA device and ``flash-attn`` importable -> ``"flash_attention_2"``
  (FlashAttention-2 kernels; needs float16/bfloat16 weights).
* otherwise -> ``"sdpa"``: ``torch.nn.functional.scaled_dot_product_attention``,
  which picks PyTorch's flash / memory-efficient kernels on CUDA and the math
  kernel on CPU.

Both are transformers' registered attention implementations, so any model
loaded with :func:`tokenlean.backend.load_model` (a pruned folder is an ordinary
Llama-style folder) runs the same kernels with no model-specific code. Eager
attention stays available by passing ``attn_implementation="eager"``; the tests
check that eager and SDPA give the same logits.
"""

from __future__ import annotations

import importlib.util
from typing import Any

__all__ = ["flash_attn_available", "select_attn_implementation"]


def flash_attn_available() -> bool:
    """Whether the ``flash-attn`` package (FlashAttention-2) is importable."""
    return importlib.util.find_spec("flash_attn") is not None


def _is_cuda(device: Any) -> bool:
    kind = getattr(device, "type", None) or str(device).split(":", 1)[0]
    return kind == "cuda"


def select_attn_implementation(device: Any = "cpu") -> str:
    """``"flash_attention_2"`` on CUDA with ``flash-attn`` installed, else ``"sdpa"``.

    ``device`` is a torch device or its string (``"cpu"``, ``"cuda"``, ``"cuda:1"``).
    """
    if _is_cuda(device) and flash_attn_available():
        try:
            import torch
        except ImportError:  # pragma: no cover - no torch means no CUDA either
            return "sdpa"
        if torch.cuda.is_available():
            return "flash_attention_2"
    return "sdpa"
