"""The one attention path every tokenlean model uses (dense, pruned, the server's model).

:func:`register_attention` registers ``"tokenlean"`` in transformers' attention
interface (``AttentionInterface``) and its mask interface
(``AttentionMaskInterface``). :func:`tokenlean.backend.load_model` loads every
model with ``attn_implementation="tokenlean"`` unless told otherwise, and
:func:`tokenlean.backend.prune_model` builds the pruned model with the dense
model's implementation, so dense and pruned models run the same function with
no model-specific code. Each call picks its kernel with :func:`attention_kernel`:

* CUDA tensors, ``flash-attn`` importable, float16/bfloat16 -> FlashAttention-2
  (through transformers' ``_flash_attention_forward`` with
  ``attn_implementation="flash_attention_2"``: unpadding, GQA, sliding window);
* otherwise -> ``torch.nn.functional.scaled_dot_product_attention``, which picks
  PyTorch's flash / memory-efficient kernels on CUDA and the math kernel on CPU.

The mask function makes the same decision from the same device and dtype, so
the FlashAttention path gets the 2-D padding mask it needs (``None`` without
padding) and the SDPA path a 4-D boolean mask (``None`` for a plain causal
mask: SDPA's ``is_causal``). The attention function follows the mask it is
given: a 2-D mask means FlashAttention (turned into a 4-D mask if FlashAttention
cannot run on these tensors), a 4-D mask SDPA, ``None`` the kernel of
:func:`attention_kernel` for the query's device and dtype.

Only ``_attn_implementation_internal`` holds the name, and transformers never
writes it into ``config.json``: a folder saved from a model that ran
``"tokenlean"`` loads with plain ``AutoModelForCausalLM.from_pretrained``
(transformers' default, SDPA) where tokenlean is not installed.
"""

from __future__ import annotations

import functools
import importlib.util
from typing import Any

from tokenlean.core import ConfigError

__all__ = ["ATTN_IMPLEMENTATION", "attention_kernel", "flash_attn_available", "register_attention",
           "select_attn_implementation", "tokenlean_attention_forward", "tokenlean_attention_mask"]

ATTN_IMPLEMENTATION = "tokenlean"
_HALF = ("float16", "bfloat16")


@functools.cache
def flash_attn_available() -> bool:
    """Whether the ``flash-attn`` package (FlashAttention-2) is importable (looked up once)."""
    return importlib.util.find_spec("flash_attn") is not None


def attention_kernel(device_type: str, dtype: Any, flash_available: bool) -> str:
    """The kernel one call runs: ``"flash_attention_2"`` or ``"sdpa"``.

    A pure function of the tensors' device type (``"cuda"``, ``"cpu"``, ...),
    their dtype (a ``torch.dtype`` or its name) and whether ``flash-attn`` is
    importable: FlashAttention-2 only on CUDA, for float16/bfloat16.
    """
    name = str(dtype).removeprefix("torch.")
    if device_type == "cuda" and flash_available and name in _HALF:
        return "flash_attention_2"
    return "sdpa"


def _kernel_for(device: Any, dtype: Any) -> str:
    kind = getattr(device, "type", None) or str(device).split(":", 1)[0]
    return attention_kernel(kind, dtype, kind == "cuda" and flash_attn_available())


def _padding_to_4d(mask: Any, q_len: int, kv_len: int) -> Any:
    """A 2-D padding mask (1 = token) -> SDPA's 4-D boolean causal mask, bottom-right aligned."""
    import torch

    pad = mask[:, -kv_len:].to(torch.bool)
    rows = torch.arange(q_len, device=mask.device)[:, None] + (kv_len - q_len)
    causal = torch.arange(kv_len, device=mask.device)[None, :] <= rows
    return pad[:, None, None, :] & causal[None, None]


def _sdpa(query: Any, key: Any, value: Any, attention_mask: Any, dropout: float,
          scaling: float | None, is_causal: bool) -> Any:
    import torch

    q_len, kv_len = query.shape[2], key.shape[2]
    if attention_mask is not None and attention_mask.ndim == 2:
        attention_mask = _padding_to_4d(attention_mask, q_len, kv_len)
    if attention_mask is not None and attention_mask.dtype != torch.bool:
        attention_mask = attention_mask.to(query.dtype)  # an additive float mask
    # No mask: a plain causal prefill (SDPA's is_causal, upper-left aligned) or one
    # decode step (sees every cached key). As in transformers' SDPA path, a prefill
    # into an empty static cache has keys past the queries: they are empty slots.
    causal = is_causal and attention_mask is None and q_len > 1
    if causal and kv_len > q_len:
        key, value = key[:, :, :q_len], value[:, :, :q_len]
    extra: dict[str, Any] = {}
    groups = query.shape[1] // key.shape[1]
    if groups > 1:
        if attention_mask is None:
            extra["enable_gqa"] = True  # keeps CUDA's fused kernels; with a mask they fall back
        else:
            key = key.repeat_interleave(groups, dim=1)
            value = value.repeat_interleave(groups, dim=1)
    out = torch.nn.functional.scaled_dot_product_attention(
        query, key, value, attn_mask=attention_mask, dropout_p=dropout, scale=scaling,
        is_causal=causal, **extra)
    return out.transpose(1, 2).contiguous()


