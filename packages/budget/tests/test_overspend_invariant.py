"""The budget invariant under concurrency: ``spent <= limit + the largest single call``.

Each scenario (``tokenlean.bench._reliability_budget``) bills something a
reservation that counted only the prompt text and ``max_tokens`` missed: ten
completions (``n=10``), image parts, a provider ignoring ``max_tokens``, tool
definitions, a cache write. More calls than the budget affords run at once,
from threads, from asyncio tasks and from four real processes, on a real SQLite
file and a real ``redis-server``.
"""

from __future__ import annotations

import uuid

import pytest

from tokenlean.bench._reliability_budget import SCENARIOS, StoreSpec, run_scenario

RUNNERS = ("threads", "asyncio", "processes")


def _check(result: dict) -> None:
    assert result["calls_ok"] >= 1 and result["reserved_left_usd"] == 0, result
    assert result["holds"], result  # spent <= limit + the largest single call


@pytest.mark.parametrize("runner", RUNNERS)
@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_sqlite_store_holds_the_invariant(scenario: str, runner: str, tmp_path) -> None:
    _check(run_scenario(scenario, runner, StoreSpec("sqlite", str(tmp_path / "b.sqlite"), "")))


@pytest.mark.server
@pytest.mark.parametrize("runner", RUNNERS)
@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_redis_store_holds_the_invariant(scenario: str, runner: str, redis_url: str) -> None:
    spec = StoreSpec("redis", redis_url, f"inv:{uuid.uuid4().hex}:")
    _check(run_scenario(scenario, runner, spec))
