"""The quick store scenarios run against the real parts and find nothing wrong."""

from __future__ import annotations

import shutil

import pytest

from tokenlean.bench._reliability_stores import run_store_scenarios

pytestmark = pytest.mark.server


def test_quick_store_scenarios() -> None:
    result = run_store_scenarios(quick=True)
    assert result["cross_tenant_hits"] == 0, result["scenarios"]
    assert result["ledger_rows_lost"] == 0, result["scenarios"]
    assert "ledger_torn_tail_jsonl" in result["scenarios"]
    assert set(result["semantic_peak_mb"]) == {"2M_chars"}
    assert result["semantic_peak_mb"]["2M_chars"] < 200  # was 1,523 MB before the bound
    if shutil.which("redis-server") is not None:
        assert "cross_tenant_redis" in result["scenarios"]
        assert result["store_hang_max_call_s"] < 1.0
