"""The exporters degrade through core's one outage class (:class:`tokenlean.core.outage.Outage`).

An *outage* starts with the first failure of an exporter and ends with its next
success; its first failure raises one :class:`TokenleanWarning`, the failures
after it are counted silently. Failures seen on a background thread (an
OpenTelemetry batch processor, the Langfuse SDK's exporter) are recorded with
``defer=True``: the warning is raised by ``Outage.emit`` on the next call on the
user's thread (``record`` or ``force_flush``), because a warning raised on a
worker thread is lost or, under ``-W error``, kills that thread.
"""

from __future__ import annotations

from tokenlean.core.outage import Outage

__all__ = ["exporter_outage"]


def exporter_outage(name: str) -> Outage:
    """The outage state of the exporter ``name`` (its exports, or its recording)."""
    return Outage(f"tokenlean exporter {name!r}", "its data is dropped until it recovers "
                  "(one warning per outage); the calls are unaffected")
