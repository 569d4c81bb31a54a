"""LlamaIndex instrumentation handlers that price every LLM call.

:class:`TokenleanEventHandler` listens to the LLM events of
``llama_index.core.instrumentation`` (chat / completion start, in-progress
(streaming) and end events), reads the usage the provider reported, prices it
with :func:`tokenlean.core.price` and writes one
:class:`~tokenlean.core.CallRecord` per call to a ledger or any sink.

:class:`TokenleanSpanHandler` tracks the open spans so each record knows its
parent (``parent_run_id``: the span that called the LLM, e.g. the synthesizer)
and its trace root, and so that a call nested in another LLM call (a
``CustomLLM``'s ``chat`` runs its ``complete``) is counted once.

``instrument()`` attaches both to the root dispatcher.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.instrumentation.dispatcher import Dispatcher
from llama_index.core.instrumentation.event_handlers import BaseEventHandler
from llama_index.core.instrumentation.events import BaseEvent
from llama_index.core.instrumentation.events.llm import (
    LLMChatEndEvent,
    LLMChatInProgressEvent,
    LLMChatStartEvent,
    LLMCompletionEndEvent,
    LLMCompletionInProgressEvent,
    LLMCompletionStartEvent,
)
from llama_index.core.instrumentation.span import SimpleSpan
from llama_index.core.instrumentation.span_handlers import BaseSpanHandler
from pydantic import ConfigDict, Field, PrivateAttr

from tokenlean.core import (
    CallRecord,
    LayerReport,
    PriceTable,
    Usage,
    count_messages,
    count_tokens,
)
from tokenlean.core._tally import SinkOutage, cache_hit, check_handler_options, tally
from tokenlean.core.prices import default_price_table

from ._convert import messages_from_llama, model_from_dict, usage_from_response

__all__ = ["TokenleanEventHandler", "TokenleanSpanHandler", "instrument"]

_MAX_OPEN_RUNS = 10_000
_COUNT_MODEL = "gpt-4o"  # tokenizer for estimates when the model is unknown (flagged approximate)


class TokenleanSpanHandler(BaseSpanHandler[SimpleSpan]):
    """Keeps the *open* spans (id -> parent id) and nothing else: no history grows."""

    model_config = ConfigDict(arbitrary_types_allowed=True)
    _drop_listeners: list[Callable[[str], None]] = PrivateAttr(default_factory=list)

    @classmethod
    def class_name(cls) -> str:
        return "TokenleanSpanHandler"

    def new_span(self, id_: str, bound_args: Any, instance: Any | None = None,
                 parent_span_id: str | None = None, tags: dict[str, Any] | None = None,
                 **kwargs: Any) -> SimpleSpan | None:
        return SimpleSpan(id_=id_, parent_id=parent_span_id, tags=tags or {})

    def prepare_to_exit_span(self, id_: str, bound_args: Any, instance: Any | None = None,
                             result: Any | None = None, **kwargs: Any) -> SimpleSpan | None:
        return self.open_spans.get(id_)

    def prepare_to_drop_span(self, id_: str, bound_args: Any, instance: Any | None = None,
                             err: BaseException | None = None,
                             **kwargs: Any) -> SimpleSpan | None:
        for listener in list(self._drop_listeners):
            listener(id_)
        return self.open_spans.get(id_)

    def parent_of(self, span_id: str | None) -> str | None:
        span = self.open_spans.get(span_id) if span_id else None
        return None if span is None else span.parent_id

    def ancestors(self, span_id: str | None) -> list[str]:
        """Open ancestors of ``span_id``, nearest first."""
        out: list[str] = []
        current = self.parent_of(span_id)
        while current is not None and current not in out:
            out.append(current)
            current = self.parent_of(current)
        return out


@dataclass
class _Run:
    kind: str  # "chat" | "completion"
    started: float
    wall: float
    model: str | None
    messages: tuple[Any, ...] = ()
    prompt: str = ""
    stream_usage: Usage | None = None
    child_usage: Usage | None = None
    outer: str | None = None  # span id of the LLM call this one is nested in
    parent: str | None = None
    root: str | None = None


class TokenleanEventHandler(BaseEventHandler):
    """Prices each LlamaIndex LLM call and writes one :class:`CallRecord` per call.

    ``ledger`` is any object with ``record(record)`` (a tokenlean ledger, an
    exporter, a ``Fanout``) or ``None`` for totals only. When the provider
    reports no usage (``MockLLM``, some local servers) the tokens are counted
    with :func:`tokenlean.core.count_tokens` and the record says so
    (``metadata["usage_source"] == "estimated"``).

    Attributes ``calls``, ``input_tokens``, ``output_tokens``, ``cost_usd`` ...
    are running totals.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    ledger: Any = None
    prices: Any = None
    tenant: str = "default"
    keep_records: bool = False
    span_handler: TokenleanSpanHandler | None = None
    records: list[CallRecord] = Field(default_factory=list)

    calls: int = 0
    cached_calls: int = 0
    unpriced_calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    cost_usd: Decimal = Decimal(0)
    saved_usd: Decimal = Decimal(0)

    _runs: OrderedDict[str, _Run] = PrivateAttr(default_factory=OrderedDict)
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)
    _outage: SinkOutage = PrivateAttr(default_factory=SinkOutage)
    _attached: list[tuple[Dispatcher, Any]] = PrivateAttr(default_factory=list)

    def __init__(self, **data: Any) -> None:
        # checked before pydantic, so the caller gets a ConfigError, not a ValidationError
        check_handler_options(data.get("ledger"), data.get("prices"), data.get("tenant", "x"))
        super().__init__(**data)

    def model_post_init(self, context: Any) -> None:
        if self.span_handler is not None:
            self.span_handler._drop_listeners.append(self._drop)

    @classmethod
    def class_name(cls) -> str:
        return "TokenleanEventHandler"

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    # ---- events ----------------------------------------------------------------

    def handle(self, event: BaseEvent, **kwargs: Any) -> None:
        if isinstance(event, (LLMChatStartEvent, LLMCompletionStartEvent)):
            self._start(event)
        elif isinstance(event, (LLMChatInProgressEvent, LLMCompletionInProgressEvent)):
            self._progress(event)
        elif isinstance(event, (LLMChatEndEvent, LLMCompletionEndEvent)):
            record = self._end(event)
            if record is not None:
                self._write(record)

    def _start(self, event: LLMChatStartEvent | LLMCompletionStartEvent) -> None:
        if isinstance(event, LLMChatStartEvent):
            kind, messages, prompt = "chat", tuple(event.messages), ""
        else:
            kind, messages, prompt = "completion", (), event.prompt
        span_id = event.span_id or event.id_
        with self._lock:
            ancestors = self.span_handler.ancestors(span_id) if self.span_handler else []
            outer = next((a for a in ancestors if a in self._runs), None)
            run = _Run(kind=kind, started=time.perf_counter(),
                       wall=time.time(), model=model_from_dict(event.model_dict),
                       messages=messages, prompt=prompt, outer=outer,
                       parent=ancestors[0] if ancestors else None,
                       root=ancestors[-1] if ancestors else None)
            self._runs[span_id] = run
            while len(self._runs) > _MAX_OPEN_RUNS:  # ends never seen (no span handler)
                self._runs.popitem(last=False)

    def _progress(self, event: LLMChatInProgressEvent | LLMCompletionInProgressEvent) -> None:
        usage = usage_from_response(event.response)
        if usage is None:
            return
        with self._lock:
            run = self._runs.get(event.span_id or "")
            if run is not None:
                run.stream_usage = usage  # providers send call totals, the latest wins

    def _drop(self, span_id: str) -> None:
        with self._lock:
            self._runs.pop(span_id, None)

    def _end(self, event: LLMChatEndEvent | LLMCompletionEndEvent) -> CallRecord | None:
        span_id = event.span_id or event.id_
        with self._lock:
            run = self._runs.pop(span_id, None)
        chat = isinstance(event, LLMChatEndEvent)
        if run is None:
            run = _Run(kind="chat" if chat else "completion", started=time.perf_counter(),
                       wall=time.time(), model=None,
                       messages=tuple(getattr(event, "messages", ()) or ()),
                       prompt=getattr(event, "prompt", ""))
        response = event.response
        usage = usage_from_response(response) or run.stream_usage or run.child_usage
        source = "reported" if usage is not None else "estimated"
        exact = True
        if usage is None:
            usage, exact = self._estimate(run, response)
        if run.outer is not None:  # nested in another LLM call: that one is the call
            with self._lock:
                outer = self._runs.get(run.outer)
                if outer is not None and source == "reported":
                    outer.child_usage = usage
            return None
        model = run.model or "unknown"
        table = self.prices or default_price_table()
        lean_meta = (getattr(response, "additional_kwargs", None) or {}).get("tokenlean") or {}
        cached = bool(lean_meta.get("cached"))
        layers: tuple[LayerReport, ...] = ()
        if cached:  # lean()'s cache answered: nothing was spent, the whole call was saved
            saved, usage = usage, Usage()
            if run.model:
                usage, layers = cache_hit(table, saved, model=model, provider=None,
                                          layer=next(iter(lean_meta.get("saved_tokens") or {}),
                                                     "cache"))
        cost = table.price(usage, model=model) if run.model else None
        meta: dict[str, Any] = {"usage_source": source, "llm_event": run.kind}
        if not exact:
            meta["usage_exact"] = False
        if run.root and run.root != run.parent:
            meta["trace_span_id"] = run.root
        record = CallRecord(
            request_id=span_id, model=model, provider=None if cost is None else cost.provider,
            tenant=self.tenant, usage=usage, cost=cost, cached=cached, layers=layers,
            latency_s=time.perf_counter() - run.started, started_at=run.wall,
            run_id=span_id, parent_run_id=run.parent,
            tags=tuple(str(k) for k in (event.tags or {})), metadata=meta)
        with self._lock:
            self._add(record)
        return record

    @staticmethod
    def _estimate(run: _Run, response: Any) -> tuple[Usage, bool]:
        """Count tokens ourselves when the provider reported none."""
        model = run.model or _COUNT_MODEL
        if run.kind == "chat" and run.messages:
            prompt = count_messages(messages_from_llama(run.messages), model=model)
        else:
            prompt = count_tokens(run.prompt or "", model=model)
        text = ""
        if response is not None:
            message = getattr(response, "message", None)
            text = (getattr(message, "content", None) if message is not None
                    else getattr(response, "text", None)) or ""
        completion = count_tokens(str(text), model=model)
        exact = prompt.exact and completion.exact and run.model is not None
        return Usage(input_tokens=prompt.tokens, output_tokens=completion.tokens), exact

    def _add(self, record: CallRecord) -> None:
        tally(self, record)
        if self.keep_records:
            self.records.append(record)

    def _write(self, record: CallRecord) -> None:
        self._outage.write(self.ledger, record)  # an outage of the ledger never fails the call

    # ---- attach / detach ---------------------------------------------------------

    def attach(self, dispatcher: Dispatcher | None = None) -> TokenleanEventHandler:
        """Add this handler (and its span handler) to ``dispatcher`` (default: the root)."""
        attach_handlers(self, self.span_handler, self._attached, dispatcher)
        return self

    def detach(self) -> None:
        """Remove everything :meth:`attach` added."""
        detach_handlers(self._attached)


