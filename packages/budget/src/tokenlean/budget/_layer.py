"""``BudgetLayer``: reserve before the call, settle after it, release on error.

Before the call the layer prices the worst case of the call -- prompt tokens
(``count_messages``) plus the output tokens it allows (the app's own cap,
``Request.output_cap``: ``max_tokens`` or the provider's name for it in
``params``; else the length predictor's; else ``default_max_tokens``) -- and
reserves that amount on every budget the call falls under, atomically (see
:mod:`tokenlean.budget._store`). It then caps the request at what it reserved,
so the reservation really bounds the call. The cap is only ever lowered
(a ``"clamp"`` budget) or set where the app gave none, never raised: with
``policy="raise"`` concurrent calls cannot push a budget past its limit by
more than a miscount of the prompt (tokenizers flagged ``exact=False``).

After the call it settles the reservation with the actual usage (streamed
calls included: a response without usage is charged by counting its text,
never as $0). When the call fails before any token is produced the
reservation is released; when a stream is abandoned midway (the consumer
stopped, the task was cancelled) the reserved amount is charged, since the
provider may have billed tokens the layer never saw (``on_abort``).
"""

from __future__ import annotations

import asyncio
import inspect
import math
import time
import uuid
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any, Literal, Protocol

from tokenlean.core import (
    BudgetExceeded,
    ConfigError,
    LayerNote,
    Message,
    PriceTable,
    Request,
    Response,
    TokenleanError,
    TokenleanWarning,
    Usage,
    count_messages,
    count_tokens,
)
from tokenlean.core.outage import Outage
from tokenlean.core.prices import default_price_table

from ._billable import Shape, shape
from ._calibration import (
    CUT_REASONS,
    Calibration,
    CalibrationState,
    Observation,
    calibration_key,
    observe,
    resolve,
)
from ._concise import concise_policy, concise_types
from ._spec import NANO, Budget, to_nano
from ._store import Account, BudgetStore, Claim, ClaimRejected, SQLiteBudgetStore

__all__ = ["PREDICTED_MAX_TOKENS_KEY", "BudgetLayer", "LengthModel", "Plan"]

_Rates = tuple[Decimal, Decimal, Decimal]

CONTINUATION_KEY = "tokenlean_continuation"
#: ``Request.metadata`` key under which the layer exposes the predictor's ``max_tokens``
#: (metadata, not ``params``: ``params`` are sent to the provider as body fields)
PREDICTED_MAX_TOKENS_KEY = "tokenlean_predicted_max_tokens"
_ABORTS = (GeneratorExit, asyncio.CancelledError, KeyboardInterrupt)
# store keys of the layer's own calibration, per model: the largest overrun seen
# (output billed / output bound, in thousandths, in ``spent_nano``; calls learned
# from in ``spent_tokens``) and the first call on a model still being probed
_OVERRUN = "~overrun|"
_PROBE = "~probe|"
_MILLI = 1000
_FIRST_PAUSE_S, _LAST_PAUSE_S = 0.005, 0.1


@dataclass(frozen=True, slots=True)
class _Output:
    """The output bound a call asks for, before the budgets (internal)."""

    wanted: int                  # output tokens to allow (and reserve)
    predicted: int | None        # the prediction used, if any
    impose: bool = True          # may ``wanted`` be written where the app set no cap
    prior: int | None = None     # calibrated layers: the prior predictor's figure
    key: str | None = None       # calibrated layers: the (model, route) calibration key


class _ProbeBusy(Exception):
    """Another call is probing this model: wait for it (internal)."""


class LengthModel(Protocol):
    """Predicts ``max_tokens`` for a prompt (see :class:`LengthPredictor`).

    A ``predict`` that also takes a ``model`` keyword gets the request's model.
    """

    def predict(self, messages: Sequence[Message]) -> int: ...


def _takes_model(predictor: Any) -> bool:
    try:
        parameters = inspect.signature(predictor.predict).parameters
    except (TypeError, ValueError):
        return False
    return "model" in parameters or any(
        p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())


