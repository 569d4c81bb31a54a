"""tokenlean.core: types, the layer pipeline, token counting, prices and the ledger.

Framework-neutral: nothing here imports LangChain or LlamaIndex.
"""

from importlib.metadata import PackageNotFoundError, version

from ._postgres import PostgresLedger
from .accounting import ObservedCall, awrite_record, call_record, estimate_usage, write_record
from .datafiles import read_jsonl, read_prompts
from .errors import (
    BackendError,
    BudgetExceeded,
    ConfigError,
    InvalidRequestError,
    MissingExtraError,
    TokenleanError,
    TokenleanWarning,
)
from .ledger import (
    JSONLLedger,
    LedgerStore,
    SQLiteLedger,
    Totals,
    default_ledger_path,
    open_ledger,
    totals_of,
)
from .pipeline import CallResult, Layer, Pipeline, Provider, StreamingProvider
from .prices import ModelPrice, PriceTable, price
from .providers import FunctionProvider, OpenAICompatibleProvider
from .records import CallRecord, LayerReport
from .tokens import (
    HFTokenizer,
    TiktokenTokenizer,
    TokenCount,
    Tokenizer,
    count_messages,
    count_tokens,
    get_tokenizer,
    register_tokenizer,
)
from .types import Chunk, Cost, LayerNote, Message, Request, Response, Usage

try:
    __version__ = version("tokenlean-core")
except PackageNotFoundError:  # running from a source tree without install
    __version__ = "0.0.0"

__all__ = [
    "BackendError",
    "BudgetExceeded",
    "CallRecord",
    "CallResult",
    "Chunk",
    "ConfigError",
    "Cost",
    "FunctionProvider",
    "HFTokenizer",
    "InvalidRequestError",
    "JSONLLedger",
    "Layer",
    "LayerNote",
    "LayerReport",
    "LedgerStore",
    "Message",
    "MissingExtraError",
    "ModelPrice",
    "ObservedCall",
    "OpenAICompatibleProvider",
    "Pipeline",
    "PostgresLedger",
    "PriceTable",
    "Provider",
    "Request",
    "Response",
    "SQLiteLedger",
    "StreamingProvider",
    "TiktokenTokenizer",
    "TokenCount",
    "TokenleanError",
    "TokenleanWarning",
    "Tokenizer",
    "Totals",
    "Usage",
    "__version__",
    "awrite_record",
    "call_record",
    "count_messages",
    "count_tokens",
    "default_ledger_path",
    "estimate_usage",
    "get_tokenizer",
    "open_ledger",
    "price",
    "read_jsonl",
    "read_prompts",
    "register_tokenizer",
    "totals_of",
    "write_record",
]
