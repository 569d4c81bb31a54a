"""One warning per outage of a store that a layer depends on.

A cache or budget store that fails must not fail the user's call (the layer
passes through) and must not flood the logs either: the first failure of an
outage warns, the following ones are silent, and a later success ends the
outage so that the next failure warns again.

Under concurrency, an operation's result only counts for the outage state it
began in: a call that started before the store went down and succeeds late
does not end the outage, and one that started before the store came back and
fails late does not start a new one. :meth:`Outage.begin` returns that state
(a counter of outage starts and ends), and :meth:`Outage.failed` /
:meth:`Outage.ok` take it back::

    seen = outage.begin()
    try:
        value = store.get(key)
    except Exception as exc:
        outage.failed(seen, exc, "lookup")
        return None            # pass through
    outage.ok(seen)
"""

from __future__ import annotations

import threading
import warnings

from .errors import TokenleanWarning

__all__ = ["Outage"]


class Outage:
    """Outage state of one store, for one layer.

    Args:
        subject: what failed, e.g. ``"tokenlean cache"``; the warning reads
            ``"{subject} {operation} failed (Error: ...); {consequence}"``.
        consequence: what the caller should know, e.g. ``"calls go to the model
            uncached until the store recovers"``.
    """

    def __init__(self, subject: str, consequence: str) -> None:
        self.subject = subject
        self.consequence = consequence
        self._down = False
        self._flips = 0
        self._lock = threading.Lock()

    @property
    def down(self) -> bool:
        return self._down

    def begin(self) -> int:
        """The state an operation starts in; pass it to :meth:`failed` / :meth:`ok`."""
        return self._flips

    def failed(self, seen: int, exc: BaseException, operation: str, *,
               stacklevel: int = 3) -> bool:
        """An operation begun in state ``seen`` failed: starts an outage and warns,
        unless one is on or the store recovered after it began. Returns whether
        it warned."""
        with self._lock:
            first = not self._down and seen == self._flips
            if first:
                self._down, self._flips = True, self._flips + 1
        if first:
            warnings.warn(f"{self.subject} {operation} failed ({type(exc).__name__}: {exc}); "
                          f"{self.consequence}", TokenleanWarning, stacklevel=stacklevel + 1)
        return first

    def ok(self, seen: int) -> None:
        """An operation begun in state ``seen`` worked: ends the outage if it began
        during it (one that began before the outage proves nothing)."""
        if self._down:
            with self._lock:
                if self._down and seen == self._flips:
                    self._down, self._flips = False, self._flips + 1
