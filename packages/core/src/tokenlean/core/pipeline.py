"""The layer contract and the pipeline that runs layers around a provider.

A **layer** is any object with a ``name`` and ``process(request)`` /
``aprocess(request)`` returning a new :class:`Request` -- or a
:class:`Response`, which answers the call without the provider (a cache hit).
A layer that must see the outcome (a cache storing answers, a budget settling
what was spent) also defines ``on_response(request, response)`` and may define
``on_error(request, exc)``, each with an ``a``-prefixed async twin. Each hook
receives the request as *that layer* returned it, not the one the provider
got: a cache (which returns a miss unchanged) stores under the key it looked
up; a budget settles the request it reserved for.

The pipeline measures what each layer saved (prompt tokens before minus
after, plus the output-token estimate a layer puts in a :class:`LayerNote`),
prices it, and appends one :class:`CallRecord` per call to the ledger, by the one
accounting path (:func:`tokenlean.core.call_record`: reported or estimated usage,
the price, a cache hit booked as a saving).

Failure policy: a :class:`TokenleanError` from a layer (budget exceeded, bad
input) reaches the caller. Any *other* exception from a layer or a hook is a
bug or an outage in tokenlean's own machinery: the pipeline warns
(:class:`TokenleanWarning`, one per failing step) and carries on as if that
layer were absent, so tokenlean never makes a call fail that would have
succeeded without it. A failing ledger warns once per outage
(:func:`tokenlean.core.write_record`).

Time budget: each step of a layer (``process`` or a hook) has one, the layer's
``time_budget_s`` attribute if it has one, else the pipeline's
``layer_time_budget_s`` (default :data:`DEFAULT_LAYER_TIME_BUDGET_S`; the first
step of a layer class in the process gets :data:`FIRST_CALL_TIME_BUDGET_S`,
as it may load a model). A step past its budget is treated like one that
raised: one warning, and the call goes on without that layer (the request it
would have changed passes through unchanged, an answer is not held back by
a hook). The step finishes in the background; if ``process`` then returns a
request, the layer gets ``on_error(that_request, TimeoutError)``, so what it
reserved meanwhile (a budget) is released. ``layer_time_budget_s=None`` runs
steps in the caller's thread, without a budget.

A hook may return a :class:`LayerNote` saying what it did with the answer (the
cache: why it did not store it); its ``detail`` is added to the layer's report
in the call's record.

Empty answers cut by length (:mod:`tokenlean.core._retry`): when a reasoning
model's reasoning used the whole cap and the answer came back empty with
``finish_reason == "length"``, the call is made **once** more with a larger cap
(never above the app's own cap nor the model's most output tokens), through
the layers again, so a budget admits the retry like any call. Both attempts
are booked in **one** record: the summed usage and cost of both
(``metadata["attempts"] == 2``, ``metadata["retried"] == "empty_by_length"``),
so every token billed is accounted wherever the record goes (ledger,
exporters, the framework cost handlers). An answer that stays empty (no room
to grow, the budget clamped the retry, or the retry was empty too) is returned
with ``finish_reason == "length"`` and ``metadata["empty_by_length"]`` saying
why (``app_cap``, ``model_max``, ``budget``, ``retry_empty``, ...). Streaming
does the same: the first stream yielded no text, so the retry's chunks follow
it in the same stream.
"""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import AsyncIterator, Callable, Generator, Iterator, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any, Protocol, runtime_checkable

from ._retry import EMPTY_BY_LENGTH, empty_by_length, retry_cap, retry_request
from ._time_budget import (
    DEFAULT_LAYER_TIME_BUDGET_S,
    FIRST_CALL_TIME_BUDGET_S,
    Overran,
    arun_within,
    run_within,
    when_done,
)
from .accounting import ObservedCall, awrite_record, call_record, combine_attempts, write_record
from .errors import ConfigError, TokenleanError, TokenleanWarning
from .prices import PriceTable, default_price_table
from .records import CallRecord, LayerReport
from .tokens import count_messages
from .types import Chunk, LayerNote, Request, Response

__all__ = [
    "DEFAULT_LAYER_TIME_BUDGET_S",
    "FIRST_CALL_TIME_BUDGET_S",
    "CallResult",
    "Layer",
    "Pipeline",
    "Provider",
    "StreamingProvider",
]


