"""BudgetLayer with the real pipeline, a real SQLite store and real prices."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from decimal import Decimal

import pytest

from tokenlean.budget import Budget, BudgetLayer, SQLiteBudgetStore
from tokenlean.core import (
    BudgetExceeded,
    Chunk,
    ConfigError,
    FunctionProvider,
    Message,
    ModelPrice,
    Pipeline,
    PriceTable,
    Request,
    Response,
    TokenleanError,
    TokenleanWarning,
    Usage,
    count_messages,
)

# $1 / $2 per million tokens: easy arithmetic, exact tiktoken counting (gpt-4o family)
PRICES = PriceTable(overrides={
    "gpt-4o": ModelPrice(input_per_mtok=Decimal(1), output_per_mtok=Decimal(2)),
    "gpt-4o-mini": ModelPrice(input_per_mtok=Decimal("0.1"), output_per_mtok=Decimal("0.2")),
})


def req(text: str = "Say hello.", *, model: str = "gpt-4o", max_tokens: int | None = 100,
        tenant: str = "acme", user: str | None = None) -> Request:
    return Request(messages=(Message(role="user", content=text),), model=model,
                   max_tokens=max_tokens, tenant=tenant, user=user)


def echo(out_tokens: int | None = None) -> FunctionProvider:
    """A provider that answers with ``min(max_tokens, out_tokens)`` output tokens."""

    def complete(request: Request) -> Response:
        out = request.max_tokens if out_tokens is None else min(out_tokens, request.max_tokens)
        prompt = count_messages(request.messages, model=request.model).tokens
        return Response(text="ok " * out, usage=Usage(input_tokens=prompt, output_tokens=out),
                        model=request.model)

    return FunctionProvider(complete, name="echo")


@pytest.fixture
def store(tmp_path) -> Iterator[SQLiteBudgetStore]:
    s = SQLiteBudgetStore(tmp_path / "budget.sqlite")
    yield s
    s.close()


def test_budget_validation() -> None:
    with pytest.raises(ConfigError, match="max_usd and/or max_tokens"):
        Budget(name="b")
    with pytest.raises(ConfigError, match="route_to"):
        Budget(name="b", max_usd=1, policy="route")
    with pytest.raises(ConfigError, match="scope"):
        Budget(name="b", max_usd=1, scope="team")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="unique"):
        BudgetLayer(budgets=[Budget(name="b", max_tokens=1, scope="call")] * 2)
    with pytest.raises(ConfigError, match="predictor"):
        BudgetLayer(concise=True)


def test_period_and_scope_keys() -> None:
    jan31 = 1706745599.0  # 2024-01-31T23:59:59Z
    monthly = Budget(name="m", max_usd=1, scope="tenant", period="month")
    daily = Budget(name="d", max_usd=1, scope="user", period="day")
    assert monthly.key(req(), now=jan31) == "m|tenant=acme|2024-01"
    assert monthly.key(req(), now=jan31 + 1) == "m|tenant=acme|2024-02"
    assert daily.key(req(user="ann"), now=jan31) == "d|user=ann|2024-01-31"
    assert daily.key(req(), now=jan31) == "d|user=-|2024-01-31"
    assert Budget(name="c", max_tokens=5, scope="call").key(req()) is None


def test_reserve_settle_and_refuse(store: SQLiteBudgetStore) -> None:
    budget = Budget(name="monthly", max_usd=Decimal("0.0005"), scope="tenant")
    layer = BudgetLayer(budgets=[budget], store=store, prices=PRICES)
    pipe = Pipeline(provider=echo(out_tokens=50), layers=[layer], prices=PRICES)
    result = pipe.run(req(max_tokens=100))
    prompt = count_messages(req().messages, model="gpt-4o").tokens
    left = layer.remaining(req())["monthly"]
    assert left["reserved_usd"] == 0
    # settled with the actual 50 output tokens, not the 100 reserved
    assert left["spent_usd"] == pytest.approx((prompt * 1 + 50 * 2) / 1e6)
    assert result.record.layers[0].detail["max_tokens"] == 100
    # a call whose worst case no longer fits is refused before the provider runs
    called = []
    refusing = Pipeline(provider=FunctionProvider(lambda r: called.append(r) or Response(text="")),
                        layers=[layer], prices=PRICES)
    with pytest.raises(BudgetExceeded, match="monthly") as info:
        refusing.run(req(max_tokens=500))
    assert not called and info.value.budget == "monthly"
    assert layer.remaining(req())["monthly"]["reserved_usd"] == 0
    # another tenant has its own account
    assert pipe.run(req(max_tokens=100, tenant="other")).response.text


def test_token_budget_per_user(store: SQLiteBudgetStore) -> None:
    layer = BudgetLayer(budgets=[Budget(name="u", max_tokens=300, scope="user", period="day")],
                        store=store, prices=PRICES)
    pipe = Pipeline(provider=echo(), layers=[layer], prices=PRICES)
    pipe.run(req(max_tokens=100, user="ann"))
    with pytest.raises(BudgetExceeded, match="tokens left"):
        pipe.run(req(max_tokens=250, user="ann"))
    pipe.run(req(max_tokens=250, user="bob"))


def test_clamp_lowers_max_tokens(store: SQLiteBudgetStore) -> None:
    per_call = Budget(name="call", max_usd=Decimal("0.0002"), scope="call", policy="clamp")
    layer = BudgetLayer(budgets=[per_call], store=store, prices=PRICES)
    pipe = Pipeline(provider=echo(), layers=[layer], prices=PRICES)
    result = pipe.run(req(max_tokens=4000))
    prompt = count_messages(req().messages, model="gpt-4o").tokens
    expected = (200 - prompt) // 2  # nano-dollars: 200_000 left, 1000/token in, 2000/token out
    assert result.request.max_tokens == expected
    assert result.record.layers[0].detail["clamped_from"] == 4000
    # below min_output_tokens clamping gives up and raises
    tiny = Budget(name="tiny", max_usd=Decimal("0.00002"), scope="call", policy="clamp")
    with pytest.raises(BudgetExceeded):
        Pipeline(provider=echo(), layers=[BudgetLayer(budgets=[tiny], prices=PRICES)],
                 prices=PRICES).run(req())


def test_route_to_cheaper_model(store: SQLiteBudgetStore) -> None:
    budget = Budget(name="t", max_usd=Decimal("0.0001"), scope="tenant", policy="route",
                    route_to=("gpt-4o-mini",))
    layer = BudgetLayer(budgets=[budget], store=store, prices=PRICES)
    result = Pipeline(provider=echo(), layers=[layer], prices=PRICES).run(req(max_tokens=200))
    assert result.request.model == "gpt-4o-mini"
    assert result.record.model == "gpt-4o-mini"
    assert result.record.layers[0].detail["routed_from"] == "gpt-4o"


def test_warn_policy_lets_the_call_through(store: SQLiteBudgetStore) -> None:
    budget = Budget(name="soft", max_tokens=10, scope="tenant", policy="warn")
    layer = BudgetLayer(budgets=[budget], store=store, prices=PRICES)
    with pytest.warns(TokenleanWarning, match="soft"):
        Pipeline(provider=echo(), layers=[layer], prices=PRICES).run(req(max_tokens=100))
    assert layer.remaining(req())["soft"]["tokens"] < 0


def test_provider_error_releases_the_reservation(store: SQLiteBudgetStore) -> None:
    layer = BudgetLayer(budgets=[Budget(name="b", max_usd=1, scope="tenant")], store=store,
                        prices=PRICES)

    def boom(request: Request) -> Response:
        assert layer.remaining(req())["b"]["reserved_usd"] > 0  # reserved while in flight
        raise RuntimeError("provider down")

    with pytest.raises(RuntimeError):
        Pipeline(provider=FunctionProvider(boom), layers=[layer], prices=PRICES).run(req())
    left = layer.remaining(req())["b"]
    assert left["reserved_usd"] == 0 and left["spent_usd"] == 0


def test_predicted_or_default_max_tokens_bounds_the_call(store: SQLiteBudgetStore) -> None:
    class Fixed:
        def predict(self, messages):
            return 77

    layer = BudgetLayer(budgets=[Budget(name="b", max_usd=1, scope="tenant")], store=store,
                        prices=PRICES, predictor=Fixed(), concise=True)
    result = Pipeline(provider=echo(), layers=[layer], prices=PRICES).run(req(max_tokens=None))
    assert result.request.max_tokens == 77
    assert result.request.messages[0].role == "system"
    assert "words" in result.request.messages[0].text
    plain = BudgetLayer(budgets=[Budget(name="b", max_usd=1, scope="tenant")], store=store,
                        prices=PRICES, default_max_tokens=123)
    assert plain.process(req(max_tokens=None)).max_tokens == 123


class Streamer:
    """A streaming provider; ``usage=False`` imitates one that reports no usage."""

    name = "streamer"

    def __init__(self, *, usage: bool) -> None:
        self.usage = usage

    def complete(self, request: Request) -> Response:
        raise NotImplementedError

    async def acomplete(self, request: Request) -> Response:
        raise NotImplementedError

    def stream(self, request: Request) -> Iterator[Chunk]:
        words = ["word "] * 40
        for w in words:
            yield Chunk(text=w)
        usage = Usage(input_tokens=10, output_tokens=40) if self.usage else Usage()
        yield Chunk(response=Response(text="".join(words), usage=usage, model=request.model))

    async def astream(self, request: Request):
        for chunk in self.stream(request):
            yield chunk


def test_streamed_calls_are_charged_never_zero(store: SQLiteBudgetStore) -> None:
    layer = BudgetLayer(budgets=[Budget(name="b", max_usd=1, scope="tenant")], store=store,
                        prices=PRICES)
    pipe = Pipeline(provider=Streamer(usage=False), layers=[layer], prices=PRICES)
    text = "".join(c.text for c in pipe.stream(req()))
    assert text.startswith("word")
    left = layer.remaining(req())["b"]
    assert left["spent_usd"] > 0 and left["reserved_usd"] == 0


def test_abandoned_stream_is_charged_its_reservation(store: SQLiteBudgetStore) -> None:
    layer = BudgetLayer(budgets=[Budget(name="b", max_usd=1, scope="tenant")], store=store,
                        prices=PRICES)
    pipe = Pipeline(provider=Streamer(usage=True), layers=[layer], prices=PRICES)
    stream = pipe.stream(req(max_tokens=100))
    next(stream)
    next(stream)
    stream.close()  # the consumer walks away mid-answer
    prompt = count_messages(req().messages, model="gpt-4o").tokens
    left = layer.remaining(req())["b"]
    assert left["reserved_usd"] == 0
    assert left["spent_usd"] == pytest.approx((prompt + 200) / 1e6)


def test_cache_hit_after_budget_costs_nothing(store: SQLiteBudgetStore) -> None:
    class Hit:
        name = "cache"

        def process(self, request: Request) -> Response:
            return Response(text="cached", cached=True, usage=Usage(input_tokens=5,
                                                                     output_tokens=5))

        async def aprocess(self, request: Request) -> Response:
            return self.process(request)

    layer = BudgetLayer(budgets=[Budget(name="b", max_usd=1, scope="tenant")], store=store,
                        prices=PRICES)
    Pipeline(provider=echo(), layers=[layer, Hit()], prices=PRICES).run(req())
    left = layer.remaining(req())["b"]
    assert left["spent_usd"] == 0 and left["reserved_usd"] == 0


def test_unknown_price(store: SQLiteBudgetStore) -> None:
    deny = BudgetLayer(budgets=[Budget(name="usd", max_usd=1, scope="tenant")], store=store,
                       prices=PriceTable())
    with pytest.warns(TokenleanWarning, match="no price known"):
        with pytest.raises(BudgetExceeded, match="no price is known"):
            deny.process(req(model="my-local-model"))
    allow = BudgetLayer(
        budgets=[Budget(name="usd2", max_usd=1, scope="tenant", unknown_price="allow"),
                 Budget(name="tok", max_tokens=150, scope="tenant")],
        store=store, prices=PriceTable())
    pipe = Pipeline(provider=echo(), layers=[allow], prices=PRICES)
    with pytest.warns(TokenleanWarning, match="no price known"):
        pipe.run(req(model="my-local-model", max_tokens=100))
    left = allow.remaining(req())
    assert left["usd2"]["spent_usd"] == 0  # dollars unknown: not counted as $0 spend...
    assert left["tok"]["tokens"] < 50  # ...but the tokens are
    with pytest.raises(BudgetExceeded, match="tok"):
        pipe.run(req(model="my-local-model", max_tokens=100))


def test_stale_reservations_are_charged(tmp_path) -> None:
    now = [1000.0]
    store = SQLiteBudgetStore(tmp_path / "b.sqlite", stale_after_s=60, clock=lambda: now[0])
    layer = BudgetLayer(budgets=[Budget(name="b", max_usd=1, scope="tenant")], store=store,
                        prices=PRICES)
    layer.process(req(max_tokens=100))  # a process that died before settling
    now[0] += 120
    layer.process(req(max_tokens=100))
    left = layer.remaining(req())["b"]
    prompt = count_messages(req().messages, model="gpt-4o").tokens
    assert left["spent_usd"] == pytest.approx((prompt + 200) / 1e6)
    assert left["reserved_usd"] == pytest.approx((prompt + 200) / 1e6)
    store.close()


def test_32_concurrent_calls_never_overshoot(tmp_path) -> None:
    """32 threads, two store connections on one file, a $ budget for ~10 calls."""
    path = tmp_path / "shared.sqlite"
    stores = [SQLiteBudgetStore(path), SQLiteBudgetStore(path)]
    limit = Decimal("0.002")
    budget = Budget(name="pool", max_usd=limit, scope="global", period="day")
    layers = [BudgetLayer(budgets=[budget], store=s, prices=PRICES) for s in stores]
    in_flight, peak, lock = [0], [0], threading.Lock()

    def slow(request: Request) -> Response:
        with lock:
            in_flight[0] += 1
            peak[0] = max(peak[0], in_flight[0])
        time.sleep(0.02)
        with lock:
            in_flight[0] -= 1
        return echo(out_tokens=80).complete(request)

    pipes = [Pipeline(provider=FunctionProvider(slow), layers=[layer], prices=PRICES)
             for layer in layers]
    outcomes: list[str] = []
    barrier = threading.Barrier(32)

    def worker(i: int) -> None:
        barrier.wait()
        try:
            pipes[i % 2].run(req(f"question {i}", max_tokens=100))
            outcomes.append("ok")
        except BudgetExceeded:
            outcomes.append("refused")

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    one_call = Decimal(count_messages(req("question 10").messages, model="gpt-4o").tokens
                       + 2 * 100) / Decimal(1_000_000)
    left = layers[0].remaining(req())["pool"]
    spent = Decimal(str(left["spent_usd"]))
    assert left["reserved_usd"] == 0
    assert spent <= limit + one_call
    assert spent <= limit  # with max_tokens enforced the worst case is reserved: no overshoot
    assert outcomes.count("ok") >= 7 and "refused" in outcomes and len(outcomes) == 32
    for s in stores:
        s.close()


async def test_async_pipeline(store: SQLiteBudgetStore) -> None:
    async def acomplete(request: Request) -> Response:
        await asyncio.sleep(0)
        return echo(out_tokens=10).complete(request)

    layer = BudgetLayer(budgets=[Budget(name="b", max_tokens=1000, scope="tenant")], store=store,
                        prices=PRICES)
    pipe = Pipeline(provider=FunctionProvider(echo().complete, afunc=acomplete), layers=[layer],
                    prices=PRICES)
    results = await asyncio.gather(*(pipe.arun(req(max_tokens=50)) for _ in range(5)))
    assert all(r.response.text for r in results)
    left = layer.remaining(req())["b"]
    prompt = count_messages(req().messages, model="gpt-4o").tokens
    assert left["tokens"] == 1000 - 5 * (prompt + 10)
    with pytest.raises(TokenleanError):
        await pipe.arun(req(max_tokens=5000))


def test_prediction_only_layer_needs_no_price_and_no_store() -> None:
    """The preset `budget="predict"`: no budgets, max_tokens from the shipped predictor."""
    from tokenlean.budget import LengthPredictor

    layer = BudgetLayer(predictor=LengthPredictor.default())
    assert layer.store is None
    out = layer.process(req("Write a haiku about the sea.", model="my-local-model",
                            max_tokens=None))  # unknown price: no warning (filterwarnings=error)
    assert 16 <= out.max_tokens <= 4096
    assert out.notes[-1].detail["predicted_max_tokens"] == out.max_tokens
    assert out.notes[-1].detail["reserved_usd"] is None
    kept = layer.process(req(max_tokens=50))
    assert kept.max_tokens == 50  # an explicit max_tokens is never raised


def test_prediction_uses_the_model_and_is_exposed_for_middleware() -> None:
    """The predictor hears the request's model; the figure is on the request's metadata
    (not in ``params``, which go to the provider's body) for middleware to read."""
    from tokenlean.budget import PREDICTED_MAX_TOKENS_KEY, LengthPredictor

    predictor = LengthPredictor.default()
    layer = BudgetLayer(predictor=predictor, set_max_tokens=False)
    ask = "Give me three tips for a job interview."
    terse = req(ask, model="text-davinci-003", max_tokens=None)
    verbose = req(ask, model="gpt4_1106_preview", max_tokens=None)
    assert predictor.knows_model("text_davinci_003") and predictor.knows_model("gpt4_1106_preview")
    low, high = layer.predict_max_tokens(terse), layer.predict_max_tokens(verbose)
    assert low is not None and high is not None and low < high
    out = layer.process(verbose)
    assert out.max_tokens is None  # set_max_tokens=False: the request keeps its own
    assert out.metadata[PREDICTED_MAX_TOKENS_KEY] == high
    assert PREDICTED_MAX_TOKENS_KEY not in out.to_openai()
    assert BudgetLayer().predict_max_tokens(terse) is None

    class MessagesOnly:  # a user's predictor without the model keyword still works
        def predict(self, messages):
            return 42

    assert BudgetLayer(predictor=MessagesOnly()).process(terse).max_tokens == 42


def test_cli_show_and_reset(tmp_path) -> None:
    import json as _json

    from typer.testing import CliRunner

    from tokenlean.cli import app

    path = tmp_path / "cli.sqlite"
    store = SQLiteBudgetStore(path)
    layer = BudgetLayer(budgets=[Budget(name="b", max_tokens=1000, scope="tenant")], store=store,
                        prices=PRICES)
    Pipeline(provider=echo(out_tokens=5), layers=[layer], prices=PRICES).run(req())
    runner = CliRunner()
    shown = runner.invoke(app, ["budget", "show", "--db", str(path), "--json"])
    assert shown.exit_code == 0, shown.output
    rows = _json.loads(shown.output)
    assert rows[0]["spent_tokens"] > 0 and rows[0]["key"].startswith("b|tenant=acme|")
    reset = runner.invoke(app, ["budget", "reset", rows[0]["key"], "--db", str(path)])
    assert reset.exit_code == 0, reset.output
    assert layer.remaining(req())["b"]["tokens"] == 1000
    assert runner.invoke(app, ["budget", "reset", "nope", "--db", str(path)]).exit_code == 2
    store.close()


def test_an_overrun_is_charged_and_reserved_for_next_time(store: SQLiteBudgetStore) -> None:
    """A provider that ignores max_tokens: the overrun is spent in full, and the next
    admissions reserve the overrun the store has learned for the model."""
    def ignores_cap(request: Request) -> Response:
        prompt = count_messages(request.messages, model=request.model).tokens
        return Response(text="long", usage=Usage(input_tokens=prompt, output_tokens=300))

    layer = BudgetLayer(budgets=[Budget(name="b", max_usd=1, scope="tenant")], store=store,
                        prices=PRICES)
    pipe = Pipeline(provider=FunctionProvider(ignores_cap), layers=[layer], prices=PRICES)
    first = pipe.run(req(max_tokens=100))
    prompt = first.record.layers[0].detail["prompt_tokens"]
    assert first.record.layers[0].detail["probe"] is True
    assert layer.remaining(req())["b"]["spent_usd"] == pytest.approx((prompt + 600) / 1e6)
    second = layer.process(req(max_tokens=100))
    detail = second.notes[-1].detail
    assert detail["overrun_milli"] == 3000 and detail["probe"] is False
    assert detail["reserved_usd"] == pytest.approx((prompt + 3 * 200) / 1e6)
    assert second.max_tokens == 100  # the cap sent is still the app's