def attach_handlers(handler: BaseEventHandler, span_handler: BaseSpanHandler[Any] | None,
                    attached: list[tuple[Any, Any]], dispatcher: Dispatcher | None) -> None:
    """Add an event handler (and its span handler) to ``dispatcher``; note them in ``attached``."""
    target = dispatcher or get_dispatcher()
    target.add_event_handler(handler)
    attached.append((target, handler))
    if span_handler is not None:
        target.add_span_handler(span_handler)
        attached.append((target, span_handler))


def detach_handlers(attached: list[tuple[Any, Any]]) -> None:
    """Remove what :func:`attach_handlers` noted in ``attached``."""
    while attached:
        target, handler = attached.pop()
        handlers = (target.span_handlers if isinstance(handler, BaseSpanHandler)
                    else target.event_handlers)
        if handler in handlers:
            handlers.remove(handler)


def instrument(*, ledger: Any = None, prices: PriceTable | None = None, tenant: str = "default",
               keep_records: bool = False,
               dispatcher: Dispatcher | None = None) -> TokenleanEventHandler:
    """Price every LlamaIndex LLM call from now on; returns the attached handler
    (``handler.detach()`` to stop)::

        handler = instrument(ledger=open_ledger())
        index.as_query_engine().query("...")
        print(handler.cost_usd, handler.total_tokens)
    """
    handler = TokenleanEventHandler(ledger=ledger, prices=prices, tenant=tenant,
                                    keep_records=keep_records,
                                    span_handler=TokenleanSpanHandler())
    return handler.attach(dispatcher)
