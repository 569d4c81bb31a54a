"""Kill the Redis / PostgreSQL *process* under concurrent calls, then restart it.

Worker threads keep calling through a real cache (and a Redis budget store)
while the server is SIGKILLed and later restarted on the same address. Checked:
every call is answered (pass-through while the store is down), exactly one
TokenleanWarning per outage, hits again after the restart, and every answer
-- hit or miss -- is the right one for its question and tenant.
"""

from __future__ import annotations

import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import pytest

from tokenlean.cache import ResponseCache
from tokenlean.core import (
    FunctionProvider,
    ModelPrice,
    Pipeline,
    PriceTable,
    Request,
    Response,
    TokenleanWarning,
    Usage,
)

pytestmark = pytest.mark.server

WORKERS = 6
QUESTIONS = [f"question number {i}" for i in range(12)]
TENANTS = ("acme", "globex")
PRICES = PriceTable(overrides={
    "gpt-4o": ModelPrice(input_per_mtok=Decimal(1), output_per_mtok=Decimal(2))})


def _answer(request: Request) -> Response:
    return Response(text=f"{request.tenant}: answer to {request.last_user_text}",
                    model=request.model, usage=Usage(input_tokens=10, output_tokens=5))


@dataclass
class Log:
    calls: list[tuple[str, bool]] = field(default_factory=list)  # (phase, cached)
    wrong: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _worker(pipe: Pipeline, seed: int, phase: list[str], log: Log) -> None:
    i = seed
    while phase[0] != "done":
        i += 1
        tenant, question = TENANTS[i % 2], QUESTIONS[(i * 7) % len(QUESTIONS)]
        request = Request(messages=[{"role": "user", "content": question}], model="gpt-4o",
                          tenant=tenant, max_tokens=50, temperature=0)  # repeatable: cacheable
        started = phase[0]
        try:
            response = pipe.run(request).response
        except Exception as exc:  # a call that fails is what this test must never see
            with log.lock:
                log.errors.append(f"{type(exc).__name__}: {exc}")
            continue
        with log.lock:
            log.calls.append((started, response.cached))
            if response.text != f"{tenant}: answer to {question}":
                log.wrong.append(response.text)


def _soak_with_outage(pipe: Pipeline, kill: Callable[[], None], restart: Callable[[], None],
                      seconds: float = 1.5) -> tuple[Log, list[warnings.WarningMessage]]:
    """Workers call ``pipe`` through: up, killed, restarted; returns what they saw."""
    log, phase = Log(), ["up"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        threads = [threading.Thread(target=_worker, args=(pipe, n * 1000, phase, log))
                   for n in range(WORKERS)]
        for t in threads:
            t.start()
        time.sleep(seconds)
        kill()
        phase[0] = "down"
        time.sleep(seconds)
        restart()
        phase[0] = "restarted"
        time.sleep(seconds * 2)
        phase[0] = "done"
        for t in threads:
            t.join(60)
    assert not any(t.is_alive() for t in threads), "a call hung"
    return log, [w for w in caught if issubclass(w.category, TokenleanWarning)]


def _check(log: Log, tokenlean_warnings: list[warnings.WarningMessage], store: str) -> None:
    assert log.errors == [], log.errors[:3]
    assert log.wrong == [], log.wrong[:3]  # nothing wrong served, ever
    by_phase = {p: [c for ph, c in log.calls if ph == p] for p in ("up", "down", "restarted")}
    assert all(len(calls) >= WORKERS for calls in by_phase.values()), \
        {p: len(c) for p, c in by_phase.items()}
    assert any(by_phase["up"]), "the cache served hits before the outage"
    assert any(by_phase["restarted"]), "the cache serves hits again after the restart"
    print({p: len(c) for p, c in by_phase.items()})  # shown with -s
    messages = [str(w.message) for w in tokenlean_warnings]
    assert len(messages) == 1, messages  # one warning for the one outage
    assert store in messages[0] or "cache" in messages[0]


def test_redis_killed_and_restarted_under_load(redis_server: Any) -> None:
    from tokenlean.cache import RedisStore

    cache = ResponseCache(store=RedisStore(redis_server.url), semantic=False)
    pipe = Pipeline(provider=FunctionProvider(_answer), layers=[cache])
    log, caught = _soak_with_outage(pipe, redis_server.kill, redis_server.start)
    _check(log, caught, "cache")
    cache.close()


def test_postgres_killed_and_restarted_under_load(postgres_server: Any) -> None:
    from tokenlean.cache import PostgresStore

    cache = ResponseCache(store=PostgresStore(postgres_server.dsn, dim=256, table="kill_test"),
                          semantic=False)
    pipe = Pipeline(provider=FunctionProvider(_answer), layers=[cache])
    log, caught = _soak_with_outage(pipe, postgres_server.kill, postgres_server.start)
    _check(log, caught, "cache")
    cache.close()


def test_redis_cache_and_budget_store_killed_together(redis_server: Any) -> None:
    """The cache and a tenant $ budget share the killed Redis: calls go on."""
    from tokenlean.budget import Budget, BudgetLayer, RedisBudgetStore
    from tokenlean.cache import RedisStore

    cache = ResponseCache(store=RedisStore(redis_server.url), semantic=False)
    budget = BudgetLayer(budgets=[Budget(name="t", max_usd=1000, scope="tenant")],
                         store=RedisBudgetStore(url=redis_server.url), prices=PRICES)
    pipe = Pipeline(provider=FunctionProvider(_answer), layers=[cache, budget], prices=PRICES)
    log, caught = _soak_with_outage(pipe, redis_server.kill, redis_server.start)
    cache_warnings = [w for w in caught if "cache" in str(w.message)]
    budget_warnings = [w for w in caught if "budget" in str(w.message)]
    _check(log, cache_warnings, "cache")
    assert len(budget_warnings) == 1, [str(w.message) for w in budget_warnings]  # one outage
    # ... and the budget counts again after the restart
    spent = budget.remaining(Request(messages=[{"role": "user", "content": "x"}],
                                     model="gpt-4o", tenant="acme"))["t"]["spent_usd"]
    assert spent and spent > 0
    cache.close()
