"""One accounting path: an observed model call becomes its :class:`CallRecord`, and
the record reaches its sink under one outage policy.

Everything that books a call goes through here: :class:`~tokenlean.core.Pipeline`
(so ``lean()``, the agent middleware, the server and the audit's replay), the
LangChain cost handler and the LlamaIndex instrumentation handler. An adapter
describes what it saw as an :class:`ObservedCall`; :func:`call_record` applies
the rules; :func:`write_record` / :func:`awrite_record` deliver it.

The rules:

* **Usage** is what the provider reported: on its answer, or summed over its
  streamed chunks (``usage_source`` ``"reported"`` / ``"streamed"``). When no
  usage was reported (every count zero), the prompt and the answer are counted
  with :func:`estimate_usage`, the one fallback: tokenlean's tokenizer for the
  call's model (tiktoken for OpenAI models, a registered tokenizer, else
  ``cl100k_base`` flagged approximate; ``metadata["usage_exact"] = False``)
  and OpenAI's chat framing. ``usage_source`` is then ``"estimated"``. A real
  call is never booked as free.
* **Reasoning tokens** are output tokens (billed at the output rate) kept apart
  in ``Usage.reasoning_tokens``: OpenAI's ``completion_tokens_details.reasoning_tokens``,
  Anthropic's ``output_tokens_details.thinking_tokens``. Where the provider
  reports output but not its reasoning share, and the answer showed its
  reasoning (Anthropic's ``thinking`` blocks: ``reasoning_text``), the share is
  counted from that text with the same tokenizer (at most the output tokens;
  ``metadata["reasoning_source"] = "estimated"``, ``reasoning_exact`` saying
  whether the tokenizer is exact). With no usage at all the thinking text is
  counted as output too.
* **Price**: :meth:`PriceTable.price`; ``None`` (unknown, never $0) when the
  model has no known price or is not known at all.
* **A cache hit** (``answered_by``: the layer or framework cache that answered)
  spent nothing: zero usage and a *known* $0 cost (``Cost.source ==
  "cache hit"``), whatever the model. The answering layer's report saves the
  call it replaced: the usage the cached answer reported when it was first
  answered (estimated as above when it kept none), priced at today's rates
  (``None`` when unknown), with the hit's similarity as its quality.
* **A failing sink** (ledger, exporter) never fails the call: its records are
  dropped with one :class:`TokenleanWarning` per outage
  (:class:`~tokenlean.core.outage.Outage`). The outage belongs to the sink
  object, so every pipeline and handler that writes to one sink shares it.
"""

from __future__ import annotations

import inspect
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any, Literal

from .errors import ConfigError, TokenleanError
from .outage import Outage
from .prices import PriceTable, default_price_table
from .records import CallRecord, LayerReport
from .tokens import count_messages, count_tokens
from .types import Cost, Message, Usage

__all__ = [
    "CACHE_HIT_SOURCE",
    "ObservedCall",
    "awrite_record",
    "call_record",
    "check_sink",
    "combine_attempts",
    "estimate_usage",
    "write_record",
]

CACHE_HIT_SOURCE = "cache hit"  # Cost.source of a hit: nothing was spent, a known $0
UNKNOWN_MODEL = "unknown"  # CallRecord.model when nobody named the model

