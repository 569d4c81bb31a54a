"""Pins the public API: changing it must be a deliberate edit of this list."""

import tokenlean.core

EXPECTED = [
    "BackendError", "BudgetExceeded", "CallRecord", "CallResult", "Chunk", "ConfigError", "Cost",
    "FunctionProvider", "HFTokenizer", "InvalidRequestError", "JSONLLedger", "Layer",
    "LayerNote", "LayerReport", "LedgerStore", "Message", "MissingExtraError", "ModelPrice",
    "OpenAICompatibleProvider", "Pipeline", "PriceTable", "Provider", "Request", "Response",
    "SQLiteLedger", "StreamingProvider", "TiktokenTokenizer", "TokenCount", "TokenleanError",
    "TokenleanWarning", "Tokenizer", "Totals", "Usage", "__version__", "count_messages",
    "count_tokens", "default_ledger_path", "get_tokenizer", "open_ledger", "price", "read_jsonl",
    "read_prompts", "register_tokenizer",
    # the one accounting path, the PostgreSQL ledger, the totals' definition
    "ObservedCall", "call_record", "estimate_usage", "write_record", "awrite_record",
    "PostgresLedger", "totals_of",
]


def test_all_is_pinned() -> None:
    assert sorted(tokenlean.core.__all__) == sorted(EXPECTED)


def test_every_name_resolves() -> None:
    for name in tokenlean.core.__all__:
        assert getattr(tokenlean.core, name) is not None


def test_tokenlean_is_a_namespace_package() -> None:
    import tokenlean

    assert getattr(tokenlean, "__file__", None) is None
