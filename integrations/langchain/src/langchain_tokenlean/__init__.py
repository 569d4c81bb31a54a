"""LangChain integration for tokenlean.

Names resolve lazily so that importing one piece (say the cost callback) does
not import the heavy dependencies of another (say the compressor's models).
Each module implements one LangChain interface and converts types through
``_convert`` only; all logic lives in the framework-neutral ``tokenlean.*``
packages.
"""

from __future__ import annotations

import importlib
from typing import Any

# public name -> module that defines it (modules named after the interface)
_EXPORTS: dict[str, str] = {
    "lean": "chat_models",
    "LeanChatModel": "chat_models",
    "TokenleanCache": "cache",
    "TokenleanCompressor": "document_compressors",
    "compress_messages": "message_compressors",
    "TokenleanCostHandler": "callbacks",
    "AsyncTokenleanCostHandler": "callbacks",
    "tokenlean_costs": "callbacks",
    "lean_prompt": "prompts",
    "BudgetCallbackHandler": "budget",
    "TokenleanMiddleware": "middleware",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'langchain_tokenlean' has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


def __dir__() -> list[str]:
    return __all__