UsageSource = Literal["reported", "streamed"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ObservedCall:
    """What an adapter saw of one model call, before any accounting rule applies.

    ``usage`` is what the provider reported (``None`` or all zero: nothing);
    ``prompt`` (chat messages, or a completion prompt string), ``tools`` and
    ``answer`` are what :func:`estimate_usage` counts when nothing was
    reported. ``answered_by`` names the cache (a layer, LangChain's cache) that
    answered instead of the model; ``layers`` are the savings measured before
    the call (the pipeline's per-layer reports).
    """

    request_id: str
    model: str | None
    provider: str | None = None
    usage: Usage | None = None
    usage_source: UsageSource = "reported"
    prompt: Sequence[Message | Mapping[str, Any]] | str | None = None
    tools: Sequence[Mapping[str, Any]] = ()
    answer: str = ""
    reasoning_text: str = ""
    answered_by: str | None = None
    cache_score: float | None = None
    layers: Sequence[LayerReport] = ()
    tenant: str = "default"
    user: str | None = None
    finish_reason: str = "stop"
    started_at: float = field(default_factory=time.time)
    latency_s: float = 0.0
    run_id: str | None = None
    parent_run_id: str | None = None
    tags: Sequence[str] = ()
    metadata: Mapping[str, Any] = field(default_factory=dict)


def estimate_usage(prompt: Sequence[Message | Mapping[str, Any]] | str | None, answer: str, *,
                   model: str | None,
                   tools: Sequence[Mapping[str, Any]] = ()) -> tuple[Usage, bool] | None:
    """Usage nobody reported, counted: ``(usage, exact)``, or ``None`` when there is
    nothing to count.

    Chat prompts are counted as OpenAI bills them (:func:`count_messages`), a
    completion prompt as plain text, the answer as plain text, all with the
    tokenizer tokenlean uses for ``model`` (``cl100k_base``, approximate, for an
    unknown or unnamed model). ``exact`` is False for an approximation.
    """
    name = model or UNKNOWN_MODEL
    try:
        if prompt is None or (not isinstance(prompt, str) and not prompt):
            counted_in, exact_in = 0, False
        elif isinstance(prompt, str):
            count = count_tokens(prompt, model=name)
            counted_in, exact_in = count.tokens, count.exact
        else:
            count = count_messages(prompt, model=name, tools=tools)
            counted_in, exact_in = count.tokens, count.exact
        out = count_tokens(answer, model=name)
    except TokenleanError:  # a message the counter cannot read (a role without a chat role)
        return None
    if not counted_in and not out.tokens:
        return None
    return Usage(input_tokens=counted_in, output_tokens=out.tokens), exact_in and out.exact


def call_record(call: ObservedCall, *, prices: PriceTable | None = None,
                booked: CallRecord | None = None) -> CallRecord:
    """The :class:`CallRecord` of an observed call (the rules are in the module docs).

    ``booked``: the record a pipeline already made for this call (a ``lean()``
    model's answer carries it). Its accounting (model, usage, cost, cache hit,
    layer savings) is kept, so a handler books the call exactly as the pipeline
    did; the identity (request and run ids, tenant, user, tags, timing) and the
    metadata come from ``call``, as for any call that handler sees.
    """
    if not isinstance(call, ObservedCall):
        raise ConfigError(f"call_record needs an ObservedCall, got {type(call).__name__}")
    if booked is not None:
        return replace(booked, request_id=call.request_id, tenant=call.tenant,
                       user=call.user if call.user is not None else booked.user,
                       started_at=call.started_at, latency_s=call.latency_s,
                       run_id=call.run_id, parent_run_id=call.parent_run_id,
                       tags=tuple(call.tags), metadata={**booked.metadata, **call.metadata})
    table = prices or default_price_table()
    model = call.model or UNKNOWN_MODEL
    usage, source = call.usage, str(call.usage_source)
    meta = dict(call.metadata)
    if usage is None or not usage.total_tokens:
        estimate = estimate_usage(call.prompt, call.answer, model=call.model, tools=call.tools)
        usage, source = (Usage(), "none") if estimate is None else (estimate[0], "estimated")
        if estimate is not None and not estimate[1]:
            meta["usage_exact"] = False
    meta["usage_source"] = source
    usage = _with_reasoning(usage, call.reasoning_text, model, meta,
                            billed=source not in {"estimated", "none"})
    layers = tuple(call.layers)
    if call.answered_by is not None:
        cost: Cost | None = Cost(input_usd=Decimal(0), output_usd=Decimal(0), model=model,
                                 provider=call.provider, source=CACHE_HIT_SOURCE)
        layers += (_hit_report(call.answered_by, usage, call, table),)
        usage = Usage()
    else:
        cost = None if call.model is None else table.price(usage, model=model,
                                                           provider=call.provider)
    return CallRecord(
        request_id=call.request_id, model=model,
        provider=call.provider or (None if cost is None else cost.provider),
        tenant=call.tenant, user=call.user, usage=usage, cost=cost,
        cached=call.answered_by is not None, cache_score=call.cache_score,
        finish_reason=call.finish_reason, latency_s=call.latency_s, started_at=call.started_at,
        layers=layers, run_id=call.run_id, parent_run_id=call.parent_run_id,
        tags=tuple(call.tags), metadata=meta)


def _with_reasoning(usage: Usage, text: str, model: str, meta: dict[str, Any], *,
                    billed: bool) -> Usage:
    """``usage`` with its reasoning share counted from ``text`` (the thinking the answer
    showed) when the provider did not report it apart. ``billed``: the provider reported
    the output (the thinking is inside it); else the thinking is added to the estimate."""
    if usage.reasoning_tokens or not text:
        return usage
    count = count_tokens(text, model=model)
    meta["reasoning_source"] = "estimated"
    meta["reasoning_exact"] = count.exact
    if billed:
        return replace(usage, reasoning_tokens=min(count.tokens, usage.output_tokens))
    return replace(usage, output_tokens=usage.output_tokens + count.tokens,
                   reasoning_tokens=count.tokens)


def _sum_costs(first: Cost | None, second: Cost | None) -> Cost | None:
    if first is None or second is None:
        return None
    return replace(second, input_usd=first.input_usd + second.input_usd,
                   output_usd=first.output_usd + second.output_usd)


def combine_attempts(first: CallRecord, second: CallRecord, *, reason: str) -> CallRecord:
    """One record for a call the pipeline made twice (a retry, ``reason``): every token
    both attempts were billed for, the sum of their costs (unknown if either is), the
    second attempt's answer, model and layer reports. A second attempt a cache answered
    cost nothing: the record is the first attempt's spend, not a hit."""
    cost = first.cost if second.cached else _sum_costs(first.cost, second.cost)
    meta = {**second.metadata, "attempts": int(first.metadata.get("attempts", 1)) + 1,
            "retried": reason, "first_attempt_usage_source": first.metadata.get("usage_source"),
            "first_attempt_finish_reason": first.finish_reason}
    return replace(second, request_id=first.request_id, usage=first.usage + second.usage,
                   cost=cost, cached=False, started_at=first.started_at,
                   latency_s=first.latency_s + second.latency_s, metadata=meta)


def _hit_report(layer: str, replaced: Usage, call: ObservedCall,
                table: PriceTable) -> LayerReport:
    """The answering layer saved the whole call it replaced, at today's rates."""
    would_cost = None if call.model is None else table.price(replaced, model=call.model,
                                                             provider=call.provider)
    quality = {} if call.cache_score is None else {"similarity": float(call.cache_score)}
    return LayerReport(layer=layer, saved_input_tokens=replaced.input_tokens,
                       saved_output_tokens=replaced.output_tokens,
                       saved_usd=None if would_cost is None else would_cost.total_usd,
                       quality=quality)


# ---- the sink, under one outage policy ------------------------------------------------


def check_sink(sink: Any, option: str = "ledger") -> None:
    """``ConfigError`` naming ``option`` unless ``sink`` is ``None`` or has ``record()``."""
    if sink is not None and not callable(getattr(sink, "record", None)):
        raise ConfigError(f"{option} must have a record(record) method (a ledger, an "
                          f"exporter or a Fanout), got {type(sink).__name__}")


def sink_name(sink: Any) -> str:
    return str(getattr(sink, "name", None) or type(sink).__name__)


_lock = threading.Lock()
_outages: dict[int, Outage] = {}  # id(sink) -> its outage, dropped with the sink
_unreferenceable: OrderedDict[int, Outage] = OrderedDict()  # sinks without weak references
_UNREFERENCEABLE_LIMIT = 1024


def sink_outage(sink: Any) -> Outage:
    """The outage state of ``sink``, shared by everything that writes to it."""
    key = id(sink)
    with _lock:
        outage = _outages.get(key) or _unreferenceable.get(key)
        if outage is not None:
            return outage
        outage = Outage(f"tokenlean sink {sink_name(sink)!r}",
                        "its call records are dropped until it recovers (one warning per "
                        "outage); the calls are unaffected")
        try:
            weakref.finalize(sink, _forget, key)
        except TypeError:  # no weak references: keep the latest few
            _unreferenceable[key] = outage
            while len(_unreferenceable) > _UNREFERENCEABLE_LIMIT:
                _unreferenceable.popitem(last=False)
        else:
            _outages[key] = outage
        return outage


def _forget(key: int) -> None:
    with _lock:
        _outages.pop(key, None)


def write_record(sink: Any, record: CallRecord) -> None:
    """``sink.record(record)``; a failure warns once per outage of that sink, never raises."""
    if sink is None:
        return
    outage = sink_outage(sink)
    seen = outage.begin()
    try:
        sink.record(record)
    except Exception as exc:
        outage.failed(seen, exc, "write")
    else:
        outage.ok(seen)


async def awrite_record(sink: Any, record: CallRecord) -> None:
    """Async twin of :func:`write_record`: awaits ``sink.arecord`` when it has one."""
    if sink is None:
        return
    arecord = getattr(sink, "arecord", None)
    if arecord is None:
        write_record(sink, record)
        return
    outage = sink_outage(sink)
    seen = outage.begin()
    try:
        result = arecord(record)
        if inspect.isawaitable(result):
            await result
    except Exception as exc:
        outage.failed(seen, exc, "write")
    else:
        outage.ok(seen)