@runtime_checkable
class Layer(Protocol):
    """One cost-cutting step. ``process`` must not mutate its argument.

    Optional: ``time_budget_s`` (seconds each of its steps may take; see the
    module's "Time budget"), hooks ``on_response`` / ``on_error`` and their
    ``a``-prefixed twins.
    """

    name: str

    def process(self, request: Request) -> Request | Response: ...

    async def aprocess(self, request: Request) -> Request | Response: ...


@runtime_checkable
class Provider(Protocol):
    """Whatever answers a request: an API client, the local server, a framework model."""

    name: str

    def complete(self, request: Request) -> Response: ...

    async def acomplete(self, request: Request) -> Response: ...


@runtime_checkable
class StreamingProvider(Provider, Protocol):
    """A provider that can also stream; its last chunk carries the full response."""

    def stream(self, request: Request) -> Iterator[Chunk]: ...

    def astream(self, request: Request) -> AsyncIterator[Chunk]: ...


@dataclass(frozen=True, slots=True)
class CallResult:
    """The answer and the record of what it cost and saved."""

    response: Response
    record: CallRecord
    request: Request  # the request as the provider (or cache) saw it


class _Ledger(Protocol):
    def record(self, record: CallRecord) -> None: ...


def _warn(what: str, exc: BaseException) -> None:
    if isinstance(exc, Overran):
        message = (f"{what} {exc} and was skipped; the call continued without it (the step "
                   "goes on in the background; set the layer's time_budget_s to change it)")
    else:
        message = (f"{what} failed and was skipped ({type(exc).__name__}: {exc}); "
                   "the call continued without it")
    warnings.warn(message, TokenleanWarning, stacklevel=4)


# layer classes that finished a step in this process: their models are loaded
_warm: set[type] = set()


def _late_release(layer: Layer, over: Overran) -> None:
    """When an overrun ``process`` returns after all, tell the layer its request was
    not sent (a budget releases its reservation)."""
    def release(out: object) -> None:
        _warm.add(type(layer))
        hook = getattr(layer, "on_error", None)
        if isinstance(out, Request) and hook is not None:
            hook(out, TimeoutError(f"layer {layer.name!r} {over}; the call went on without it"))

    when_done(over.late, release)


def _merge_notes(reports: list[LayerReport], notes: Sequence[LayerNote]) -> list[LayerReport]:
    """The reports with the details hooks returned added to their layers' reports."""
    if not notes:
        return reports
    extra: dict[str, dict[str, Any]] = {}
    for note in notes:
        extra.setdefault(note.layer, {}).update(note.detail)
    return [replace(r, detail={**r.detail, **extra[r.layer]}) if r.layer in extra else r
            for r in reports]


def _with_chunks(response: Response, texts: list[str]) -> Response:
    """The streamed answer with the texts of the chunks it arrived in."""
    return response if response.chunks else replace(response, chunks=tuple(texts))


def _replay_texts(answer: Response) -> tuple[str, ...]:
    """A layer's answer streams in its original chunks when it kept them (and they
    add up to its text), else as one chunk."""
    if answer.chunks and "".join(answer.chunks) == answer.text:
        return answer.chunks
    return (answer.text,)


