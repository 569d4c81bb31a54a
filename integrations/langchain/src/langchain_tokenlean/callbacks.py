"""Cost callbacks for any LangChain chat model: usage, dollars, one ledger row per call.

``TokenleanCostHandler`` (and its async twin ``AsyncTokenleanCostHandler``)
read what every LangChain chat model reports -- ``usage_metadata`` with cache
reads / writes and reasoning tokens, ``response_metadata["model_name"]``,
streamed usage chunks -- price it with :func:`tokenlean.core.price` (the
genai-prices database, cache reads at the cached rate) and write one
:class:`~tokenlean.core.CallRecord` per call to a ledger or any sink (an
exporter, a :class:`tokenlean.exporters.Fanout`).

``with tokenlean_costs() as c:`` is ``get_openai_callback`` for every provider.

Rules:

* Streamed usage is kept: when the final message carries no usage, the usage
  of the streamed chunks is summed instead. When nothing reports usage the
  prompt and answer are counted with tokenlean's tokenizers
  (``metadata["usage_source"] == "estimated"``): a real call is never free.
* A LangChain cache hit (``set_llm_cache``) is not spend: its record has cost
  0, ``cached=True`` and a ``langchain_cache`` layer report whose savings are
  the cached answer's usage priced at today's rates. A hit of a ``lean()``
  model's own cache layer is recorded the same way, under that layer's name.
* A ``lean()`` model's answer that this handler already counted through the
  wrapped model's own run is not counted twice.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
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
    LayerReport,
    PriceTable,
    TokenleanError,
    Usage,
    count_messages,
    count_tokens,
)
from tokenlean.core._tally import SinkOutage, Tally, cache_hit, check_handler_options
from tokenlean.core.prices import default_price_table

from ._convert import from_lc_messages, usage_from_lc

__all__ = ["AsyncTokenleanCostHandler", "TokenleanCostHandler", "tokenlean_costs"]

CACHE_LAYER = "langchain_cache"
_TENANT_KEYS = ("tokenlean_tenant", "tenant", "tenant_id")
_USER_KEYS = ("tokenlean_user", "user_id", "user", "langfuse_user_id")
_SEEN_LIMIT = 4096


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
    chunk_usage: Usage = field(default_factory=Usage)
    chunks_with_usage: int = 0
    prompt: Any = None  # the run's LangChain messages (chat) or prompt string (LLM)


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


def _estimate(prompt: Any, response: LLMResult, model: str) -> tuple[Usage, bool] | None:
    """Count the prompt and the answer with tokenlean's tokenizers (``None`` if we cannot)."""
    if prompt is None:
        return None
    texts = []
    for batch in response.generations:
        for gen in batch[:1]:
            message = getattr(gen, "message", None)
            text = getattr(message, "text", None) if message is not None else gen.text
            texts.append(text if isinstance(text, str) else str(getattr(message, "content", "")))
    try:
        counted = (count_tokens(prompt, model=model) if isinstance(prompt, str)
                   else count_messages(from_lc_messages(prompt), model=model))
        answer = count_tokens("".join(texts), model=model)
    except TokenleanError:  # a message type without a chat role, say
        return None
    return (Usage(input_tokens=counted.tokens, output_tokens=answer.tokens),
            counted.exact and answer.exact)


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
        return float(self.cost_usd)

    def __repr__(self) -> str:
        return (f"Tokens Used: {self.total_tokens}\n"
                f"\tPrompt Tokens: {self.input_tokens} (cached: {self.cache_read_tokens})\n"
                f"\tCompletion Tokens: {self.output_tokens} (reasoning: {self.reasoning_tokens})\n"
                f"Calls: {self.calls} (cache hits: {self.cached_calls}, "
                f"unpriced: {self.unpriced_calls})\n"
                f"Total Cost (USD): ${self.cost_usd:.6f}\nSaved (USD): ${self.saved_usd:.6f}")


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
        self._seen_messages: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()
        self._outage = SinkOutage()

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

    def _error(self, run_id: UUID) -> None:
        with self._lock:
            self._runs.pop(run_id, None)

    def _end(self, response: LLMResult, run_id: UUID) -> CallRecord | None:
        """Build the call's record, add it to the totals; ``None`` if not to be counted."""
        with self._lock:
            run = self._runs.pop(run_id, None)
        if run is None:  # an end without a start (handler attached mid-run)
            run = _Run(started=time.perf_counter(), wall=time.time(), model=None, provider=None,
                       tenant=self.tenant, user=None, tags=(), metadata={}, parent_run_id=None)
        message, usage_md = _message_of(response)
        response_meta = dict(getattr(message, "response_metadata", None) or {})
        lean_meta = response_meta.get("tokenlean") or {}
        message_id = getattr(message, "id", None)
        if lean_meta and not lean_meta.get("cached") and message_id:
            with self._lock:
                if message_id in self._seen_messages:
                    return None  # the wrapped model's own run was already counted
        usage, source = self._usage(response, run, usage_md)
        model = (response_meta.get("model_name") or response_meta.get("model") or run.model
                 or "unknown")
        extra: dict[str, Any] = {}
        if not usage.total_tokens:  # nothing reported: count it ourselves, never call it free
            estimate = _estimate(run.prompt, response, model)
            if estimate is not None:
                usage, exact = estimate
                source = "estimated"
                if not exact:
                    extra["usage_exact"] = False
        cached = bool(lean_meta.get("cached")) or (
            usage_md is not None and "total_cost" in usage_md and not usage_md["total_cost"])
        cache_layer = CACHE_LAYER
        if lean_meta.get("cached"):  # a tokenlean layer (lean()'s cache) answered
            cache_layer = next(iter(lean_meta.get("saved_tokens") or {}), "cache")
        record = self._record(run, run_id, usage, source, model, cached, response_meta,
                              cache_layer, extra)
        with self._lock:
            if message_id:
                self._seen_messages[message_id] = None
                while len(self._seen_messages) > _SEEN_LIMIT:
                    self._seen_messages.popitem(last=False)
            self.add(record)
            if self.keep_records:
                self.records.append(record)
        return record

    def _usage(self, response: LLMResult, run: _Run,
               usage_md: Mapping[str, Any] | None) -> tuple[Usage, str]:
        if usage_md:
            return usage_from_lc(usage_md), "usage_metadata"
        if run.chunks_with_usage:
            return run.chunk_usage, "stream_chunks"
        token_usage = (response.llm_output or {}).get("token_usage") or (
            response.llm_output or {}).get("usage")
        if isinstance(token_usage, Mapping) and token_usage:
            return Usage.from_openai(token_usage), "llm_output"
        return Usage(), "none"

    def _record(self, run: _Run, run_id: UUID, usage: Usage, source: str, model: str,
                cached: bool, response_meta: Mapping[str, Any], cache_layer: str,
                extra: Mapping[str, Any]) -> CallRecord:
        provider = run.provider or response_meta.get("model_provider")
        layers: tuple[LayerReport, ...] = ()
        billed = usage
        if cached:  # the cache answered: nothing was spent, the whole call was saved
            billed, layers = cache_hit(self.prices, usage, model=model, provider=provider,
                                       layer=cache_layer)
        cost = self.prices.price(billed, model=model, provider=provider)
        finish = str(response_meta.get("finish_reason") or response_meta.get("stop_reason")
                     or "stop")
        return CallRecord(
            request_id=str(run_id), model=model, provider=provider or (
                None if cost is None else cost.provider),
            tenant=run.tenant, user=None if run.user is None else str(run.user),
            usage=billed, cost=cost, cached=cached, finish_reason=finish,
            latency_s=time.perf_counter() - run.started, started_at=run.wall, layers=layers,
            run_id=str(run_id), parent_run_id=run.parent_run_id, tags=run.tags,
            metadata={**run.metadata, **extra, "usage_source": source},
        )

    # ---- the sink -------------------------------------------------------------

    def _write(self, record: CallRecord) -> None:
        self._outage.write(self.ledger, record)

    async def _awrite(self, record: CallRecord) -> None:
        await self._outage.awrite(self.ledger, record)


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
        record = self._end(response, run_id)
        if record is not None:
            self._write(record)

    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self._error(run_id)


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
        record = self._end(response, run_id)
        if record is not None and self.ledger is not None:
            await self._awrite(record)

    async def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self._error(run_id)


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
