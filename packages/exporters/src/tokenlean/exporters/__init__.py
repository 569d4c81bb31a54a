"""tokenlean.exporters: send each call's usage, cost and per-layer savings where you watch.

Every exporter is a *sink*: an object with ``record(record)`` and
``async arecord(record)`` taking a :class:`tokenlean.core.CallRecord`, the same
interface as the ledger. Pass one to ``Pipeline(ledger=...)`` or to the
LangChain / LlamaIndex cost handlers; combine several with :class:`Fanout`.

The OpenTelemetry, Prometheus and Langfuse exporters import their SDK only when
constructed and raise :class:`~tokenlean.core.MissingExtraError` naming the
extra (``otel``, ``prometheus``, ``langfuse``) when it is not installed.
"""

from ._fanout import Fanout, Sink
from ._langfuse import LangfuseExporter, langfuse_cost_details, langfuse_usage_details
from ._otel import OTelExporter
from ._prometheus import PrometheusExporter

__all__ = [
    "Fanout",
    "LangfuseExporter",
    "OTelExporter",
    "PrometheusExporter",
    "Sink",
    "langfuse_cost_details",
    "langfuse_usage_details",
]
