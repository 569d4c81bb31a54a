"""``tokenlean bench reliability [--quick]``: the hardening scenarios of issue 19,
run against real stores and a real server on loopback, bounded in time.

Three groups, each in its own module:

* budgets (:mod:`tokenlean.bench._reliability_budget`): more concurrent calls
  than a dollar budget affords, on threads, asyncio and four processes, on the
  SQLite and Redis stores; ``n``, images, tools, cache writes and a provider
  that ignores ``max_tokens``;
* the server (:mod:`tokenlean.bench._reliability_server`): a fuzz corpus of
  malformed requests against ``tokenlean serve`` (5xx counted), ``/health``
  latency while a 10 MB request is processed, cross-tenant prefix-cache leaks
  between two API keys;
* stores and ledgers (:mod:`tokenlean.bench._reliability_stores`): cross-tenant
  cache hits over look-alike tenant names (SQLite, Redis, and PostgreSQL when
  ``--postgres-dsn`` names one), ledger rows lost over ``kill -9``
  mid-write and a torn tail, latency while a store hangs, the semantic cache's
  memory on a 2M-character prompt.

Prints one JSON object: the headline numbers below, the targets and whether each
is met, and every scenario's own numbers. A group that cannot run here (no
``redis-server``, say) says so under ``skipped``; it is never counted as a pass.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable
from typing import Any

import typer

# headline number: (the target, met if)
TARGETS: dict[str, tuple[str, Callable[[float], bool]]] = {
    "budget_overspend_max_ratio": ("spent <= limit + the largest single call, every scenario",
                                   lambda _v: True),  # judged by budget_invariant_holds
    "server_5xx": ("0", lambda v: v == 0),
    "health_p99_ms_during_large_request": ("< 100 ms", lambda v: v < 100.0),
    "cross_tenant_hits": ("0", lambda v: v == 0),
    "ledger_rows_lost": ("0", lambda v: v == 0),
}

# counts add up over groups; the other headline numbers take the worst
COUNTS = frozenset({"server_5xx", "cross_tenant_hits", "ledger_rows_lost"})


def _groups(postgres_dsn: str | None = None) -> dict[str, Callable[[bool], dict[str, Any]]]:
    from ._reliability_budget import run_budget_scenarios
    from ._reliability_server import run_server_scenarios
    from ._reliability_stores import run_store_scenarios

    return {"budget": run_budget_scenarios, "server": run_server_scenarios,
            "stores": functools.partial(run_store_scenarios, postgres_dsn=postgres_dsn)}


def _run_group(run: Callable[[bool], dict[str, Any]], quick: bool) -> dict[str, Any]:
    start = time.perf_counter()
    try:
        out = dict(run(quick))
    except Exception as exc:  # a group that breaks is reported, the others still run
        out = {"error": f"{type(exc).__name__}: {exc}"}
    out["seconds"] = round(time.perf_counter() - start, 1)
    return out


def summarise(groups: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The headline numbers over all groups, and each target checked."""
    headline: dict[str, Any] = {}
    for group in groups.values():
        for key in TARGETS:
            if key in group and group[key] is not None:
                value = group[key]
                headline[key] = value if key not in headline else (
                    headline[key] + value if key in COUNTS else max(headline[key], value))
    budget = groups.get("budget", {})
    targets: dict[str, Any] = {}
    for key, (target, met) in TARGETS.items():
        if key not in headline:
            targets[key] = {"target": target, "met": None, "why": "not measured"}
            continue
        ok = bool(budget.get("budget_invariant_holds")) if key.startswith("budget") \
            else met(float(headline[key]))
        targets[key] = {"target": target, "value": headline[key], "met": ok}
    errors = {name: g["error"] for name, g in groups.items() if "error" in g}
    return {**headline, "targets": targets,
            "all_met": not errors and all(t["met"] for t in targets.values()),
            "errors": errors}


def bench(
    quick: bool = typer.Option(False, "--quick",
                               help="Fewer calls and a shorter fuzz corpus (about 2 minutes)."),
    only: list[str] = typer.Option([], "--only",
                                   help="Run only these groups: budget, server, stores."),
    postgres_dsn: str | None = typer.Option(
        None, "--postgres-dsn", help="A PostgreSQL (with pgvector) for the store scenarios; "
        "without it they run on SQLite and Redis only."),
) -> None:
    """Budget overspend, server 5xx and /health latency, cross-tenant hits, lost
    ledger rows: the hardening scenarios against real stores and a real server."""
    groups = _groups(postgres_dsn)
    unknown = sorted(set(only) - set(groups))
    if unknown:
        raise typer.BadParameter(f"unknown groups {unknown}; known: {sorted(groups)}")
    results = {name: _run_group(run, quick) for name, run in groups.items()
               if not only or name in only}
    print(json.dumps({"bench": "reliability", "quick": quick, **summarise(results),
                      "groups": results}, indent=2, default=str))