class Pipeline:
    """Runs ``layers`` in order, then ``provider`` unless a layer answered.

    ``count_model`` names the model whose tokenizer measures savings (default:
    each request's own model).
    """

    def __init__(self, *, provider: Provider, layers: Sequence[Layer] = (),
                 ledger: _Ledger | None = None, prices: PriceTable | None = None,
                 count_model: str | None = None,
                 clock: Callable[[], float] = time.perf_counter,
                 layer_time_budget_s: float | None = DEFAULT_LAYER_TIME_BUDGET_S) -> None:
        if layer_time_budget_s is not None and (
                isinstance(layer_time_budget_s, bool)
                or not isinstance(layer_time_budget_s, (int, float))
                or not 0 < layer_time_budget_s < float("inf")):
            raise ConfigError("layer_time_budget_s must be a positive number of seconds or None, "
                              f"got {layer_time_budget_s!r}")
        if not isinstance(provider, Provider):
            raise ConfigError("provider must have name, complete() and acomplete()")
        for layer in layers:
            if not isinstance(layer, Layer):
                raise ConfigError(f"{layer!r} is not a layer: it needs name, process(), aprocess()")
        names = [layer.name for layer in layers]
        if len(set(names)) != len(names):
            raise ConfigError(f"layer names must be unique, got {names}")
        self.provider = provider
        self.layers: tuple[Layer, ...] = tuple(layers)
        self.ledger = ledger
        self.prices = prices or default_price_table()
        self.count_model = count_model
        self.layer_time_budget_s = layer_time_budget_s
        self._clock = clock

    # ---- pure helpers shared by the sync and async paths -----------------

    def _budget(self, layer: Layer) -> float | None:
        """Seconds ``layer``'s next step may take (None: no budget)."""
        own = getattr(layer, "time_budget_s", None)
        if own is not None:
            return float(own)
        if self.layer_time_budget_s is None:
            return None
        if type(layer) not in _warm:
            return max(self.layer_time_budget_s, FIRST_CALL_TIME_BUDGET_S)
        return self.layer_time_budget_s

    def _prompt_tokens(self, request: Request) -> int:
        return count_messages(request.messages, model=self.count_model or request.model,
                              tools=request.tools).tokens

    def _rates(self, request: Request) -> tuple[Decimal, Decimal] | None:
        """USD per input token and per output token for the request's model."""
        if not self.layers:
            return None
        return self.prices.rates(model=request.model, provider=request.provider)

    def _report(self, layer_name: str, before: int, after: int, notes: Sequence[LayerNote],
                rates: tuple[Decimal, Decimal] | None) -> LayerReport:
        saved_out = sum(n.saved_output_tokens for n in notes)
        quality: dict[str, float] = {}
        detail: dict[str, Any] = {}
        for note in notes:
            quality.update(note.quality)
            detail.update(note.detail)
        saved_in = before - after
        saved_usd = None if rates is None else saved_in * rates[0] + saved_out * rates[1]
        return LayerReport(layer=layer_name, saved_input_tokens=saved_in,
                           saved_output_tokens=saved_out, saved_usd=saved_usd,
                           quality=quality, detail=detail)

    def _record(self, original: Request, final: Request, response: Response,
                reports: list[LayerReport], started: float, wall: float,
                answered_by: str | None) -> CallRecord:
        """The call's record, by the one accounting path (:mod:`tokenlean.core.accounting`):
        ``answered_by`` names the layer that answered (a cache hit), ``None`` if the
        provider did."""
        meta = final.metadata
        return call_record(ObservedCall(
            request_id=original.request_id, model=final.model, provider=final.provider,
            usage=response.usage, prompt=final.messages, tools=final.tools,
            answer=_answer_text(response), reasoning_text=response.reasoning_text,
            answered_by=answered_by,
            cache_score=response.cache_score, layers=reports, tenant=final.tenant,
            user=final.user, finish_reason=response.finish_reason,
            latency_s=self._clock() - started, started_at=wall,
            run_id=meta.get("run_id"), parent_run_id=meta.get("parent_run_id"),
            tags=tuple(meta.get("tags") or ()),
            metadata={k: v for k, v in meta.items() if k not in {"run_id", "parent_run_id", "tags"}
                      and isinstance(v, (str, int, float, bool))},
        ), prices=self.prices)

    def _apply(self, layer: Layer, current: Request, out: Request | Response, before: int | None,
               rates: tuple[Decimal, Decimal] | None, reports: list[LayerReport],
               ran: list[tuple[Layer, Request]]) -> tuple[Request, int | None, Response | None]:
        """Book one layer's result: (next request, its prompt tokens, answer if any)."""
        # hooks later see the request as this layer left it (a cache's miss leaves it
        # as it arrived, so the cache stores under the key it looked up)
        ran.append((layer, current if isinstance(out, Response) else out))
        if isinstance(out, Response):  # a hit: the accounting books it (see _record)
            return current, before, out
        if out.messages == current.messages:  # nothing to count: saved nothing
            reports.append(self._report(layer.name, 0, 0, new_notes(current, out, layer.name),
                                        rates))
            return out, before, None
        before = self._prompt_tokens(current) if before is None else before
        after = self._prompt_tokens(out)
        reports.append(self._report(layer.name, before, after,
                                    new_notes(current, out, layer.name), rates))
        return out, after, None

    def _write(self, record: CallRecord) -> None:
        write_record(self.ledger, record)  # an outage of the ledger never fails the call

    # ---- sync --------------------------------------------------------------

    def _run_layers(self, request: Request) -> tuple[Request, Response | None, list[LayerReport],
                                                     list[tuple[Layer, Request]]]:
        rates = self._rates(request)
        reports: list[LayerReport] = []
        ran: list[tuple[Layer, Request]] = []
        current = request
        before: int | None = None  # prompt tokens, counted once a layer changes the prompt
        for layer in self.layers:
            try:
                out = run_within(self._budget(layer), layer.process, current)
            except TokenleanError:
                self._fail(ran, None)
                raise
            except Exception as exc:
                self._skip(layer, exc)
                continue
            _warm.add(type(layer))
            current, before, answer = self._apply(layer, current, out, before, rates, reports, ran)
            if answer is not None:
                return current, answer, reports, ran
        return current, None, reports, ran

    @staticmethod
    def _skip(layer: Layer, exc: Exception) -> None:
        """``layer``'s ``process`` raised or overran: warn; the call goes on without it."""
        _warn(f"layer {layer.name!r}", exc)
        if isinstance(exc, Overran):
            _late_release(layer, exc)

    def _fail(self, ran: Sequence[tuple[Layer, Request]], exc: BaseException | None) -> None:
        """Tell each layer that ran, about the request it processed, that the call failed."""
        for layer, seen in reversed(ran):
            hook = getattr(layer, "on_error", None)
            if hook is not None:
                try:
                    run_within(self._budget(layer), hook, seen, exc)
                except Exception as hook_exc:
                    _warn(f"{layer.name}.on_error", hook_exc)

    def _after(self, ran: Sequence[tuple[Layer, Request]], response: Response) -> list[LayerNote]:
        """Each layer's ``on_response``; returns the notes they gave back."""
        notes: list[LayerNote] = []
        for layer, seen in reversed(ran):
            hook = getattr(layer, "on_response", None)
            if hook is not None:
                try:
                    note = run_within(self._budget(layer), hook, seen, response)
                except TokenleanError:
                    raise
                except Exception as exc:
                    _warn(f"{layer.name}.on_response", exc)
                    continue
                if isinstance(note, LayerNote):
                    notes.append(note)
        return notes

    def run(self, request: Request) -> CallResult:
        """Run one call through the layers and the provider (an empty answer cut by
        length is asked once more with a larger cap: see the module's docs)."""
        first = self._attempt(request)
        assert first is not None  # only a retry (floor given) can come back empty-handed
        cap, why = _retry_plan(request, first)
        again = None if cap is None else self._attempt(retry_request(request, cap),
                                                        floor=first.request.output_cap)
        result = _settled(first, again, why)
        self._write(result.record)
        return result

    def _attempt(self, request: Request, floor: int | None = None) -> CallResult | None:
        """One pass through the layers and the provider, its record not yet written.
        ``floor`` (a retry): ``None`` is returned, and the layers released, when the
        layers left the cap at or below it (a budget clamped the retry)."""
        started, wall = self._clock(), time.time()
        final, answer, reports, ran = self._run_layers(request)
        answered_by = _answerer(ran, answer)
        if answer is None and _no_room(final, floor):
            self._fail(ran, None)
            return None
        if answer is None:
            try:
                answer = self.provider.complete(final)
            except BaseException as exc:
                self._fail(ran, exc)
                raise
        reports = _merge_notes(reports, self._after(ran, answer))
        record = self._record(request, final, answer, reports, started, wall, answered_by)
        return CallResult(answer, record, final)

    def stream(self, request: Request) -> Iterator[Chunk]:
        """Stream one call; the last chunk carries the response (``chunk.response``) and
        its record (``chunk.record``). A layer's answer (cache hit) is replayed in the chunks the
        original stream had (``Response.chunks``), else as one chunk. A stream that ended
        empty by length is retried as :meth:`run` does: the retry's chunks follow."""
        first = yield from self._stream_attempt(request)
        assert first is not None  # only a retry (floor given) can come back empty-handed
        cap, why = _retry_plan(request, first)
        again = None
        if cap is not None:
            again = yield from self._stream_attempt(retry_request(request, cap),
                                                    floor=first.request.output_cap)
        result = _settled(first, again, why)
        self._write(result.record)
        yield Chunk(response=result.response, record=result.record)

    def _stream_attempt(self, request: Request, floor: int | None = None
                        ) -> Generator[Chunk, None, CallResult | None]:
        """One streamed pass (see :meth:`_attempt`): yields the text chunks, returns the
        result with its record not yet written."""
        started, wall = self._clock(), time.time()
        final, answer, reports, ran = self._run_layers(request)
        answered_by = _answerer(ran, answer)
        if answer is None and _no_room(final, floor):
            self._fail(ran, None)
            return None
        if answer is None:
            answer = yield from self._provider_stream(final, ran)
        else:
            for text in _replay_texts(answer):
                yield Chunk(text=text)
        reports = _merge_notes(reports, self._after(ran, answer))
        record = self._record(request, final, answer, reports, started, wall, answered_by)
        return CallResult(answer, record, final)

    def _provider_stream(self, request: Request, ran: Sequence[tuple[Layer, Request]]
                         ) -> Generator[Chunk, None, Response]:
        stream = getattr(self.provider, "stream", None)
        response: Response | None = None
        texts: list[str] = []
        try:
            if stream is None:
                response = self.provider.complete(request)
                yield Chunk(text=response.text)
                return response
            for chunk in stream(request):
                if chunk.response is not None:
                    response = chunk.response
                if chunk.text or chunk.raw is not None:
                    texts.append(chunk.text)
                    yield Chunk(text=chunk.text, raw=chunk.raw)
        except BaseException as exc:  # includes GeneratorExit when the consumer stops early
            self._fail(ran, exc)
            raise
        if response is None:
            err = TokenleanError(f"provider {self.provider.name!r} ended its stream "
                                 "without a final response (usage unknown)")
            self._fail(ran, err)
            raise err
        return _with_chunks(response, texts)

    # ---- async (same helpers, awaited layer calls) -------------------------

    async def _arun_layers(self, request: Request) -> tuple[
            Request, Response | None, list[LayerReport], list[tuple[Layer, Request]]]:
        rates = self._rates(request)
        reports: list[LayerReport] = []
        ran: list[tuple[Layer, Request]] = []
        current = request
        before: int | None = None  # prompt tokens, counted once a layer changes the prompt
        for layer in self.layers:
            try:
                out = await arun_within(self._budget(layer), layer.aprocess, current)
            except TokenleanError:
                await self._afail(ran, None)
                raise
            except Exception as exc:
                self._skip(layer, exc)
                continue
            _warm.add(type(layer))
            current, before, answer = self._apply(layer, current, out, before, rates, reports, ran)
            if answer is not None:
                return current, answer, reports, ran
        return current, None, reports, ran

    async def _afail(self, ran: Sequence[tuple[Layer, Request]],
                     exc: BaseException | None) -> None:
        for layer, seen in reversed(ran):
            hook = getattr(layer, "aon_error", None) or getattr(layer, "on_error", None)
            if hook is not None:
                try:
                    await arun_within(self._budget(layer), hook, seen, exc)
                except Exception as hook_exc:
                    _warn(f"{layer.name}.on_error", hook_exc)

    async def _aafter(self, ran: Sequence[tuple[Layer, Request]],
                      response: Response) -> list[LayerNote]:
        notes: list[LayerNote] = []
        for layer, seen in reversed(ran):
            hook = getattr(layer, "aon_response", None) or getattr(layer, "on_response", None)
            if hook is not None:
                try:
                    note = await arun_within(self._budget(layer), hook, seen, response)
                except TokenleanError:
                    raise
                except Exception as exc:
                    _warn(f"{layer.name}.on_response", exc)
                    continue
                if isinstance(note, LayerNote):
                    notes.append(note)
        return notes

    async def arun(self, request: Request) -> CallResult:
        """Async twin of :meth:`run`."""
        first = await self._aattempt(request)
        assert first is not None  # only a retry (floor given) can come back empty-handed
        cap, why = _retry_plan(request, first)
        again = None if cap is None else await self._aattempt(
            retry_request(request, cap), floor=first.request.output_cap)
        result = _settled(first, again, why)
        await self._awrite(result.record)
        return result

    async def _aattempt(self, request: Request, floor: int | None = None) -> CallResult | None:
        """Async twin of :meth:`_attempt`."""
        started, wall = self._clock(), time.time()
        final, answer, reports, ran = await self._arun_layers(request)
        answered_by = _answerer(ran, answer)
        if answer is None and _no_room(final, floor):
            await self._afail(ran, None)
            return None
        if answer is None:
            try:
                answer = await self.provider.acomplete(final)
            except BaseException as exc:
                await self._afail(ran, exc)
                raise
        reports = _merge_notes(reports, await self._aafter(ran, answer))
        record = self._record(request, final, answer, reports, started, wall, answered_by)
        return CallResult(answer, record, final)

    async def astream(self, request: Request) -> AsyncIterator[Chunk]:
        """Async twin of :meth:`stream`."""
        done: list[CallResult | None] = []
        async for chunk in self._astream_attempt(request, None, done):
            yield chunk
        first = done[0]
        assert first is not None  # only a retry (floor given) can come back empty-handed
        cap, why = _retry_plan(request, first)
        if cap is not None:
            async for chunk in self._astream_attempt(retry_request(request, cap),
                                                     first.request.output_cap, done):
                yield chunk
        result = _settled(first, done[1] if cap is not None else None, why)
        await self._awrite(result.record)
        yield Chunk(response=result.response, record=result.record)

    async def _astream_attempt(self, request: Request, floor: int | None,
                               done: list[CallResult | None]) -> AsyncIterator[Chunk]:
        """Async twin of :meth:`_stream_attempt`; appends its result to ``done``."""
        started, wall = self._clock(), time.time()
        final, answer, reports, ran = await self._arun_layers(request)
        answered_by = _answerer(ran, answer)
        if answer is None and _no_room(final, floor):
            await self._afail(ran, None)
            done.append(None)
            return
        if answer is None:
            astream = getattr(self.provider, "astream", None)
            try:
                if astream is None:
                    answer = await self.provider.acomplete(final)
                    yield Chunk(text=answer.text)
                else:
                    texts: list[str] = []
                    async for chunk in astream(final):
                        if chunk.response is not None:
                            answer = chunk.response
                        if chunk.text or chunk.raw is not None:
                            texts.append(chunk.text)
                            yield Chunk(text=chunk.text, raw=chunk.raw)
                    if answer is not None:
                        answer = _with_chunks(answer, texts)
            except BaseException as exc:
                await self._afail(ran, exc)
                raise
            if answer is None:
                err = TokenleanError(f"provider {self.provider.name!r} ended its stream "
                                     "without a final response (usage unknown)")
                await self._afail(ran, err)
                raise err
        else:
            for text in _replay_texts(answer):
                yield Chunk(text=text)
        reports = _merge_notes(reports, await self._aafter(ran, answer))
        record = self._record(request, final, answer, reports, started, wall, answered_by)
        done.append(CallResult(answer, record, final))

    async def _awrite(self, record: CallRecord) -> None:
        await awrite_record(self.ledger, record)


