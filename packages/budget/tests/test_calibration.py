"""Calibrating the length predictor on the deployment's own traffic (issue 20).

Real stores (a SQLite file, a real redis-server), the real layer and the shipped
prior; the provider is simulated by settling what a model answering ``factor`` times
the prior's figure would have billed (cut at the cap it was sent with).
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from tokenlean.budget import (
    Budget,
    BudgetLayer,
    Calibration,
    LengthPredictor,
    RedisBudgetStore,
    SQLiteBudgetStore,
)
from tokenlean.budget._calibration import (
    CalibrationState,
    Observation,
    calibration_key,
    conformal_offset,
    observe,
)
from tokenlean.core import (
    ConfigError,
    InvalidRequestError,
    Message,
    Request,
    Response,
    TokenleanWarning,
    Usage,
)

PRIOR = LengthPredictor.default()
TOPICS = ["the sea", "tax law", "a cat", "rust lifetimes", "the moon", "jazz", "bread",
          "chess openings", "volcanoes", "a job interview", "sorting algorithms", "tea"]


def ask(i: int, *, model: str = "brand-new-model", cap: int | None = None,
        route: str | None = None) -> Request:
    text = f"Tell me about {TOPICS[i % len(TOPICS)]} ({i}). " + "Be thorough. " * (i % 5)
    return Request(messages=(Message(role="user", content=text),), model=model,
                   max_tokens=cap, metadata={} if route is None else {"route": route})


def answer(layer: BudgetLayer, request: Request, length: int) -> tuple[Request, bool]:
    """Send ``request`` through the layer; the model's answer is ``length`` tokens long.
    Returns the request sent and whether the answer fitted its cap."""
    sent = layer.process(request)
    cap = sent.output_cap
    cut = cap is not None and length > cap
    billed = cap if cut and cap is not None else length
    layer.on_response(sent, Response(text="x", finish_reason="length" if cut else "stop",
                                     usage=Usage(input_tokens=20, output_tokens=billed)))
    return sent, not cut


def stream(layer: BudgetLayer, n: int, factor: float,
           **kw: object) -> list[tuple[int | None, bool]]:
    """``n`` calls of a model whose answers are ``factor`` x the prior (with some spread)."""
    out = []
    for i in range(n):
        request = ask(i, **kw)  # type: ignore[arg-type]
        prior = PRIOR.predict(request.messages, model=request.model)
        length = max(1, round(prior * factor * (0.6 + 0.4 * ((i * 7) % 11) / 10)))
        sent, fitted = answer(layer, request, length)
        out.append((sent.output_cap, fitted))
    return out


def calibrated(store: object, warmup: int = 30, **options: object) -> BudgetLayer:
    return BudgetLayer(predictor=PRIOR, store=store,  # type: ignore[arg-type]
                       calibration=Calibration(warmup=warmup), **options)  # type: ignore[arg-type]


@pytest.fixture()
def store(tmp_path: Path) -> SQLiteBudgetStore:
    return SQLiteBudgetStore(tmp_path / "budget.sqlite")


def test_learning_makes_an_unseen_model_with_3x_answers_fit(store: SQLiteBudgetStore) -> None:
    """The prior alone cuts nearly every answer of a model answering 3x its figure; the
    calibrated layer lets >= 85% of them finish after warm-up, at a bound near theirs."""
    old = stream(BudgetLayer(predictor=PRIOR), 150, 3.0)
    old_coverage = sum(fitted for _, fitted in old) / len(old)
    new = stream(calibrated(store, warmup=30), 150, 3.0)
    after = new[30:]
    coverage = sum(fitted for _, fitted in after) / len(after)
    assert old_coverage < 0.2
    assert coverage >= 0.85, coverage
    # not by giving up the bound: every call after warm-up is capped, at < 3x the answers
    caps = [cap for cap, _ in after]
    assert all(cap is not None for cap in caps)
    state = CalibrationState.from_json(store.calibration(
        [calibration_key("brand-new-model", "-")])["~length|brand-new-model|-"])
    assert state.warm and math.log(2) < state.offset < math.log(6)  # type: ignore[operator]


def test_warm_up_uses_the_apps_cap_or_none_and_never_raises_it(
        store: SQLiteBudgetStore) -> None:
    layer = calibrated(store, warmup=30)
    # no cap from the app, no budgets: the request is left alone while warming up
    for cap, _ in stream(layer, 30, 3.0):
        assert cap is None
    # warmed up: a bound is set where the app gave none
    assert all(cap is not None for cap, _ in stream(layer, 5, 3.0))
    # an app cap below the prediction is kept as it is
    for cap, _ in stream(layer, 10, 3.0, cap=40):
        assert cap == 40
    # a model still warming up gets exactly the app's cap, however long its answers
    for cap, _ in stream(layer, 10, 3.0, cap=700, model="other-model"):
        assert cap == 700
    # ... and with budgets the reservation's bound stays the app's cap too
    budgeted = BudgetLayer(predictor=PRIOR, store=store, calibration=Calibration(warmup=30),
                           budgets=[Budget(name="t", max_tokens=10**9, scope="tenant")])
    sent, _ = answer(budgeted, ask(1, model="gpt-4o", cap=321), 100)
    assert sent.output_cap == 321


def test_after_warm_up_the_bound_is_the_min_of_the_apps_cap_and_the_prediction(
        store: SQLiteBudgetStore) -> None:
    layer = calibrated(store, warmup=30)
    stream(layer, 30, 0.3)  # a terse model: the calibrated bound is far below the prior
    request = ask(3, cap=4000)
    sent = layer.process(request)
    bound = sent.notes[-1].detail["calibrated_max_tokens"]
    assert bound is not None and bound < PRIOR.predict(request.messages, model=request.model)
    assert sent.output_cap == bound < 4000
    tight = layer.process(ask(3, cap=5))
    assert tight.output_cap == 5


def test_censored_answers_never_teach_a_too_small_bound() -> None:
    cfg = {"warmup": 20, "coverage": 0.9, "step": 0.05}
    # warm-up: 18 answers at 1x the prior, 2 cut at 0.5x; the cut ones rank above all
    state = CalibrationState()
    for i in range(18):
        state = observe(state, Observation(prior=100, actual=100 + i, cut=False, cap=None,
                                           issued=None), **cfg)
    for _ in range(2):
        state = observe(state, Observation(prior=100, actual=50, cut=True, cap=50,
                                           issued=None), **cfg)
    assert state.warm and state.offset is not None
    assert state.offset >= math.log(117 / 100)  # the 19th of 21 ranks: 117, not 50
    # after warm-up, a cut by an app cap below the issued bound: unknown, nothing learned
    before = state.offset
    skipped = observe(state, Observation(prior=100, actual=30, cut=True, cap=30, issued=130),
                      **cfg)
    assert skipped.offset == before and skipped.skipped == 1 and skipped.n == state.n
    # a cut at (or above) the issued bound is a miss: the offset goes up
    missed = observe(state, Observation(prior=100, actual=130, cut=True, cap=130, issued=130),
                     **cfg)
    assert missed.offset is not None and missed.offset > before and missed.misses == 1
    # too many cuts in warm-up: the largest lower bound, never a smaller score
    assert conformal_offset((0.1, 0.2), (0.5, 0.7, 0.9), 0.9) == 0.9


def test_learning_persists_across_layers_on_one_sqlite_file(tmp_path: Path) -> None:
    path = tmp_path / "shared.sqlite"
    first = calibrated(SQLiteBudgetStore(path), warmup=20)
    stream(first, 20, 2.0, route="summaries")
    second = calibrated(SQLiteBudgetStore(path), warmup=20)  # another process, same file
    sent = second.process(ask(2, route="summaries"))
    assert sent.output_cap is not None  # warmed up by the first layer's traffic
    assert sent.notes[-1].detail["calibrated_max_tokens"] == sent.output_cap
    # routes are calibrated apart: another route on the same model still warms up
    assert second.process(ask(2, route="chat")).output_cap is None


def test_learning_is_shared_through_redis(redis_url: str) -> None:
    prefix = "tokenlean:test-calibration:"
    first = calibrated(RedisBudgetStore(url=redis_url, prefix=prefix), warmup=20)
    stream(first, 20, 2.0)
    second = calibrated(RedisBudgetStore(url=redis_url, prefix=prefix), warmup=20)
    sent = second.process(ask(4))
    assert sent.output_cap is not None
    after = stream(second, 60, 2.0)
    assert sum(fitted for _, fitted in after) / len(after) >= 0.8
    assert second.process(ask(4, model="never-seen")).output_cap is None


def test_bad_options_and_routes_are_named() -> None:
    with pytest.raises(ConfigError, match="warmup"):
        Calibration(warmup=0)
    with pytest.raises(ConfigError, match="coverage"):
        Calibration(coverage=1.0)
    with pytest.raises(ConfigError, match="warmup must be at least"):
        Calibration(warmup=5, coverage=0.95)
    with pytest.raises(ConfigError, match="predictor"):
        BudgetLayer(calibration=True)
    with pytest.raises(ConfigError, match="calibration must be"):
        BudgetLayer(predictor=PRIOR, calibration="yes")  # type: ignore[arg-type]

    class NoCalibrationStore(SQLiteBudgetStore):
        update_calibration = None  # type: ignore[assignment]

    with pytest.raises(ConfigError, match="keeps calibration"):
        BudgetLayer(predictor=PRIOR, calibration=True, store=NoCalibrationStore(":memory:"))
    layer = BudgetLayer(predictor=PRIOR, calibration=True, store=SQLiteBudgetStore(":memory:"))
    bad = Request(messages=(Message(role="user", content="hi"),), model="m",
                  metadata={"route": 7})
    with pytest.raises(InvalidRequestError, match="route"):
        layer.process(bad)


def test_a_failing_store_passes_the_call_through_with_one_warning(tmp_path: Path) -> None:
    store = SQLiteBudgetStore(tmp_path / "b.sqlite")
    layer = calibrated(store, warmup=20)
    stream(layer, 20, 1.0)
    assert layer.process(ask(1)).output_cap is not None  # warmed up
    store.close()  # the store is gone: no calibration can be read or learned
    with pytest.warns(TokenleanWarning) as caught:
        results = stream(layer, 3, 1.0, cap=55)
    assert [cap for cap, _ in results] == [55, 55, 55]  # the app's own cap, untouched
    assert len([w for w in caught if issubclass(w.category, TokenleanWarning)]) == 1


def test_use_fresh_stores_gives_learning_layers_an_empty_store(tmp_path) -> None:
    """An offline run (audit, demo) starts from a new deployment: what the app's store
    learned is not used, and the run learns nothing into it."""
    from tokenlean.budget import use_fresh_stores
    from tokenlean.budget._factory import make_layer

    layer = make_layer("predict")
    live = layer.store
    assert use_fresh_stores([layer], tmp_path) == 1
    assert layer.store is not live and any(tmp_path.iterdir())
    plain = BudgetLayer(predictor=LengthPredictor.default())  # no store: left alone
    assert use_fresh_stores([plain], tmp_path) == 0 and plain.store is None
