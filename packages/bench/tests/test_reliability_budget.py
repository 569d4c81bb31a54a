"""The quick budget reliability run: every overspend scenario keeps the invariant."""

from __future__ import annotations

from tokenlean.bench._reliability_budget import SCENARIOS, run_budget_scenarios


def test_quick_budget_scenarios_hold() -> None:
    out = run_budget_scenarios(quick=True)
    runs = out["scenarios"]
    assert {r["scenario"] for r in runs} == set(SCENARIOS)
    assert {r["runner"] for r in runs} == {"threads", "asyncio", "processes"}
    for run in runs:
        assert run["holds"] and run["spent_usd"] <= run["limit_usd"] + run["largest_call_usd"], run
        assert run["calls_ok"] >= 1
    assert out["budget_invariant_holds"] is True
    assert out["budget_overspend_max_ratio"] == max(r["ratio"] for r in runs)