def _retry_plan(asked: Request, first: CallResult | None) -> tuple[int | None, str]:
    """``(cap, why)``: the cap to ask ``first`` again with (None: no retry), and why not
    (``""``: the answer was not empty by length)."""
    if first is None or not empty_by_length(first.response):
        return None, ""
    return retry_cap(asked, first.request, first.response)


def _no_room(final: Request, floor: int | None) -> bool:
    """A retry whose layers left no more room than the first attempt had."""
    cap = final.output_cap
    return floor is not None and cap is not None and cap <= floor


def _flagged(result: CallResult, why: str) -> CallResult:
    record = replace(result.record, metadata={**result.record.metadata, EMPTY_BY_LENGTH: why})
    return replace(result, record=record)


def _settled(first: CallResult | None, again: CallResult | None, why: str) -> CallResult:
    """The call's result: ``first``, flagged when it is empty by length (``why``: why it
    was not retried), or both attempts in one record."""
    assert first is not None  # the first attempt is never held back
    if not why:
        return first
    if why != "retry":
        return _flagged(first, why)
    if again is None:
        return _flagged(first, "budget")  # the layers left the retry no larger cap
    combined = CallResult(again.response,
                          combine_attempts(first.record, again.record, reason=EMPTY_BY_LENGTH),
                          again.request)
    return _flagged(combined, "retry_empty") if empty_by_length(again.response) else combined


def _answerer(ran: Sequence[tuple[Layer, Request]], answer: Response | None) -> str | None:
    """The layer that answered the call (the last that ran, when the layers returned
    an answer), ``None`` when the provider is to answer."""
    return None if answer is None or not ran else ran[-1][0].name


def _answer_text(response: Response) -> str:
    """What the model produced, for counting when it reported no usage: the text and
    any tool calls (as the JSON they arrive in)."""
    if not response.tool_calls:
        return response.text
    calls = json.dumps([dict(c) for c in response.tool_calls], separators=(",", ":"))
    return response.text + calls


def new_notes(before: Request, after: Request, layer: str) -> list[LayerNote]:
    """Notes ``layer`` added between ``before`` and ``after``."""
    return [n for n in after.notes[len(before.notes):] if n.layer == layer]

