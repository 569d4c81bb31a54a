"""The KV cache of a transformers causal LM, written once for every caller.

transformers 5.24 renamed the cache argument of every model's ``forward`` from
``past_key_values=`` to ``cache=`` and warns (``FutureWarning``) on the old name
until 5.40 removes it. The server's engine and the LLMLingua scorer both run a
model step by step over a cache they own; they call :func:`forward_with_cache`,
which passes the cache under the name the installed model takes, so tokenlean
runs warning-free on the releases before and after the rename.

The cache is a ``DynamicCache`` that the forward pass extends in place, so the
caller reads the new keys and values from the object it passed (never from the
model output, whose field is also being renamed).
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from functools import cache as _memoize
from typing import Any

__all__ = ["cache_from_pairs", "cache_pairs", "forward_with_cache", "new_cache"]


@_memoize
def _cache_keyword(model_class: type[Any]) -> str:
    """``"cache"`` when ``model_class.forward`` takes it (transformers >= 5.24), else
    ``"past_key_values"``."""
    parameters = inspect.signature(model_class.forward).parameters
    return "cache" if "cache" in parameters else "past_key_values"


def forward_with_cache(model: Any, cache: Any, /, *args: Any, **kwargs: Any) -> Any:
    """``model(*args, **kwargs)`` with ``cache`` (extended in place) and ``use_cache=True``."""
    # mypy#11470: type[Any] is not seen as Hashable
    kwargs[_cache_keyword(type(model))] = cache  # type: ignore[arg-type]
    return model(*args, use_cache=True, **kwargs)


def new_cache(model: Any) -> Any:
    """An empty ``DynamicCache`` shaped for ``model`` (one layer object per decoder layer)."""
    from transformers import DynamicCache

    return DynamicCache(config=model.config)


def cache_from_pairs(model: Any, pairs: Sequence[tuple[Any, Any]]) -> Any:
    """A ``DynamicCache`` for ``model`` holding one ``(keys, values)`` pair per layer."""
    cache = new_cache(model)
    for layer, (keys, values) in zip(cache.layers, pairs, strict=True):
        layer.lazy_initialization(keys, values)
        layer.keys, layer.values = keys, values
    return cache


def cache_pairs(cache: Any) -> list[tuple[Any, Any]]:
    """The ``(keys, values)`` tensors of every layer of ``cache``, in layer order."""
    return [(layer.keys, layer.values) for layer in cache.layers]
