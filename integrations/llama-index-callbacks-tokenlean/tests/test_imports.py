from __future__ import annotations

from pathlib import Path

import llama_index.callbacks.tokenlean as pkg


def test_all_is_pinned() -> None:
    assert pkg.__all__ == ["TokenleanEventHandler", "TokenleanSpanHandler", "instrument",
                           "TokenleanBudgetHandler", "enforce_budget"]


def test_pep420_namespace() -> None:
    src = Path(__file__).resolve().parents[1] / "src" / "llama_index"
    assert not (src / "__init__.py").exists()
    assert not (src / "callbacks" / "__init__.py").exists()
