"""Cost callbacks for any LangChain chat model: usage, dollars, one ledger row per call.

``TokenleanCostHandler`` (and its async twin ``AsyncTokenleanCostHandler``)
read what every LangChain chat model reports -- ``usage_metadata`` with cache
reads / writes and reasoning tokens, ``response_metadata["model_name"]``,
streamed usage chunks -- and book each call through tokenlean's one accounting
path (:func:`tokenlean.core.call_record`): priced with the genai-prices
database, estimated with tokenlean's tokenizer when nothing was reported, one
:class:`~tokenlean.core.CallRecord` per call to a ledger or any sink (an
exporter, a :class:`tokenlean.exporters.Fanout`), one warning per sink outage.

``with tokenlean_costs() as c:`` is ``get_openai_callback`` for every provider.

Rules:

* Streamed usage is kept: when the final message carries no usage, the usage
  of the streamed chunks is summed instead (``usage_source="streamed"``). When
  nothing reports usage the prompt and answer are counted
  (``usage_source="estimated"``): a real call is never free.
* A LangChain cache hit (``set_llm_cache``) is not spend: it is booked as a hit
  of the ``langchain_cache`` layer, the way every cache hit is booked.
* A ``lean()`` model's call is booked once, as ``lean()``'s pipeline booked it
  (the record its answer carries): the model and price it was given, its layers'
  savings, its cache hits. The wrapped model's own run inside it is not counted
  again.
* A cost nobody can price is unknown: ``cost_usd`` is ``None`` and the summary
  says "unknown", never $0.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from langchain_core.callbacks import AsyncCallbackHandler, BaseCallbackHandler
from langchain_core.messages import BaseMessage
from langchain_core.outputs import ChatGeneration, LLMResult
from langchain_core.tracers.context import register_configure_hook

from tokenlean.core import (
    CallRecord,
    ObservedCall,
    PriceTable,
    TokenleanError,
    Usage,
    awrite_record,
    call_record,
    write_record,
)
from tokenlean.core._tally import Tally, check_handler_options, usd_text
from tokenlean.core.prices import default_price_table

from ._convert import from_lc_messages, usage_from_lc

__all__ = ["AsyncTokenleanCostHandler", "TokenleanCostHandler", "tokenlean_costs"]

CACHE_LAYER = "langchain_cache"
LEAN_PROVIDER = "tokenlean"  # the ls_provider of a lean() model's runs
_TENANT_KEYS = ("tokenlean_tenant", "tenant", "tenant_id")
_USER_KEYS = ("tokenlean_user", "user_id", "user", "langfuse_user_id")


@dataclass
class _Run:
    started: float
    wall: float
    model: str | None
    provider: str | None
    tenant: str
    user: str | None
    tags: tuple[str, ...]
    metadata: dict[str, Any]
    parent_run_id: str | None
    lean: bool = False  # a lean() model's run: its pipeline books the call
    chunk_usage: Usage = field(default_factory=Usage)
    chunks_with_usage: int = 0
    prompt: Any = None  # the run's LangChain messages (chat) or prompt string (LLM)


@dataclass
class _Held:
    """A run that ended while lean() runs were open: held until it is known whether
    it was the wrapped model's run inside one of them (then lean() books it)."""

    record: CallRecord
    waiting_for: set[UUID]


def _first(mapping: Mapping[str, Any], keys: Sequence[str]) -> Any:
    for key in keys:
        value = mapping.get(key)
        if value:
            return value
    return None


def _primitive(metadata: Mapping[str, Any]) -> dict[str, Any]:
    skip = {*_TENANT_KEYS, *_USER_KEYS}
    return {k: v for k, v in metadata.items()
            if k not in skip and isinstance(v, (str, int, float, bool))}


def _model_from_start(serialized: Mapping[str, Any] | None, metadata: Mapping[str, Any],
                      params: Mapping[str, Any]) -> str | None:
    kwargs = (serialized or {}).get("kwargs") or {}
    return (metadata.get("ls_model_name") or params.get("model") or params.get("model_name")
            or kwargs.get("model") or kwargs.get("model_name") or None)


def _message_of(response: LLMResult) -> tuple[BaseMessage | None, Mapping[str, Any] | None]:
    """The first generated message that reports usage (``n>1`` generations
    repeat the same call-level usage), else the first message."""
    first: BaseMessage | None = None
    for batch in response.generations:
        for gen in batch:
            if not isinstance(gen, ChatGeneration):
                continue
            first = first or gen.message
            usage = getattr(gen.message, "usage_metadata", None)
            if usage:
                return gen.message, usage
    return first, None


