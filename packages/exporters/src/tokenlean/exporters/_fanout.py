"""Send each call record to several sinks; a failing sink never breaks a call."""

from __future__ import annotations

import inspect
from typing import Any, Protocol, runtime_checkable

from tokenlean.core import CallRecord, ConfigError

from ._outage import OutageWatch

__all__ = ["Fanout", "Sink"]


@runtime_checkable
class Sink(Protocol):
    """What the pipeline, the callback handlers and :class:`Fanout` write to."""

    def record(self, record: CallRecord) -> None: ...


def _name(sink: Any) -> str:
    return str(getattr(sink, "name", None) or type(sink).__name__)


class Fanout:
    """A sink that forwards every :class:`CallRecord` to each of ``sinks`` in order.

    A sink that raises is skipped for that record: the first failure of an
    outage raises one :class:`~tokenlean.core.TokenleanWarning`, later failures
    are silent until the sink succeeds again. The other sinks still get the
    record and the caller's call is unaffected.

    ``arecord`` awaits each sink's ``arecord`` when it has one and calls its
    ``record`` otherwise.
    """

    name = "fanout"

    def __init__(self, *sinks: Sink) -> None:
        if not sinks:
            raise ConfigError("Fanout needs at least one sink, e.g. Fanout(ledger, OTelExporter())")
        for sink in sinks:
            if not callable(getattr(sink, "record", None)):
                raise ConfigError(f"{sink!r} is not a sink: it needs a record(record) method")
        self.sinks: tuple[Sink, ...] = tuple(sinks)
        self._watches = tuple(OutageWatch(_name(s)) for s in sinks)

    def record(self, record: CallRecord) -> None:
        for sink, watch in zip(self.sinks, self._watches, strict=True):
            try:
                sink.record(record)
            except Exception as exc:  # an outage of one sink must not fail the call
                watch.failed(exc)
            else:
                watch.note_success()

    async def arecord(self, record: CallRecord) -> None:
        for sink, watch in zip(self.sinks, self._watches, strict=True):
            try:
                arecord = getattr(sink, "arecord", None)
                if arecord is None:
                    sink.record(record)
                else:
                    result = arecord(record)
                    if inspect.isawaitable(result):
                        await result
            except Exception as exc:
                watch.failed(exc)
            else:
                watch.note_success()

    def force_flush(self) -> None:
        """Flush every sink that buffers (OpenTelemetry, Langfuse)."""
        for sink, watch in zip(self.sinks, self._watches, strict=True):
            flush = getattr(sink, "force_flush", None)
            if flush is None:
                continue
            try:
                flush()
            except Exception as exc:
                watch.failed(exc)

    def close(self) -> None:
        """Close every sink that can be closed (flushing what it buffers)."""
        for sink, watch in zip(self.sinks, self._watches, strict=True):
            close = getattr(sink, "close", None) or getattr(sink, "shutdown", None)
            if close is None:
                continue
            try:
                close()
            except Exception as exc:
                watch.failed(exc)
