"""``lean(..., cache=...)``: the layer a keyword asks for (the ``tokenlean.layers``
entry point; see :mod:`tokenlean.core.presets`)."""

from __future__ import annotations

from tokenlean.core import ConfigError

from ._layer import ResponseCache


def make_layer(choice: bool | str, *, cache_sampled: bool = False,
               max_false_hit_rate: float | None = None) -> ResponseCache:
    """``True`` / ``"semantic"``: exact and semantic hits (with the false-hit guard);
    ``"exact"``: exact hits only. ``cache_sampled``: also serve sampled calls;
    ``max_false_hit_rate``: the semantic cache's false-hit bound (None: its default;
    an exact-only cache has no semantic hit to bound). See :class:`ResponseCache`."""
    if choice not in {True, "exact", "semantic"}:
        raise ConfigError(f"cache= takes True, 'exact' or 'semantic', got {choice!r}")
    semantic = choice != "exact"
    if max_false_hit_rate is None:
        return ResponseCache(semantic=semantic, cache_sampled=cache_sampled)
    if not semantic:
        raise ConfigError(f"max_false_hit_rate={max_false_hit_rate!r} bounds semantic hits; "
                          "cache='exact' serves exact hits only: pass cache='semantic'")
    return ResponseCache(semantic=True, cache_sampled=cache_sampled,
                         max_false_hit_rate=max_false_hit_rate)
