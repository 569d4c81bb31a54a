"""Lazy imports of optional dependencies with an error that names the extra."""

from __future__ import annotations

import importlib
import sys
from types import ModuleType

from ._guest import leave_no_trace
from .errors import MissingExtraError


def require(module: str, *, extra: str, feature: str) -> ModuleType:
    """Import ``module`` or raise :class:`MissingExtraError` naming ``extra``. The import
    leaves the app's process as it was (see :mod:`tokenlean.core._guest`)."""
    loaded = sys.modules.get(module)
    if loaded is not None:
        return loaded
    try:
        with leave_no_trace():
            return importlib.import_module(module)
    except ImportError as exc:
        if exc.name is not None and not module.startswith(exc.name.split(".")[0]):
            raise  # the module exists but one of *its* imports is broken: show that
        raise MissingExtraError(feature=feature, extra=extra, module=module) from exc