@dataclass(frozen=True, slots=True)
class Plan:
    """What the layer decided for one call."""

    model: str
    max_tokens: int
    prompt_tokens: int
    cost_nano: int | None
    claims: tuple[Claim, ...]
    clamped_from: int | None
    routed_from: str | None
    warned: tuple[str, ...]
    #: output tokens the call may be billed for (``max_tokens`` x completions)
    output_bound: int = 0
    #: the largest overrun of ``output_bound`` seen on the model, in thousandths
    overrun_milli: int = _MILLI
    #: whether this call is the model's probe (its first, admitted alone)
    probe: bool = False


class BudgetLayer:
    """Token and dollar budgets around a call, as a pipeline layer.

    ``budgets``: the :class:`Budget` limits to enforce (names unique).
    ``store``: shared state for user / tenant / global budgets (default: a
    :class:`SQLiteBudgetStore` in the ledger's file). ``predictor``: a
    :class:`LengthModel` giving ``max_tokens`` when the request has none
    (``None``: use ``default_max_tokens``). ``concise``: add a length
    instruction derived from the prediction (opt-in), only on the task types
    where it is safe (open chat, extraction, classification: see
    :mod:`tokenlean.budget._task_type`); ``concise_task_types=("code", "math")``
    opts more in. The note says ``concise`` and ``task_type``. ``set_max_tokens``:
    write the reserved output bound into the request (keep it on: without it
    a reservation is an estimate, not a bound).

    A failing store (Redis down, a locked or unreadable SQLite file) never
    fails the call: the call goes on unbudgeted (``max_tokens`` still applied
    from the prediction), with one :class:`TokenleanWarning` per outage; its
    note says ``"store": "down"``. Budgets fail open, like every tokenlean store.
    """

    name = "budget"

    def __init__(self, *, budgets: Sequence[Budget] = (), store: BudgetStore | None = None,
                 prices: PriceTable | None = None, predictor: LengthModel | None = None,
                 default_max_tokens: int = 4096, set_max_tokens: bool = True,
                 concise: bool = False, concise_task_types: Iterable[str] | None = None,
                 on_abort: Literal["charge", "release"] = "charge",
                 count_model: str | None = None, name: str = "budget",
                 reasoning_headroom: int = 25_000, unknown_file_tokens: int = 300_000,
                 probe_wait_s: float = 2.0,
                 calibration: Calibration | bool | None = None) -> None:
        budgets = tuple(budgets)
        for budget in budgets:
            if not isinstance(budget, Budget):
                raise ConfigError(f"budgets must be Budget objects, got {budget!r}")
        names = [b.name for b in budgets]
        if len(set(names)) != len(names):
            raise ConfigError(f"budget names must be unique, got {names}")
        if isinstance(default_max_tokens, bool) or not isinstance(default_max_tokens, int) \
                or default_max_tokens < 1:
            raise ConfigError("default_max_tokens must be a positive integer")
        for option, value in (("reasoning_headroom", reasoning_headroom),
                              ("unknown_file_tokens", unknown_file_tokens)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigError(f"{option} must be a non-negative integer, got {value!r}")
        if isinstance(probe_wait_s, bool) or not isinstance(probe_wait_s, (int, float)) \
                or not 0 <= probe_wait_s < float("inf"):
            raise ConfigError(f"probe_wait_s must be a non-negative number, got {probe_wait_s!r}")
        if on_abort not in ("charge", "release"):
            raise ConfigError(f"on_abort must be 'charge' or 'release', got {on_abort!r}")
        if concise and predictor is None:
            raise ConfigError("concise=True derives its length instruction from a predictor; "
                              "pass predictor=LengthPredictor.default()")
        self.budgets = budgets
        stored = any(b.scope != "call" for b in budgets)
        self.calibration = resolve(calibration, predictor)  # learns per (model, route)
        stored = stored or self.calibration is not None
        self.store: BudgetStore | None = store if store is not None else (
            SQLiteBudgetStore() if stored else None)
        self.prices = prices or default_price_table()
        self.predictor = predictor
        self._predictor_takes_model = predictor is not None and _takes_model(predictor)
        self.default_max_tokens = default_max_tokens
        self.set_max_tokens = set_max_tokens
        self.concise = concise
        self.concise_types = concise_types(concise_task_types)  # ConfigError on a bad type
        self.on_abort = on_abort
        self.count_model = count_model
        self.name = name
        self.reasoning_headroom = reasoning_headroom
        self.unknown_file_tokens = unknown_file_tokens
        self.probe_wait_s = float(probe_wait_s)
        if self.calibration is not None and not callable(
                getattr(self.store, "update_calibration", None)):
            raise ConfigError("calibration= needs a store that keeps calibration "
                              "(SQLiteBudgetStore, RedisBudgetStore)")
        # stores with learn() keep each model's overrun and probe (custom stores may not)
        self._learns = callable(getattr(self.store, "learn", None))
        self._needs_price = any(b.max_usd is not None for b in budgets)
        self._rates_cache: dict[tuple[str, str | None], _Rates | None] = {}
        self._outage = Outage("tokenlean budget store", "calls go on unbudgeted (fail open) "
                              "until the store recovers; one warning per outage")

    # ---- pure helpers ------------------------------------------------------

    def _rates(self, model: str, provider: str | None) -> _Rates | None:
        """USD per input token, per output token and per cache-written input token
        (None: price unknown)."""
        key = (model, provider)
        if key not in self._rates_cache:
            million = 1_000_000
            one = self.prices.price(Usage(input_tokens=million, output_tokens=million),
                                    model=model, provider=provider)
            write = None if one is None else self.prices.price(
                Usage(input_tokens=million, cache_write_tokens=million), model=model,
                provider=provider)
            self._rates_cache[key] = None if one is None or write is None else (
                one.input_usd / million, one.output_usd / million, write.input_usd / million)
        return self._rates_cache[key]

    @staticmethod
    def _billed_rates(rates: _Rates | None, billable: Shape,
                      per_output: Decimal) -> tuple[Decimal, Decimal] | None:
        """USD per prompt token and per allowed output token, as this call bills them:
        a cache write's premium on the prompt, every completion and overrun on the output."""
        if rates is None:
            return None
        prompt_rate = rates[0]
        if billable.cache_write is not None:
            prompt_rate = max(rates[0] * billable.cache_write, rates[2])
        return prompt_rate, rates[1] * per_output

    @staticmethod
    def _cost_nano(rates: tuple[Decimal, Decimal] | None, prompt: int, out: int) -> int | None:
        if rates is None:
            return None
        return math.ceil((prompt * rates[0] + out * rates[1]) * NANO)

    def _prompt_tokens(self, request: Request, model: str) -> int:
        return count_messages(request.messages, model=self.count_model or model,
                              tools=request.tools).tokens

    def _shape(self, request: Request, model: str) -> Shape:
        return shape(request, model, unknown_file_tokens=self.unknown_file_tokens,
                     reasoning_headroom=self.reasoning_headroom)

    @staticmethod
    def _overrun(accounts: Mapping[str, Account], model: str) -> int | None:
        """The largest overrun the store has seen on ``model`` (thousandths), None if
        no call on it has been settled yet."""
        account = accounts.get(_OVERRUN + model)
        if account is None or account.spent_tokens == 0:
            return None
        return max(_MILLI, account.spent_nano)

    def predict_max_tokens(self, request: Request) -> int | None:
        """The predictor's ``max_tokens`` for ``request`` (its model included), or None.

        What middleware reads to set ``max_tokens`` itself; after
        :meth:`process` the same figure is in the request's metadata under
        :data:`PREDICTED_MAX_TOKENS_KEY` (and in this layer's note).
        """
        if self.predictor is None:
            return None
        if self._predictor_takes_model:  # its predict() accepts model= (checked at init)
            predicted = self.predictor.predict(request.messages,  # type: ignore[call-arg]
                                               model=request.model)
        else:
            predicted = self.predictor.predict(request.messages)
        return max(1, int(predicted))

    def requested_output(self, request: Request) -> tuple[int, int | None]:
        """(output tokens to allow, the prediction used or None). The app's own cap
        (:attr:`Request.output_cap`, whatever the provider calls it) always wins: the
        layer may lower it, never raise it."""
        output = self._output(request)
        return output.wanted, output.predicted

    def _output(self, request: Request) -> _Output:
        cap = request.output_cap
        if self.calibration is None:  # the prior as it is, where the app set no cap
            if cap is not None:  # concise mode's instruction still needs a soft budget
                return _Output(cap, None, prior=self.predict_max_tokens(request)
                               if self.concise else None)
            predicted = self.predict_max_tokens(request)
            if predicted is not None:
                return _Output(min(predicted, self.default_max_tokens), predicted)
            return _Output(self.default_max_tokens, None)
        prior = self.predict_max_tokens(request) or self.default_max_tokens
        key = calibration_key(request.model, self.calibration.route(request))
        state = self._calibration_state(key)
        bound = None if state is None else state.bound(prior)
        fallback = self.default_max_tokens if cap is None else cap
        if bound is None:  # warming up (or the store is down): the app's cap, or none
            return _Output(fallback, None, impose=bool(self.budgets), prior=prior, key=key)
        return _Output(min(bound, fallback), bound, prior=prior, key=key)

    def _calibration_state(self, key: str) -> CalibrationState | None:
        """The stored calibration of ``key`` (None when the store is down)."""
        seen = self._outage.begin()
        try:
            text = self.store.calibration([key]).get(key)  # type: ignore[union-attr]
        except Exception as exc:
            self._outage.failed(seen, exc, "read calibration")
            return None
        self._outage.ok(seen)
        return CalibrationState.from_json(text)

    @staticmethod
    def _room(budget: Budget, account: Account) -> tuple[int | None, int | None]:
        limit_nano = budget.limit_nano  # None exactly when max_usd is None
        nano = None if limit_nano is None else \
            limit_nano - account.spent_nano - account.reserved_nano
        tokens = None if budget.max_tokens is None else \
            budget.max_tokens - account.spent_tokens - account.reserved_tokens
        return nano, tokens

    @staticmethod
    def _affordable(room: tuple[int | None, int | None], prompt: int,
                    rates: tuple[Decimal, Decimal] | None, per_output: Decimal) -> int:
        """Most output tokens (``max_tokens``) that fit ``room`` after the prompt."""
        best = 10**12
        if room[1] is not None:
            best = min(best, int((room[1] - prompt) / per_output))
        if room[0] is not None and rates is not None:
            left = Decimal(room[0]) - math.ceil(prompt * rates[0] * NANO)
            best = min(best, int(left / (rates[1] * NANO)) if rates[1] > 0 else best)
        return best

    def _exceeded(self, budget: Budget, room: tuple[int | None, int | None],
                  cost: int | None, tokens: int, model: str) -> BudgetExceeded:
        if budget.max_usd is not None and cost is None:
            return BudgetExceeded(
                f"budget {budget.name!r} is in dollars but no price is known for {model!r}; "
                "add one with PriceTable(overrides={...}) or set unknown_price='allow'",
                budget=budget.name, limit=float(budget.max_usd), requested=0.0)
        if budget.max_usd is not None and cost is not None and room[0] is not None \
                and cost > room[0]:
            limit = float(budget.max_usd)
            return BudgetExceeded(
                f"budget {budget.name!r} ({budget.scope}, {budget.period}) has "
                f"${max(room[0], 0) / 1e9:.6f} left of ${limit:g}; this call may cost up to "
                f"${cost / 1e9:.6f} ({model}); lower max_tokens, use a cheaper model or raise "
                "the limit", budget=budget.name, limit=limit,
                spent=limit - room[0] / 1e9, requested=cost / 1e9)
        limit_t = float(budget.max_tokens or 0)
        left = room[1] if room[1] is not None else 0
        return BudgetExceeded(
            f"budget {budget.name!r} ({budget.scope}, {budget.period}) has {max(left, 0)} tokens "
            f"left of {budget.max_tokens}; this call may use up to {tokens}; lower max_tokens "
            "or raise the limit", budget=budget.name, limit=limit_t, spent=limit_t - left,
            requested=float(tokens))

    @staticmethod
    def _fits(budget: Budget, room: tuple[int | None, int | None], cost: int | None,
              tokens: int) -> bool:
        if room[1] is not None and tokens > room[1]:
            return False
        if budget.max_usd is not None:
            if cost is None:
                return budget.unknown_price == "allow"
            if room[0] is not None and cost > room[0]:
                return False
        return True

    def plan(self, request: Request, accounts: Mapping[str, Account], keys: Mapping[str, str],
             *, adjust: bool = True, probe: bool = False,
             output: _Output | None = None) -> Plan:
        """Decide model, ``max_tokens`` and claims for ``request`` given ``accounts``.

        ``adjust=False`` checks the call as it is (no clamping or routing:
        "clamp" and "route" budgets then refuse like "raise"). ``probe``: the call
        is the first on a model whose store has no overrun for it yet.
        """
        wanted = (output or self._output(request)).wanted
        routes: list[str] = []
        for budget in self.budgets:
            if budget.policy == "route":
                routes.extend(m for m in budget.route_to if m not in routes)
        candidates = [request.model] + ([m for m in routes if m != request.model] if adjust else [])
        for index, model in enumerate(candidates):
            billable = self._shape(request, model)
            prompt = self._prompt_tokens(request, model) + billable.extra_input
            overrun = self._overrun(accounts, model) or _MILLI
            per_output = Decimal(billable.copies * overrun) / _MILLI
            # price only when a dollar limit needs it (an unknown price warns)
            rates = self._billed_rates(
                self._rates(model, request.provider) if self._needs_price else None,
                billable, per_output)
            out = wanted
            if request.output_cap is None and billable.reasoning_headroom:
                out += billable.reasoning_headroom  # the cap set must leave room to reason
            clamped_from, warned, next_model = None, [], False
            for budget in self.budgets:
                account = accounts.get(keys.get(budget.name, ""), Account(""))
                room = self._room(budget, account)
                cost = self._cost_nano(rates, prompt, out)
                if self._fits(budget, room, cost, prompt + math.ceil(out * per_output)):
                    continue
                if budget.policy == "warn":
                    warned.append(budget.name)
                    continue
                if budget.policy == "clamp" and adjust and (
                        cost is not None or budget.max_usd is None):
                    affordable = self._affordable(room, prompt, rates, per_output)
                    if affordable >= budget.min_output_tokens:
                        clamped_from = clamped_from or out
                        out = min(out, affordable)
                        continue
                if budget.policy == "route" and index + 1 < len(candidates):
                    next_model = True
                    break
                raise self._exceeded(budget, room, cost,
                                     prompt + math.ceil(out * per_output), model)
            if next_model:
                continue
            cost = self._cost_nano(rates, prompt, out)
            tokens = prompt + math.ceil(out * per_output)
            claims = tuple(
                Claim(keys[b.name], cost or 0, tokens,
                      None if b.policy == "warn" or cost is None else b.limit_nano,
                      None if b.policy == "warn" else b.max_tokens)
                for b in self.budgets if b.name in keys
            )
            if probe and model == request.model:
                claims += (Claim(_PROBE + model, 0, 1),)
            return Plan(model, out, prompt, cost, claims, clamped_from,
                        request.model if model != request.model else None, tuple(warned),
                        output_bound=out * billable.copies, overrun_milli=overrun,
                        probe=probe and model == request.model)
        raise BudgetExceeded("no candidate model fits the budgets")  # unreachable: the last raises

    def _keys(self, request: Request) -> dict[str, str]:
        return {b.name: key for b in self.budgets if (key := b.key(request)) is not None}

    def _apply(self, request: Request, plan: Plan, reservation: str | None,
               predicted: int | None, output: _Output | None = None) -> Request:
        for name in plan.warned:
            warnings.warn(f"budget {name!r} is exceeded by this call (policy 'warn'); "
                          "the call goes on", TokenleanWarning, stacklevel=4)
        out = request
        if plan.model != request.model:
            out = replace(out, model=plan.model)
        cap = request.output_cap
        imposed = output is None or output.impose  # False: warming up, nothing to bound
        if self.set_max_tokens and (cap is None and imposed or
                                    cap is not None and plan.max_tokens < cap):
            out = out.with_output_cap(plan.max_tokens)  # lowered (or set where the app gave none)
        concise: dict[str, Any] = {}
        # the instruction's soft budget: the bound from the prediction; where there is none
        # (a calibrated layer warming up, or the app's own cap kept) the prior predictor's
        # figure, never above the cap the call goes out with
        soft = plan.max_tokens if predicted is not None else (
            min(output.prior, plan.max_tokens)
            if output is not None and output.prior is not None else None)
        if self.concise and soft is not None:  # only for the allowed task types
            out, concise = concise_policy(out, soft, self.concise_types)
        detail: dict[str, Any] = {
            **concise,
            "reservation": reservation or "",
            "max_tokens": plan.max_tokens,
            "prompt_tokens": plan.prompt_tokens,
            "reserved_usd": None if plan.cost_nano is None else plan.cost_nano / 1e9,
        }
        if predicted is not None:
            detail["predicted_max_tokens"] = predicted
            out = replace(out, metadata={**out.metadata, PREDICTED_MAX_TOKENS_KEY: predicted})
        if output is not None and output.key is not None:
            detail["calibration_key"] = output.key
            detail["prior_max_tokens"] = output.prior
            detail["calibrated_max_tokens"] = output.predicted  # None while warming up
        if plan.clamped_from is not None:
            detail["clamped_from"] = plan.clamped_from
        if plan.routed_from is not None:
            detail["routed_from"] = plan.routed_from
        if plan.warned:
            detail["over_budget"] = ",".join(plan.warned)
        if reservation:
            detail["output_bound"] = plan.output_bound
            detail["overrun_milli"] = plan.overrun_milli
            detail["probe"] = plan.probe
        return out.with_note(LayerNote(layer=self.name, detail=detail))

    def _calibration_keys(self, request: Request) -> list[str]:
        models = [request.model] + [m for b in self.budgets if b.policy == "route"
                                    for m in b.route_to]
        return [_OVERRUN + m for m in dict.fromkeys(models)] + [_PROBE + request.model]

    def _decide(self, request: Request, keys: Mapping[str, str], adjust: bool,
                wait: bool, accounts: Mapping[str, Account],
                output: _Output | None = None) -> Plan:
        """The plan inside the store's transaction. While no call on the model has been
        settled, the first is its probe, admitted alone: the others wait for it (up to
        ``probe_wait_s``), so a provider that ignores ``max_tokens`` overruns once
        before its overrun is reserved for."""
        probe = self._learns and self._overrun(accounts, request.model) is None
        if probe and accounts.get(_PROBE + request.model, Account("")).reserved_tokens > 0:
            if wait:
                raise _ProbeBusy(request.model)
            probe = False  # waited long enough: go on, reserved as if the cap holds
        return self.plan(request, accounts, keys, adjust=adjust, probe=probe, output=output)

    def reserve(self, request: Request, *, adjust: bool = True) -> Request:
        """Check and reserve; returns the request to send (with this layer's note)."""
        deadline, pause = time.monotonic() + self.probe_wait_s, _FIRST_PAUSE_S
        while (out := self._reserve_once(request, adjust, deadline)) is None:
            time.sleep(pause)  # another call is probing the model
            pause = min(pause * 2, _LAST_PAUSE_S)
        return out

    async def areserve(self, request: Request, *, adjust: bool = True) -> Request:
        """:meth:`reserve` for async callers: waits for a probe without holding a thread."""
        deadline, pause = time.monotonic() + self.probe_wait_s, _FIRST_PAUSE_S
        while (out := await asyncio.to_thread(self._reserve_once, request, adjust,
                                              deadline)) is None:
            await asyncio.sleep(pause)
            pause = min(pause * 2, _LAST_PAUSE_S)
        return out

    def _reserve_once(self, request: Request, adjust: bool, deadline: float) -> Request | None:
        """One try at reserving; None while another call probes the model."""
        keys = self._keys(request)
        output = self._output(request)  # outside the store's transaction (it reads the store)
        predicted = output.predicted
        if not keys or self.store is None:
            plan = self.plan(request, {}, keys, adjust=adjust, output=output)
            return self._apply(request, plan, None, predicted, output)
        reservation = uuid.uuid4().hex
        holder: list[Plan] = []
        store_keys = list(keys.values()) + (self._calibration_keys(request) if self._learns
                                            else [])

        def decide(accounts: Mapping[str, Account]) -> Sequence[Claim]:
            wait = time.monotonic() < deadline
            holder.append(self._decide(request, keys, adjust, wait, accounts, output))
            return holder[-1].claims

        seen = self._outage.begin()
        try:
            self.store.reserve(reservation, store_keys, decide)
        except _ProbeBusy:
            self._outage.ok(seen)
            return None
        except ClaimRejected as exc:  # cannot happen with one decide per transaction
            raise BudgetExceeded(f"budget key {exc} is full", budget=str(exc)) from None
        except TokenleanError:
            raise
        except Exception as exc:
            self._outage.failed(seen, exc, "reserve")
            out = self._apply(request, self.plan(request, {}, keys, adjust=adjust,
                                                 output=output), None, predicted, output)
            return out.with_note(LayerNote(layer=self.name, detail={"store": "down"}))
        self._outage.ok(seen)
        return self._apply(request, holder[-1], reservation, predicted, output)

    def _store_call(self, operation: str, call: Any, *args: Any) -> None:
        """A settle/release on the store; a failure is part of the outage, not the call's."""
        seen = self._outage.begin()
        try:
            call(*args)
        except Exception as exc:
            self._outage.failed(seen, exc, operation)
        else:
            self._outage.ok(seen)

    # ---- settling ----------------------------------------------------------

    def _note(self, request: Request) -> Mapping[str, Any] | None:
        for note in reversed(request.notes):
            if note.layer == self.name:
                return note.detail
        return None

    def actual_usage(self, request: Request, response: Response) -> Usage:
        """The response's usage; counted from the texts when the provider gave none."""
        if response.cached:
            return Usage()
        usage = response.usage
        raw = response.raw
        if isinstance(raw, Mapping) and isinstance(raw.get(CONTINUATION_KEY), Mapping):
            # a ContinuingProvider settled its continuations itself: only the first part is ours
            first = raw[CONTINUATION_KEY].get("first_usage")
            usage = first if isinstance(first, Usage) else usage
        if usage.input_tokens == 0 and usage.output_tokens == 0:
            detail = self._note(request) or {}
            prompt = int(detail.get("prompt_tokens") or self._prompt_tokens(request,
                                                                           request.model))
            output = count_tokens(response.text, model=self.count_model or request.model).tokens
            return Usage(input_tokens=prompt, output_tokens=max(output, 1))
        return usage

    def settle(self, request: Request, response: Response) -> None:
        detail = self._note(request)
        if detail is not None and detail.get("calibration_key") and not response.cached:
            self._learn_length(request, response, detail)
        if detail is None or not detail.get("reservation") or self.store is None:
            return
        usage = self.actual_usage(request, response)
        cost = None if response.cached else self.prices.price(
            usage, model=request.model, provider=request.provider)
        nano = 0 if cost is None else to_nano(cost.total_usd, up=True)
        overrun = self._observed_overrun(detail, usage) if not response.cached else None
        if overrun is not None and self._learns:  # before settling: the probe's waiters see it
            self._store_call("learn", getattr(self.store, "learn", None),
                             _OVERRUN + request.model, overrun)
        self._store_call("settle", self.store.settle, detail["reservation"], nano,
                         usage.total_tokens)

    def _learn_length(self, request: Request, response: Response,
                      detail: Mapping[str, Any]) -> None:
        """Teach the calibration of the call's (model, route) its answer's length (the
        whole answer's: continuations included; cut answers are censored)."""
        config = self.calibration
        if config is None or self.store is None:
            return
        actual = response.usage.output_tokens or count_tokens(
            response.text, model=self.count_model or request.model).tokens
        observation = Observation(
            prior=int(detail["prior_max_tokens"]), actual=actual,
            cut=response.finish_reason in CUT_REASONS, cap=request.output_cap,
            issued=detail.get("calibrated_max_tokens"))
        coverage = config.target(self.predictor)

        def update(text: str | None) -> str:
            return observe(CalibrationState.from_json(text), observation, warmup=config.warmup,
                           coverage=coverage, step=config.step).to_json()

        self._store_call("learn length", getattr(self.store, "update_calibration", None),
                         str(detail["calibration_key"]), update)

    @staticmethod
    def _observed_overrun(detail: Mapping[str, Any], usage: Usage) -> int | None:
        """The overrun to record (thousandths): the probe's outcome, or a larger overrun
        than the store knew; None when there is nothing new."""
        bound = int(detail.get("output_bound") or 0)
        if bound <= 0:
            return None
        seen = max(_MILLI, math.ceil(usage.output_tokens * _MILLI / bound))
        if detail.get("probe") or seen > int(detail.get("overrun_milli") or _MILLI):
            return seen
        return None

    def cancel(self, request: Request, exc: BaseException | None) -> None:
        detail = self._note(request)
        if detail is None or not detail.get("reservation") or self.store is None:
            return
        if isinstance(exc, _ABORTS) and self.on_abort == "charge":
            self._store_call("charge", self.store.charge_reserved, detail["reservation"])
        else:
            self._store_call("release", self.store.release, detail["reservation"])

    # ---- the layer contract --------------------------------------------------

    def process(self, request: Request) -> Request:
        return self.reserve(request)

    async def aprocess(self, request: Request) -> Request:
        return await self.areserve(request)

    def on_response(self, request: Request, response: Response) -> None:
        self.settle(request, response)

    async def aon_response(self, request: Request, response: Response) -> None:
        await asyncio.to_thread(self.settle, request, response)

    def on_error(self, request: Request, exc: BaseException | None) -> None:
        self.cancel(request, exc)

    async def aon_error(self, request: Request, exc: BaseException | None) -> None:
        # shielded: a cancelled task must still release or charge its reservation
        await asyncio.shield(asyncio.to_thread(self.cancel, request, exc))

    # ---- inspection ----------------------------------------------------------

    def remaining(self, request: Request) -> dict[str, dict[str, float | int | None]]:
        """Per budget: dollars and tokens left for a call like ``request``."""
        keys = self._keys(request)
        accounts = self.store.accounts(list(keys.values())) if keys and self.store else {}
        out: dict[str, dict[str, float | int | None]] = {}
        for budget in self.budgets:
            account = accounts.get(keys.get(budget.name, ""), Account(""))
            nano, tokens = self._room(budget, account)
            out[budget.name] = {"usd": None if nano is None else nano / 1e9, "tokens": tokens,
                                "spent_usd": account.spent_usd,
                                "reserved_usd": account.reserved_usd}
        return out