def _answer_text(response: LLMResult) -> str:
    """The first generation's text (what an estimate counts)."""
    for batch in response.generations:
        for gen in batch[:1]:
            message = getattr(gen, "message", None)
            text = getattr(message, "text", None) if message is not None else gen.text
            return text if isinstance(text, str) else str(getattr(message, "content", ""))
    return ""


def _prompt(run: _Run) -> Any:
    """The run's prompt as the accounting counts it (``None`` if it cannot be read)."""
    if run.prompt is None or isinstance(run.prompt, str):
        return run.prompt
    try:
        return from_lc_messages(run.prompt)
    except TokenleanError:  # a message type without a chat role, say
        return None


class _Totals(Tally):
    """Running sums, shared by both handlers (``get_openai_callback``-style names too)."""

    # get_openai_callback names, for drop-in use
    @property
    def prompt_tokens(self) -> int:
        return self.input_tokens

    @property
    def completion_tokens(self) -> int:
        return self.output_tokens

    @property
    def prompt_tokens_cached(self) -> int:
        return self.cache_read_tokens

    @property
    def successful_requests(self) -> int:
        return self.calls

    @property
    def total_cost(self) -> float:
        """Dollars as a float; NaN (unknown, never 0.0) when a call had no known price."""
        cost = self.cost_usd
        return float("nan") if cost is None else float(cost)

    def __repr__(self) -> str:
        cost = usd_text(self.cost_usd, priced=self.priced_cost_usd,
                        unpriced_calls=self.unpriced_calls, calls=self.calls)
        saved = ("unknown (a saving had no known price)" if self.saved_usd is None
                 else f"${self.saved_usd:.6f}")
        return (f"Tokens Used: {self.total_tokens}\n"
                f"\tPrompt Tokens: {self.input_tokens} (cached: {self.cache_read_tokens})\n"
                f"\tCompletion Tokens: {self.output_tokens} (reasoning: {self.reasoning_tokens})\n"
                f"Calls: {self.calls} (cache hits: {self.cached_calls}, "
                f"unpriced: {self.unpriced_calls})\n"
                f"Total Cost (USD): {cost}\nSaved (USD): {saved}")


