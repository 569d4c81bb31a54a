"""``lean(..., cache=...)``: the layer a keyword asks for (the ``tokenlean.layers``
entry point; see :mod:`tokenlean.core.presets`)."""

from __future__ import annotations

from tokenlean.core import ConfigError

from ._layer import ResponseCache


def make_layer(choice: bool | str, *, cache_sampled: bool = False) -> ResponseCache:
    """``True`` / ``"semantic"``: exact and semantic hits (with the false-hit guard);
    ``"exact"``: exact hits only. ``cache_sampled``: also serve sampled calls
    (see :class:`ResponseCache`)."""
    if choice not in {True, "exact", "semantic"}:
        raise ConfigError(f"cache= takes True, 'exact' or 'semantic', got {choice!r}")
    return ResponseCache(semantic=choice != "exact", cache_sampled=cache_sampled)
