"""RedisBudgetStore against a real redis-server started for the test."""

from __future__ import annotations

import shutil
import threading
import time
from decimal import Decimal

import pytest

from tokenlean.budget import Budget, BudgetLayer, RedisBudgetStore
from tokenlean.core import (
    BudgetExceeded,
    FunctionProvider,
    Message,
    ModelPrice,
    Pipeline,
    PriceTable,
    Request,
    Response,
    Usage,
    count_messages,
)

redis = pytest.importorskip("redis")
pytestmark = [pytest.mark.server,
              pytest.mark.skipif(shutil.which("redis-server") is None,
                                 reason="redis-server not installed")]

PRICES = PriceTable(overrides={
    "gpt-4o": ModelPrice(input_per_mtok=Decimal(1), output_per_mtok=Decimal(2))})


def req(text: str = "hello", max_tokens: int = 100) -> Request:
    return Request(messages=(Message(role="user", content=text),), model="gpt-4o",
                   max_tokens=max_tokens, tenant="acme")


def provider(out: int = 80) -> FunctionProvider:
    def complete(request: Request) -> Response:
        time.sleep(0.01)
        prompt = count_messages(request.messages, model=request.model).tokens
        return Response(text="x", usage=Usage(input_tokens=prompt,
                                               output_tokens=min(out, request.max_tokens)))

    return FunctionProvider(complete)


def test_reserve_settle_release(redis_url: str) -> None:
    store = RedisBudgetStore(url=redis_url, prefix="t1:")
    layer = BudgetLayer(budgets=[Budget(name="b", max_tokens=400, scope="tenant")], store=store,
                        prices=PRICES)
    pipe = Pipeline(provider=provider(out=50), layers=[layer], prices=PRICES)
    pipe.run(req())
    prompt = count_messages(req().messages, model="gpt-4o").tokens
    assert layer.remaining(req())["b"]["tokens"] == 400 - prompt - 50
    with pytest.raises(BudgetExceeded):
        pipe.run(req(max_tokens=390))

    def boom(request: Request) -> Response:
        raise RuntimeError("down")

    with pytest.raises(RuntimeError):
        Pipeline(provider=FunctionProvider(boom), layers=[layer], prices=PRICES).run(req())
    left = layer.remaining(req())["b"]
    assert left["tokens"] == 400 - prompt - 50 and left["reserved_usd"] == 0
    store.close()


def test_stale_reservation_is_charged(redis_url: str) -> None:
    now = [1000.0]
    store = RedisBudgetStore(url=redis_url, prefix="t2:", stale_after_s=60, clock=lambda: now[0])
    layer = BudgetLayer(budgets=[Budget(name="b", max_tokens=10_000, scope="tenant")],
                        store=store, prices=PRICES)
    layer.process(req())
    now[0] += 100
    layer.process(req())
    prompt = count_messages(req().messages, model="gpt-4o").tokens
    assert layer.remaining(req())["b"]["tokens"] == 10_000 - 2 * (prompt + 100)
    store.close()


def test_32_concurrent_calls_never_overshoot(redis_url: str) -> None:
    limit = Decimal("0.002")
    stores = [RedisBudgetStore(url=redis_url, prefix="t3:") for _ in range(4)]
    layers = [BudgetLayer(budgets=[Budget(name="pool", max_usd=limit, scope="global")],
                          store=s, prices=PRICES) for s in stores]
    pipes = [Pipeline(provider=provider(), layers=[layer], prices=PRICES) for layer in layers]
    outcomes: list[str] = []
    barrier = threading.Barrier(32)

    def worker(i: int) -> None:
        barrier.wait()
        try:
            pipes[i % 4].run(req(f"question {i}"))
            outcomes.append("ok")
        except BudgetExceeded:
            outcomes.append("refused")

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    one_call = Decimal(count_messages(req("question 10").messages, model="gpt-4o").tokens
                       + 200) / Decimal(1_000_000)
    left = layers[0].remaining(req())["pool"]
    spent = Decimal(str(left["spent_usd"]))
    assert left["reserved_usd"] == 0
    assert spent <= limit + one_call and spent <= limit
    assert outcomes.count("ok") >= 7 and "refused" in outcomes
    for s in stores:
        s.close()


def test_a_hung_redis_is_an_outage_within_the_timeout() -> None:
    """SIGSTOP the server: a call goes on (pass-through, one warning) in about timeout_s,
    not redis-py's 5 s default."""
    from tokenlean.bench._servers import redis_server
    from tokenlean.core import ConfigError, TokenleanWarning

    with pytest.raises(ConfigError, match="timeout_s"):
        RedisBudgetStore(url="redis://127.0.0.1:1/0", timeout_s=0)
    with redis_server() as redis:
        if redis is None:
            pytest.skip("redis-server not installed")
        store = RedisBudgetStore(url=redis.url, prefix="hang:")
        layer = BudgetLayer(budgets=[Budget(name="b", max_usd=1, scope="tenant")], store=store,
                            prices=PRICES)
        pipe = Pipeline(provider=provider(), layers=[layer], prices=PRICES)
        pipe.run(req())  # connected and working
        redis.pause()
        try:
            started = time.monotonic()
            with pytest.warns(TokenleanWarning, match="budget store reserve failed"):
                result = pipe.run(req())
            took = time.monotonic() - started
        finally:
            redis.resume()
        assert result.response.text == "x" and result.record.layers[0].detail["store"] == "down"
        assert took < 0.6, took
        store.close()
