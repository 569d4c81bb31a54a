"""Send each call record to several sinks; a failing sink never breaks a call."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from tokenlean.core import CallRecord, ConfigError
from tokenlean.core.accounting import awrite_record, check_sink, sink_outage, write_record

__all__ = ["Fanout", "Sink"]


@runtime_checkable
class Sink(Protocol):
    """What the pipeline, the callback handlers and :class:`Fanout` write to."""

    def record(self, record: CallRecord) -> None: ...


class Fanout:
    """A sink that forwards every :class:`CallRecord` to each of ``sinks`` in order.

    A sink that raises is skipped for that record under the one outage policy
    (:func:`tokenlean.core.write_record`): the first failure of an outage raises
    one :class:`~tokenlean.core.TokenleanWarning`, later failures are silent
    until the sink succeeds again. The other sinks still get the record and the
    caller's call is unaffected.

    ``arecord`` awaits each sink's ``arecord`` when it has one and calls its
    ``record`` otherwise.
    """

    name = "fanout"

    def __init__(self, *sinks: Sink) -> None:
        if not sinks:
            raise ConfigError("Fanout needs at least one sink, e.g. Fanout(ledger, OTelExporter())")
        for sink in sinks:
            check_sink(sink, "every Fanout sink")
        self.sinks: tuple[Sink, ...] = tuple(sinks)

    def record(self, record: CallRecord) -> None:
        for sink in self.sinks:
            write_record(sink, record)

    async def arecord(self, record: CallRecord) -> None:
        for sink in self.sinks:
            await awrite_record(sink, record)

    def force_flush(self) -> None:
        """Flush every sink that buffers (OpenTelemetry, Langfuse)."""
        for sink in self.sinks:
            self._each(sink, "flush", getattr(sink, "force_flush", None))

    def close(self) -> None:
        """Close every sink that can be closed (flushing what it buffers)."""
        for sink in self.sinks:
            self._each(sink, "close", getattr(sink, "close", None)
                       or getattr(sink, "shutdown", None))

    @staticmethod
    def _each(sink: Sink, operation: str, step: object) -> None:
        if not callable(step):
            return
        outage = sink_outage(sink)
        seen = outage.begin()
        try:
            step()
        except Exception as exc:
            outage.failed(seen, exc, operation)
