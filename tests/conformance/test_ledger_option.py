"""``ledger=`` takes a path (the ledger its suffix names) or a ledger object;
anything else is a ConfigError when ``lean()`` (or the middleware) is built."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tokenlean.core import ConfigError, JSONLLedger, SQLiteLedger


@pytest.mark.parametrize(("name", "ledger_class"), [("calls.sqlite", SQLiteLedger),
                                                     ("calls.db", SQLiteLedger),
                                                     ("calls.jsonl", JSONLLedger)])
def test_a_path_opens_the_ledger_its_suffix_names(adapter: Any, name: str, ledger_class: Any,
                                                   tmp_path: Path, scripted_openai: Any) -> None:
    path = tmp_path / name
    adapter(scripted_openai.url).run(mode="invoke", kind="plain", ledger=str(path))
    (row,) = list(ledger_class(path).records())
    assert row.model == "gpt-4o" and row.usage.output_tokens > 0


@pytest.mark.parametrize("bad", [42, True, "ledger.txt", object()],
                         ids=["int", "true", "unknown-suffix", "object-without-record"])
def test_anything_else_is_a_config_error_at_construction(adapter: Any, bad: Any,
                                                          scripted_openai: Any) -> None:
    with pytest.raises(ConfigError, match="ledger"):
        adapter(scripted_openai.url).run(mode="invoke", kind="plain", ledger=bad)
    assert scripted_openai.bodies == []  # refused before any call was made
