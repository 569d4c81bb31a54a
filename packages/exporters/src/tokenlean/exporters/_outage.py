"""One warning per outage: the degradation rule every exporter follows.

An *outage* starts with the first failure of a sink and ends with its next
success. The first failure of each outage raises one :class:`TokenleanWarning`
on the caller's thread; the failures after it are counted silently.

Failures seen on a background thread (an OpenTelemetry batch processor, the
Langfuse SDK's exporter) are only *noted* there; the warning is emitted on the
next call that runs on the user's thread (``record`` or ``force_flush``),
because a warning raised on a worker thread is lost or, under
``-W error``, kills that thread.
"""

from __future__ import annotations

import threading
import warnings

from tokenlean.core import TokenleanWarning

__all__ = ["OutageWatch"]


class OutageWatch:
    """Tracks whether one named sink is down and warns once per outage."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._lock = threading.Lock()
        self._down = False
        self._pending: str | None = None
        self.failures = 0  # failures since construction (all outages)
        self.outages = 0

    @property
    def down(self) -> bool:
        return self._down

    def note_failure(self, reason: str) -> None:
        """Record a failure (any thread); starts an outage if none is running."""
        with self._lock:
            self.failures += 1
            if not self._down:
                self._down = True
                self.outages += 1
                self._pending = reason

    def note_success(self) -> None:
        """Record a success (any thread); ends the current outage."""
        with self._lock:
            self._down = False
            self._pending = None

    def emit(self, *, stacklevel: int = 3) -> None:
        """Warn about a newly started outage, if any (call on the user's thread)."""
        with self._lock:
            reason, self._pending = self._pending, None
        if reason is not None:
            warnings.warn(
                f"exporter {self.name!r} is failing ({reason}); its data is dropped until it "
                "recovers (one warning per outage), the calls themselves are unaffected",
                TokenleanWarning, stacklevel=stacklevel,
            )

    def failed(self, exc: BaseException) -> None:
        """A failure seen on the user's thread: note it and warn at once if new."""
        self.note_failure(f"{type(exc).__name__}: {exc}")
        self.emit(stacklevel=4)
