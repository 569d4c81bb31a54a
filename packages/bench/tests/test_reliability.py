"""The reliability bench's summary: worst ratio and latency, summed counts, and a
target that was not measured or a group that broke is never reported as met.
(Each group's scenarios are tested in test_reliability_{budget,server,stores}.py.)"""

from tokenlean.bench.reliability import _run_group, summarise


def test_counts_add_up_and_the_worst_latency_and_ratio_are_kept():
    out = summarise({
        "budget": {"budget_overspend_max_ratio": 1.2, "budget_invariant_holds": True},
        "server": {"server_5xx": 0, "health_p99_ms_during_large_request": 40.0,
                   "cross_tenant_hits": 0},
        "stores": {"cross_tenant_hits": 2, "ledger_rows_lost": 0,
                   "health_p99_ms_during_large_request": 120.0},
    })
    assert out["cross_tenant_hits"] == 2
    assert out["health_p99_ms_during_large_request"] == 120.0
    assert out["targets"]["cross_tenant_hits"]["met"] is False
    assert out["targets"]["budget_overspend_max_ratio"]["met"] is True
    assert out["all_met"] is False


def test_an_unmeasured_target_or_a_broken_group_is_not_a_pass():
    broken = _run_group(lambda quick: 1 / 0, quick=True)
    assert broken["error"].startswith("ZeroDivisionError")
    out = summarise({"budget": {"budget_overspend_max_ratio": 3.0,
                                "budget_invariant_holds": False}, "stores": broken})
    assert out["targets"]["server_5xx"]["met"] is None
    assert out["targets"]["budget_overspend_max_ratio"]["met"] is False
    assert out["errors"] == {"stores": broken["error"]} and out["all_met"] is False
