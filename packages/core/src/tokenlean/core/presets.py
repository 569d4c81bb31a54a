"""Turn ``lean(..., cache=..., compress=...)`` keywords into layer objects.

Layer packages register a factory under the ``tokenlean.layers`` entry-point
group (``cache = "mypkg.cache:make_layer"``). A factory takes the
user's option (``True``, or a string such as ``"semantic"``) and returns a
layer. tokenlean's own layers register theirs the same way, so this module
imports no layer package and ``import tokenlean.core`` stays light. Both
integrations (LangChain, LlamaIndex) resolve keywords here, so the same keyword
means the same thing everywhere.

Presets (what is on when a keyword is not given):

=================  =========  ============  ========  =========
preset             templates  compress      budget    cache
=================  =========  ============  ========  =========
``"safe"``         whitespace off           off       exact
``"max-savings"``  safe       on            predict   semantic
``"off"``          off        off           off       off
=================  =========  ============  ========  =========

``"safe"`` turns on only what cannot change an answer. A preset's layer whose
package is not installed is left out; a layer asked for by keyword whose
package is missing raises :class:`MissingExtraError`.

No preset answers a *sampled* call (temperature above 0 or unknown, and no
seed) from the cache: ``cache_sampled=True`` opts in (the cache factory gets it
as a keyword). ``max_false_hit_rate=0.01`` sets the false-hit bound of a
semantic cache built by the call (the cache factory gets it, and the cache
checks it; see :class:`tokenlean.cache.ResponseCache`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from .errors import ConfigError, MissingExtraError
from .pipeline import Layer

__all__ = ["LAYER_ORDER", "LEDGER_SUFFIXES", "PRESETS", "LayerChoice", "build_layers",
           "close_layers", "ledger_from", "resolve_lean"]

LayerChoice = bool | str | Layer | None
# The cache runs first: it looks answers up (and stores them) under the request
# as the app sent it, so paraphrases and repeats match before compression or a
# predicted max_tokens make two askings of one question look different.
LAYER_ORDER = ("cache", "templates", "compress", "budget")
PRESETS: dict[str, dict[str, bool | str]] = {
    "safe": {"templates": "whitespace", "compress": False, "budget": False, "cache": "exact"},
    "max-savings": {"templates": "safe", "compress": True, "budget": "predict",
                    "cache": "semantic"},
    "off": {"templates": False, "compress": False, "budget": False, "cache": False},
}


def _factory(name: str) -> Callable[..., Layer] | None:
    """The factory a package registered for layer ``name`` (tokenlean's own layers register
    theirs like any other package), or None when no installed package provides it."""
    for ep in entry_points(group="tokenlean.layers", name=name):
        factory: Callable[..., Layer] = ep.load()
        return factory
    return None


def build_layers(*, preset: str = "safe", cache_sampled: bool = False,
                 max_false_hit_rate: float | None = None,
                 concise_task_types: Sequence[str] | None = None,
                 **choices: LayerChoice) -> list[Layer]:
    """Layers in pipeline order for ``preset`` overridden by explicit ``choices``.

    ``cache_sampled=True`` lets the cache this builds answer sampled calls too; it
    needs a cache built here (a cache object you pass carries its own setting).
    ``max_false_hit_rate`` (None: the cache's default) is the false-hit bound of the
    semantic cache this builds; it too needs a cache built here, and the cache
    factory refuses it for an exact-only one.
    ``concise_task_types=("code", "math")`` opts those task types into
    ``budget="concise"`` (by default concise mode leaves code, math and reasoning
    alone); the budget factory checks it.
    """
    if not isinstance(cache_sampled, bool):
        raise ConfigError(f"cache_sampled must be True or False, got {cache_sampled!r}")
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    unknown = set(choices) - set(LAYER_ORDER)
    if unknown:
        raise ConfigError(f"unknown layer keyword(s) {sorted(unknown)}; known: {LAYER_ORDER}")
    layers: list[Layer] = []
    for name in LAYER_ORDER:
        explicit = choices.get(name)
        choice = PRESETS[preset][name] if explicit is None else explicit
        if choice is False:
            continue
        if isinstance(choice, Layer):
            layers.append(choice)
            continue
        if not isinstance(choice, (bool, str)):
            raise ConfigError(f"{name}= takes True/False, an option string or a layer object, "
                              f"got {type(choice).__name__}")
        factory = _factory(name)
        if factory is None:
            if explicit is None:
                continue  # preset default for a layer that is not installed
            raise MissingExtraError(feature=f"the {name} layer", extra=name,
                                    module=f"tokenlean.{name}")
        options: dict[str, Any] = {}
        if name == "cache" and cache_sampled:
            options["cache_sampled"] = True
        if name == "cache" and max_false_hit_rate is not None:
            options["max_false_hit_rate"] = max_false_hit_rate  # the cache checks the value
        if name == "budget" and concise_task_types is not None:
            options["concise_task_types"] = concise_task_types
        layers.append(factory(choice, **options))
    built_cache = any(layer.name == "cache" for layer in layers) and not isinstance(
        choices.get("cache"), Layer)
    if concise_task_types is not None and not (
            isinstance(choices.get("budget"), str) or choices.get("budget") is True):
        raise ConfigError(f"concise_task_types={concise_task_types!r} applies to a budget "
                          "layer built by this call in concise mode: pass budget='concise'")
    if cache_sampled and not built_cache:
        raise ConfigError(
            "cache_sampled=True needs a cache built by this call (got "
            f"preset={preset!r}, cache={choices.get('cache')!r}); a cache object you pass "
            "takes cache_sampled itself, e.g. ResponseCache(cache_sampled=True)")
    if max_false_hit_rate is not None and not built_cache:
        raise ConfigError(
            f"max_false_hit_rate={max_false_hit_rate!r} needs a semantic cache built by this "
            f"call (got preset={preset!r}, cache={choices.get('cache')!r}): pass "
            "cache='semantic'; a cache object you pass takes it itself, e.g. "
            "ResponseCache(max_false_hit_rate=0.01)")
    return layers


#: ledger file suffixes ``lean(ledger="path")`` understands, and the ledger each opens
LEDGER_SUFFIXES = {".sqlite": "sqlite", ".sqlite3": "sqlite", ".db": "sqlite", ".jsonl": "jsonl"}


def ledger_from(ledger: Any) -> Any:
    """The sink ``lean(ledger=...)`` names: by default (None) the SQLite ledger at
    ``$TOKENLEAN_HOME/ledger.sqlite``; ``False`` none; a ``postgresql://`` (or
    ``postgres://``) URL a :class:`PostgresLedger` (extra ``ledger-postgres``); a path
    (``str`` or path-like) the ledger its suffix names (:data:`LEDGER_SUFFIXES`); an
    object with ``record()`` (a ledger, an exporter, a ``Fanout``) itself. Anything
    else is a :class:`ConfigError`."""
    from .ledger import POSTGRES_SCHEMES, JSONLLedger, SQLiteLedger, open_ledger

    if ledger is None:
        return SQLiteLedger()
    if ledger is False:
        return None
    if isinstance(ledger, str) and ledger.startswith(POSTGRES_SCHEMES):
        return open_ledger(ledger)
    if isinstance(ledger, (str, os.PathLike)):
        path = Path(ledger).expanduser()
        kind = LEDGER_SUFFIXES.get(path.suffix.lower())
        if kind is None:
            raise ConfigError(f"ledger={str(ledger)!r}: a ledger path ends in one of "
                              f"{sorted(LEDGER_SUFFIXES)} (SQLite, or JSON lines for .jsonl)")
        return JSONLLedger(path) if kind == "jsonl" else SQLiteLedger(path)
    if not isinstance(ledger, bool) and callable(getattr(ledger, "record", None)):
        return ledger
    raise ConfigError(f"ledger= takes a path (e.g. 'ledger.sqlite'), a postgresql:// URL, "
                      f"a ledger object with record() (SQLiteLedger, JSONLLedger, an "
                      f"exporter) or False for none; "
                      f"got {ledger!r}")


def close_layers(layers: Sequence[Any]) -> None:
    """Close the layers built here that hold something open (a store, a model server
    connection): those with a ``close()``. For code that builds layers for itself (the
    audit, the benchmarks); ``lean()``'s layers live as long as the app's model."""
    for layer in layers:
        close = getattr(layer, "close", None)
        if callable(close):
            close()


def resolve_lean(*, layers: Sequence[Any] | None = None, preset: str = "safe",
                 ledger: Any = None, **options: Any) -> tuple[list[Layer], Any]:
    """The layers and the ledger sink that ``lean()`` keywords ask for, the same for
    every integration: ``layers=[...]`` (replaces the preset and the layer keywords) or
    ``preset`` plus layer keywords and options (see :func:`build_layers`), and
    ``ledger`` (see :func:`ledger_from`). Bad keywords fail here, before any call."""
    sink = ledger_from(ledger)
    if layers is None:
        return build_layers(preset=preset, **options), sink
    given = sorted(k for k, v in options.items() if v not in (None, False))
    if given:
        raise ConfigError(f"layers=[...] replaces the preset and the layer keywords; "
                          f"drop {given} or leave layers= out")
    if isinstance(layers, (str, bytes)) or not isinstance(layers, Sequence):
        raise ConfigError(f"layers= takes a list of layers, got {type(layers).__name__}")
    for layer in layers:
        if not isinstance(layer, Layer):
            raise ConfigError(f"{layer!r} is not a layer: it needs name, process(), aprocess()")
    return list(layers), sink
