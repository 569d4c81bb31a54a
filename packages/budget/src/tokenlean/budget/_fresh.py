"""A fresh deployment for an offline run: budget layers that learn in a store."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ._store import SQLiteBudgetStore

__all__ = ["use_fresh_stores"]


def use_fresh_stores(layers: Iterable[Any], folder: str | Path) -> int:
    """Give every layer among ``layers`` that learns in a budget store (the calibrated
    budget layer: its calibration, overruns and accounts) a new, empty SQLite store in
    ``folder``, closing the one it had. An offline run (the audit's replay, the demo)
    then describes a new deployment, gives the same numbers every time, and never
    writes into the app's live store. Returns how many layers it changed."""
    changed = 0
    for layer in layers:
        store = getattr(layer, "store", None)
        if store is None or not callable(getattr(store, "update_calibration", None)):
            continue
        store.close()
        layer.store = SQLiteBudgetStore(Path(folder) / f"{layer.name}-{changed}.sqlite")
        changed += 1
    return changed
