"""tokenlean is a guest in the app's process: what it imports must leave no trace.

Some of the packages the layers import change the process when they are
imported: wordllama calls ``logging.basicConfig(level=INFO)`` (the app's log then
shows every httpx request and a progress bar), sentence-transformers and what it
imports add warnings filters, set ``KMP_*`` and ``TORCHINDUCTOR_CACHE_DIR`` in the
environment and reseed Python's global random generator. :func:`leave_no_trace`
undoes all of that around an import; :func:`tokenlean.core._optional.require`,
through which every layer imports its optional dependencies, runs inside it.
:func:`quiet_model_loading` also keeps transformers' weight-loading progress bar
off the app's terminal while a model loads. :func:`scoped_environ` sets
environment variables for the length of a block
(a library that reads one while it loads) and puts them back after.

Not thread-safe against the app changing the same things during the import
(which happens once per process): what the app set meanwhile is put back too.
"""

from __future__ import annotations

import logging
import os
import random
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["leave_no_trace", "quiet_model_loading", "scoped_environ"]


def _restore_environ(saved: dict[str, str]) -> None:
    for key in set(os.environ) - set(saved):
        del os.environ[key]
    for key, value in saved.items():
        if os.environ.get(key) != value:
            os.environ[key] = value


@contextmanager
def leave_no_trace() -> Iterator[None]:
    """Run the block, then put back the root logger (level, handlers), logging's
    global switch, the warnings filters, the environment and the global random
    generator as they were."""
    root = logging.getLogger()
    level, handlers, switch = root.level, list(root.handlers), logging.root.manager.disable
    environ = dict(os.environ)
    state = random.getstate()
    with warnings.catch_warnings():  # puts the filters back on the way out
        try:
            yield
        finally:
            for handler in [h for h in root.handlers if h not in handlers]:
                root.removeHandler(handler)
            root.setLevel(level)
            logging.disable(switch)
            _restore_environ(environ)
            if random.getstate() != state:
                random.setstate(state)


@contextmanager
def quiet_model_loading() -> Iterator[None]:
    """Load a model without the progress bar transformers prints to stderr ("Loading
    weights: 100%|...|"), leaving its progress-bar setting as it was."""
    hf_logging: Any = getattr(sys.modules.get("transformers.utils"), "logging", None)
    enabled = hf_logging is not None and bool(hf_logging.is_progress_bar_enabled())
    if enabled:
        hf_logging.disable_progress_bar()
    try:
        with leave_no_trace():
            yield
    finally:
        if enabled:
            hf_logging.enable_progress_bar()


@contextmanager
def scoped_environ(**values: str) -> Iterator[None]:
    """Set environment variables for the block only."""
    saved = dict(os.environ)
    os.environ.update(values)
    try:
        yield
    finally:
        _restore_environ(saved)
