"""LlamaIndex instrumentation handlers for tokenlean.

``instrument(ledger=...)`` prices every LLM call (chat, completion, streamed)
and writes one :class:`tokenlean.core.CallRecord` per call to the ledger or to
any exporter from ``tokenlean.exporters``.
"""

from llama_index.callbacks.tokenlean.base import (
    TokenleanEventHandler,
    TokenleanSpanHandler,
    instrument,
)
from llama_index.callbacks.tokenlean.budget import TokenleanBudgetHandler, enforce_budget

__all__ = ["TokenleanEventHandler", "TokenleanSpanHandler", "instrument",
           "TokenleanBudgetHandler", "enforce_budget"]