class _CostCore(_Totals):
    """State and pure logic both handlers share; no I/O except through the sink."""

    def __init__(self, *, ledger: Any = None, prices: PriceTable | None = None,
                 tenant: str = "default", keep_records: bool = False) -> None:
        Tally.__init__(self)
        check_handler_options(ledger, prices, tenant)
        self.ledger = ledger
        self.prices = prices or default_price_table()
        self.tenant = tenant
        self.keep_records = keep_records
        self.records: list[CallRecord] = []
        self._runs: dict[UUID, _Run] = {}
        self._held: dict[str, _Held] = {}  # message id -> a run that may be inside a lean()
        self._lock = threading.Lock()

    # ---- events -> state ----------------------------------------------------

    def _start(self, serialized: dict[str, Any] | None, prompt: Any, run_id: UUID,
               parent_run_id: UUID | None, tags: list[str] | None,
               metadata: dict[str, Any] | None, kwargs: Mapping[str, Any]) -> None:
        metadata = dict(metadata or {})
        params = kwargs.get("invocation_params") or {}
        run = _Run(
            started=time.perf_counter(), wall=time.time(),
            model=_model_from_start(serialized, metadata, params),
            provider=metadata.get("ls_provider"),
            tenant=str(_first(metadata, _TENANT_KEYS) or self.tenant),
            user=_first(metadata, _USER_KEYS),
            tags=tuple(tags or ()), metadata=_primitive(metadata),
            parent_run_id=None if parent_run_id is None else str(parent_run_id),
            lean=metadata.get("ls_provider") == LEAN_PROVIDER,
            prompt=prompt,
        )
        with self._lock:
            self._runs[run_id] = run

    def _chunk(self, run_id: UUID, chunk: Any) -> None:
        message = getattr(chunk, "message", None)
        usage = getattr(message, "usage_metadata", None)
        if not usage:
            return
        with self._lock:
            run = self._runs.get(run_id)
            if run is not None:
                run.chunk_usage = run.chunk_usage + usage_from_lc(usage)
                run.chunks_with_usage += 1

    def _error(self, run_id: UUID) -> list[CallRecord]:
        """A run failed: nothing to book for it; returns the held records it releases."""
        with self._lock:
            run = self._runs.pop(run_id, None)
            return self._release(run_id) if run is not None and run.lean else []

    def _end(self, response: LLMResult, run_id: UUID) -> list[CallRecord]:
        """Book the run: returns the records to write now (none, its own, held ones)."""
        with self._lock:
            run = self._runs.pop(run_id, None)
            parent = self._runs.get(UUID(run.parent_run_id)) if run and run.parent_run_id \
                else None
        if run is None:  # an end without a start (handler attached mid-run)
            run = _Run(started=time.perf_counter(), wall=time.time(), model=None, provider=None,
                       tenant=self.tenant, user=None, tags=(), metadata={}, parent_run_id=None)
        if parent is not None and parent.lean:
            return []  # the wrapped model's run inside a lean() call: lean() books the call
        message, usage_md = _message_of(response)
        response_meta = dict(getattr(message, "response_metadata", None) or {})
        lean_meta = response_meta.get("tokenlean") or {}
        record = self._book(run, run_id, response, message, usage_md, response_meta, lean_meta)
        message_id = getattr(message, "id", None)
        with self._lock:
            if run.lean:
                out = self._release(run_id, claimed=message_id)
            else:
                open_lean = {rid for rid, r in self._runs.items() if r.lean}
                if open_lean and message_id:  # maybe the wrapped model's run of one of them
                    self._held[message_id] = _Held(record, open_lean)
                    return []
                out = []
            self._count(record)
        return [*out, record]

    def _release(self, lean_run: UUID, claimed: str | None = None) -> list[CallRecord]:
        """A lean() run ended (its record books its wrapped model's run, ``claimed``):
        the held runs no open lean() run can claim any more are booked now. Call
        under the lock."""
        self._held.pop(claimed or "", None)
        out = []
        for message_id, held in list(self._held.items()):
            held.waiting_for.discard(lean_run)
            if not held.waiting_for:
                del self._held[message_id]
                self._count(held.record)
                out.append(held.record)
        return out

    def _count(self, record: CallRecord) -> None:
        self.add(record)
        if self.keep_records:
            self.records.append(record)

    def _book(self, run: _Run, run_id: UUID, response: LLMResult, message: Any,
              usage_md: Mapping[str, Any] | None, response_meta: Mapping[str, Any],
              lean_meta: Mapping[str, Any]) -> CallRecord:
        """The run's record: lean()'s own when its answer carries one, else the one
        accounting path's from what the run reported."""
        usage, source = self._usage(response, run, usage_md)
        model = run.model if run.lean else (response_meta.get("model_name")
                                            or response_meta.get("model") or run.model)
        answered_by = None
        if lean_meta.get("cached"):  # a tokenlean layer (lean()'s cache) answered
            answered_by = next(iter(lean_meta.get("saved_tokens") or {}), "cache")
        elif usage_md is not None and "total_cost" in usage_md and not usage_md["total_cost"]:
            answered_by = CACHE_LAYER  # LangChain's cache marks its hits with total_cost 0
        observed = ObservedCall(
            request_id=str(run_id), model=model,
            provider=run.provider or response_meta.get("model_provider"),
            usage=usage, usage_source=source, prompt=_prompt(run),
            answer=_answer_text(response), answered_by=answered_by,
            cache_score=lean_meta.get("cache_score"), tenant=run.tenant,
            user=None if run.user is None else str(run.user),
            finish_reason=str(response_meta.get("finish_reason")
                              or response_meta.get("stop_reason") or "stop"),
            started_at=run.wall, latency_s=time.perf_counter() - run.started,
            run_id=str(run_id), parent_run_id=run.parent_run_id, tags=run.tags,
            metadata=run.metadata)
        booked = lean_meta.get("record")
        return call_record(observed, prices=self.prices, booked=CallRecord.from_dict(booked)
                           if isinstance(booked, Mapping) else None)

    @staticmethod
    def _usage(response: LLMResult, run: _Run,
               usage_md: Mapping[str, Any] | None) -> tuple[Usage | None, Any]:
        """What the run reported: the final message's usage, else its streamed chunks',
        else the provider's ``llm_output`` (``None``: nothing, the accounting counts)."""
        if usage_md:
            return usage_from_lc(usage_md), "reported"
        if run.chunks_with_usage:
            return run.chunk_usage, "streamed"
        token_usage = (response.llm_output or {}).get("token_usage") or (
            response.llm_output or {}).get("usage")
        if isinstance(token_usage, Mapping) and token_usage:
            return Usage.from_openai(token_usage), "reported"
        return None, "reported"

    # ---- the sink: the one outage policy ----------------------------------------

    def _write(self, records: Sequence[CallRecord]) -> None:
        for record in records:
            write_record(self.ledger, record)

    async def _awrite(self, records: Sequence[CallRecord]) -> None:
        for record in records:
            await awrite_record(self.ledger, record)


