"""The examples run end to end against the real local server (SmolLM2, offline)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def load(name: str):  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # pydantic resolves the example's annotations through it
    spec.loader.exec_module(module)
    return module


@pytest.mark.server
def test_langchain_rag_raw_vs_lean(capsys: pytest.CaptureFixture[str]) -> None:
    example = load("langchain_rag")
    # questions 1-4 include one exact repeat (question 4 repeats question 2)
    result = example.main(["--questions", "4", "--max-tokens", "24"])
    raw, lean = result["raw"], result["lean"]
    assert raw["calls"] == lean["calls"] == 4
    assert lean["cache_hits"] >= 1 and raw["cache_hits"] == 0
    assert lean["input_tokens"] < raw["input_tokens"]
    assert 0 < lean["cost_usd"] < raw["cost_usd"]
    assert "cost_usd" in capsys.readouterr().out