def _flash(module: Any, query: Any, key: Any, value: Any, attention_mask: Any, dropout: float,
           scaling: float | None, is_causal: bool, sliding_window: int | None,
           softcap: float | None, kwargs: dict[str, Any]) -> Any:
    from transformers.integrations.flash_attention import get_target_dtype
    from transformers.modeling_flash_attention_utils import (
        _flash_attention_forward,
        flash_attn_supports_top_left_mask,
    )

    return _flash_attention_forward(
        query.transpose(1, 2), key.transpose(1, 2), value.transpose(1, 2), attention_mask,
        query_length=query.shape[2], is_causal=is_causal, dropout=dropout, softmax_scale=scaling,
        sliding_window=sliding_window, softcap=softcap,
        use_top_left_mask=flash_attn_supports_top_left_mask(),
        target_dtype=get_target_dtype(query, module),
        # transformers would take the name from the config ("tokenlean") and look
        # for a hub kernel of that name: name the real one.
        attn_implementation="flash_attention_2", layer_idx=getattr(module, "layer_idx", None),
        **kwargs)


def tokenlean_attention_forward(module: Any, query: Any, key: Any, value: Any,
                                attention_mask: Any, dropout: float = 0.0,
                                scaling: float | None = None, is_causal: bool | None = None,
                                sliding_window: int | None = None, softcap: float | None = None,
                                **kwargs: Any) -> tuple[Any, None]:
    """transformers' attention-interface function for ``attn_implementation="tokenlean"``.

    ``query`` is ``(batch, heads, q_len, head_dim)``; ``key``/``value`` are
    ``(batch, kv_heads, kv_len, head_dim)`` with ``heads`` a multiple of
    ``kv_heads`` (grouped-query attention). Returns ``(batch, q_len, heads,
    head_dim)`` and no attention weights, like transformers' SDPA and flash paths.
    Dropout applies only while the module trains. Sliding windows come in the
    mask (SDPA) or as ``sliding_window`` (FlashAttention); ``softcap`` is only
    supported by FlashAttention and raises :class:`~tokenlean.core.ConfigError`
    on the SDPA path.
    """
    kwargs.pop("output_attentions", None)  # no weights, like transformers' SDPA path
    kwargs.pop("cache", None)  # continuous batching's paged cache: not supported here
    if not getattr(module, "training", False):
        dropout = 0.0
    causal = is_causal if is_causal is not None else getattr(module, "is_causal", True)
    if attention_mask is not None and attention_mask.ndim == 2:
        # the mask function chose FlashAttention; it also takes float32 queries under a
        # half-precision model (it casts them), so only the device and the package matter
        kernel = "flash_attention_2" if query.is_cuda and flash_attn_available() else "sdpa"
    elif attention_mask is not None:
        kernel = "sdpa"
    else:
        kernel = _kernel_for(query.device, query.dtype)
    if kernel == "flash_attention_2":
        out = _flash(module, query, key, value, attention_mask, dropout, scaling, causal,
                     sliding_window, softcap, kwargs)
        return out, None
    if softcap is not None:
        raise ConfigError("the tokenlean attention path runs SDPA here, which has no logit "
                          "softcapping: load the model with attn_implementation='eager'")
    return _sdpa(query, key, value, attention_mask, dropout, scaling, causal), None


def tokenlean_attention_mask(batch_size: int, q_length: int, kv_length: int, q_offset: int = 0,
                             kv_offset: int = 0, mask_function: Any = None,
                             attention_mask: Any = None, **kwargs: Any) -> Any:
    """transformers' mask-interface function for ``"tokenlean"``: the format of the kernel
    :func:`attention_kernel` picks for the model's device and dtype (FlashAttention-2:
    2-D padding mask or ``None``; SDPA: 4-D boolean mask or ``None``)."""
    from transformers.masking_utils import causal_mask_function, flash_attention_mask, sdpa_mask

    device = kwargs.get("device", "cpu")
    kernel = _kernel_for(device, kwargs.get("dtype", "float32"))
    make = flash_attention_mask if kernel == "flash_attention_2" else sdpa_mask
    return make(batch_size=batch_size, q_length=q_length, kv_length=kv_length,
                q_offset=q_offset, kv_offset=kv_offset,
                mask_function=mask_function or causal_mask_function,
                attention_mask=attention_mask, **kwargs)


def register_attention() -> str:
    """Register ``"tokenlean"`` with transformers (idempotent); returns the name.

    Raises:
        MissingExtraError: transformers is not installed.
    """
    from tokenlean.core._optional import require

    require("transformers", extra="backend", feature="the tokenlean attention path")
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface

    AttentionInterface.register(ATTN_IMPLEMENTATION, tokenlean_attention_forward)
    AttentionMaskInterface.register(ATTN_IMPLEMENTATION, tokenlean_attention_mask)
    return ATTN_IMPLEMENTATION


def select_attn_implementation(device: Any = "cpu") -> str:
    """The attention implementation tokenlean loads models with: ``"tokenlean"`` (registered).

    Kept for callers of the old rule: the kernel is no longer chosen at load time
    but per call (:func:`attention_kernel`), so ``device`` does not change the name.
    """
    del device
    return register_attention()
