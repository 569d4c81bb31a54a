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

Failures seen on a background thread (an exporter's batch thread) pass
``defer=True``: the outage starts there, and its one warning is raised by
:meth:`Outage.emit` on the next call on the user's thread (a warning raised on a
worker thread is lost, or kills that thread under ``-W error``).

This is tokenlean's one outage class: the cache and budget stores, the sinks
call records go to (:func:`tokenlean.core.accounting.write_record`) and the
exporters' own exports all degrade through it.
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
        self._pending: str | None = None
        self.failures = 0  # failed operations, all outages together
        self.outages = 0  # outages started
        self._lock = threading.Lock()

    @property
    def down(self) -> bool:
        return self._down

    def begin(self) -> int:
        """The state an operation starts in; pass it to :meth:`failed` / :meth:`ok`."""
        return self._flips

    def failed(self, seen: int, exc: BaseException | str, operation: str, *,
               stacklevel: int = 3, defer: bool = False) -> bool:
        """An operation begun in state ``seen`` failed: starts an outage and warns,
        unless one is on or the store recovered after it began. Returns whether
        it started an outage. ``exc`` is the exception (or a description of the
        failure); with ``defer`` the warning waits for :meth:`emit`."""
        reason = exc if isinstance(exc, str) else f"{type(exc).__name__}: {exc}"
        message = f"{self.subject} {operation} failed ({reason}); {self.consequence}"
        with self._lock:
            self.failures += 1
            first = not self._down and seen == self._flips
            if first:
                self._down, self._flips = True, self._flips + 1
                self.outages += 1
                if defer:
                    self._pending = message
        if first and not defer:
            warnings.warn(message, TokenleanWarning, stacklevel=stacklevel + 1)
        return first

    def ok(self, seen: int) -> None:
        """An operation begun in state ``seen`` worked: ends the outage if it began
        during it (one that began before the outage proves nothing)."""
        if self._down:
            with self._lock:
                if self._down and seen == self._flips:
                    self._down, self._flips = False, self._flips + 1
                    self._pending = None

    def emit(self, *, stacklevel: int = 3) -> None:
        """Raise the warning of an outage a deferred failure started, if any (call it
        on the user's thread)."""
        with self._lock:
            message, self._pending = self._pending, None
        if message is not None:
            warnings.warn(message, TokenleanWarning, stacklevel=stacklevel)