class TokenleanCostHandler(_CostCore, BaseCallbackHandler):
    """Prices every chat-model call and writes one :class:`CallRecord` per call.

    ``ledger`` is any object with ``record(record)`` (a ledger from
    :func:`tokenlean.core.open_ledger`, an exporter, a ``Fanout``); ``None``
    keeps totals only. Tenant and user come from the run's metadata
    (``tenant`` / ``user_id``), else ``tenant=``. The handler's attributes
    (``calls``, ``input_tokens``, ``cost_usd``, ``saved_usd``, ...) are running
    totals.
    """

    raise_error = False
    run_inline = True

    def __init__(self, *, ledger: Any = None, prices: PriceTable | None = None,
                 tenant: str = "default", keep_records: bool = False) -> None:
        _CostCore.__init__(self, ledger=ledger, prices=prices, tenant=tenant,
                           keep_records=keep_records)

    def on_chat_model_start(self, serialized: dict[str, Any], messages: list[list[BaseMessage]],
                            *, run_id: UUID, parent_run_id: UUID | None = None,
                            tags: list[str] | None = None, metadata: dict[str, Any] | None = None,
                            **kwargs: Any) -> None:
        self._start(serialized, messages[0] if messages else None, run_id, parent_run_id, tags,
                    metadata, kwargs)

    def on_llm_start(self, serialized: dict[str, Any], prompts: list[str], *, run_id: UUID,
                     parent_run_id: UUID | None = None, tags: list[str] | None = None,
                     metadata: dict[str, Any] | None = None, **kwargs: Any) -> None:
        self._start(serialized, prompts[0] if prompts else None, run_id, parent_run_id, tags,
                    metadata, kwargs)

    def on_llm_new_token(self, token: Any, *, chunk: Any = None, run_id: UUID,
                         **kwargs: Any) -> None:
        self._chunk(run_id, chunk)

    def on_llm_end(self, response: LLMResult, *, run_id: UUID, **kwargs: Any) -> None:
        self._write(self._end(response, run_id))

    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self._write(self._error(run_id))


class AsyncTokenleanCostHandler(_CostCore, AsyncCallbackHandler):
    """Async twin of :class:`TokenleanCostHandler`: awaits the sink's ``arecord``."""

    raise_error = False
    run_inline = True

    def __init__(self, *, ledger: Any = None, prices: PriceTable | None = None,
                 tenant: str = "default", keep_records: bool = False) -> None:
        _CostCore.__init__(self, ledger=ledger, prices=prices, tenant=tenant,
                           keep_records=keep_records)

    async def on_chat_model_start(self, serialized: dict[str, Any],
                                  messages: list[list[BaseMessage]], *, run_id: UUID,
                                  parent_run_id: UUID | None = None,
                                  tags: list[str] | None = None,
                                  metadata: dict[str, Any] | None = None, **kwargs: Any) -> None:
        self._start(serialized, messages[0] if messages else None, run_id, parent_run_id, tags,
                    metadata, kwargs)

    async def on_llm_start(self, serialized: dict[str, Any], prompts: list[str], *,
                           run_id: UUID, parent_run_id: UUID | None = None,
                           tags: list[str] | None = None, metadata: dict[str, Any] | None = None,
                           **kwargs: Any) -> None:
        self._start(serialized, prompts[0] if prompts else None, run_id, parent_run_id, tags,
                    metadata, kwargs)

    async def on_llm_new_token(self, token: Any, *, chunk: Any = None, run_id: UUID,
                               **kwargs: Any) -> None:
        self._chunk(run_id, chunk)

    async def on_llm_end(self, response: LLMResult, *, run_id: UUID, **kwargs: Any) -> None:
        await self._awrite(self._end(response, run_id))

    async def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        await self._awrite(self._error(run_id))


_costs_var: ContextVar[TokenleanCostHandler | None] = ContextVar("tokenlean_costs", default=None)
register_configure_hook(_costs_var, True)


@contextmanager
def tokenlean_costs(*, ledger: Any = None, prices: PriceTable | None = None,
                    tenant: str = "default") -> Iterator[TokenleanCostHandler]:
    """Count every LangChain model call in the block, any provider::

        with tokenlean_costs() as c:
            chain.invoke(...)
        print(c.total_tokens, c.cost_usd, c.calls)

    The handler keeps the block's records in ``c.records``. A nested block
    counts its calls in its own totals *and* adds them to the enclosing one's
    when it exits.
    """
    handler = TokenleanCostHandler(ledger=ledger, prices=prices, tenant=tenant,
                                   keep_records=True)
    parent = _costs_var.get()
    token = _costs_var.set(handler)
    try:
        yield handler
    finally:
        _costs_var.reset(token)
        if parent is not None:
            with parent._lock:
                parent.merge(handler)
                parent.records.extend(handler.records)
