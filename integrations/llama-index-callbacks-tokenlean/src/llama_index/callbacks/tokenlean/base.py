"""LlamaIndex instrumentation handlers that price every LLM call.

:class:`TokenleanEventHandler` listens to the LLM events of
``llama_index.core.instrumentation`` (chat / completion start, in-progress
(streaming) and end events), reads the usage the provider reported and books
each call through tokenlean's one accounting path
(:func:`tokenlean.core.call_record`): priced, estimated when nothing was
reported, one :class:`~tokenlean.core.CallRecord` per call to a ledger or any
sink, one warning per sink outage. A ``lean()`` LLM's call is booked as its
pipeline booked it (the record its answer carries).

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
from collections.abc import Callable, Mapping
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
    ObservedCall,
    PriceTable,
    Usage,
    call_record,
    write_record,
)
from tokenlean.core._tally import Tally, check_handler_options

from ._convert import messages_from_llama, model_from_dict, usage_from_response

__all__ = ["TokenleanEventHandler", "TokenleanSpanHandler", "instrument"]

_MAX_OPEN_RUNS = 10_000


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
    stream_usage: Usage | None = None  # usage seen on a streamed piece (the latest wins)
    child_usage: Usage | None = None  # usage a nested LLM call reported
    outer: str | None = None  # span id of the LLM call this one is nested in
    parent: str | None = None
    root: str | None = None


class TokenleanEventHandler(BaseEventHandler):
    """Prices each LlamaIndex LLM call and writes one :class:`CallRecord` per call.

    ``ledger`` is any object with ``record(record)`` (a tokenlean ledger, an
    exporter, a ``Fanout``) or ``None`` for totals only. When the provider
    reports no usage (``MockLLM``, some local servers) the tokens are counted
    with tokenlean's tokenizer (:func:`tokenlean.core.estimate_usage`) and the
    record says so (``metadata["usage_source"] == "estimated"``).

    Attributes ``calls``, ``input_tokens``, ``output_tokens``, ``cost_usd`` ...
    are running totals; ``cost_usd`` is ``None`` (unknown, never $0) once a
    call had no known price (``priced_cost_usd`` sums the priced ones).
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    ledger: Any = None
    prices: Any = None
    tenant: str = "default"
    keep_records: bool = False
    span_handler: TokenleanSpanHandler | None = None
    records: list[CallRecord] = Field(default_factory=list)

    _totals: Tally = PrivateAttr(default_factory=Tally)
    _runs: OrderedDict[str, _Run] = PrivateAttr(default_factory=OrderedDict)
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)
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

    # ---- running totals (a Tally, as every cost handler keeps them) ---------------

    @property
    def calls(self) -> int:
        return self._totals.calls

    @property
    def cached_calls(self) -> int:
        return self._totals.cached_calls

    @property
    def unpriced_calls(self) -> int:
        return self._totals.unpriced_calls

    @property
    def input_tokens(self) -> int:
        return self._totals.input_tokens

    @property
    def output_tokens(self) -> int:
        return self._totals.output_tokens

    @property
    def cache_read_tokens(self) -> int:
        return self._totals.cache_read_tokens

    @property
    def cache_write_tokens(self) -> int:
        return self._totals.cache_write_tokens

    @property
    def reasoning_tokens(self) -> int:
        return self._totals.reasoning_tokens

    @property
    def total_tokens(self) -> int:
        return self._totals.total_tokens

    @property
    def cost_usd(self) -> Decimal | None:
        return self._totals.cost_usd

    @property
    def priced_cost_usd(self) -> Decimal:
        return self._totals.priced_cost_usd

    @property
    def saved_usd(self) -> Decimal | None:
        return self._totals.saved_usd

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
        usage = usage_from_response(response)
        streamed = usage is None and run.stream_usage is not None
        usage = usage or run.stream_usage or run.child_usage
        if run.outer is not None:  # nested in another LLM call: that one is the call
            with self._lock:
                outer = self._runs.get(run.outer)
                if outer is not None and usage is not None:
                    outer.child_usage = usage
            return None
        record = self._book(run, span_id, event, response, usage,
                            "streamed" if streamed else "reported")
        with self._lock:
            self._add(record)
        return record

    def _book(self, run: _Run, span_id: str, event: LLMChatEndEvent | LLMCompletionEndEvent,
              response: Any, usage: Usage | None, source: Any) -> CallRecord:
        """The call's record: lean()'s own when its answer carries one, else the one
        accounting path's from what the events reported."""
        meta: dict[str, Any] = {"llm_event": run.kind}
        if run.root and run.root != run.parent:
            meta["trace_span_id"] = run.root
        lean_meta = (getattr(response, "additional_kwargs", None) or {}).get("tokenlean") or {}
        answered_by = None
        if lean_meta.get("cached"):  # lean()'s cache answered
            answered_by = next(iter(lean_meta.get("saved_tokens") or {}), "cache")
        observed = ObservedCall(
            request_id=span_id, model=run.model, usage=usage, usage_source=source,
            prompt=messages_from_llama(run.messages) if run.kind == "chat" and run.messages
            else run.prompt, answer=_answer_text(response), answered_by=answered_by,
            cache_score=lean_meta.get("cache_score"), tenant=self.tenant,
            started_at=run.wall, latency_s=time.perf_counter() - run.started,
            run_id=span_id, parent_run_id=run.parent,
            tags=tuple(str(k) for k in (event.tags or {})), metadata=meta)
        booked = lean_meta.get("record")
        return call_record(observed, prices=self.prices, booked=CallRecord.from_dict(booked)
                           if isinstance(booked, Mapping) else None)

    def _add(self, record: CallRecord) -> None:
        self._totals.add(record)
        if self.keep_records:
            self.records.append(record)

    def _write(self, record: CallRecord) -> None:
        write_record(self.ledger, record)  # an outage of the ledger never fails the call

    # ---- attach / detach ---------------------------------------------------------

    def attach(self, dispatcher: Dispatcher | None = None) -> TokenleanEventHandler:
        """Add this handler (and its span handler) to ``dispatcher`` (default: the root)."""
        attach_handlers(self, self.span_handler, self._attached, dispatcher)
        return self

    def detach(self) -> None:
        """Remove everything :meth:`attach` added."""
        detach_handlers(self._attached)


def _answer_text(response: Any) -> str:
    """What the LLM answered (a chat message's content, or a completion's text)."""
    if response is None:
        return ""
    message = getattr(response, "message", None)
    text = (getattr(message, "content", None) if message is not None
            else getattr(response, "text", None)) or ""
    return str(text)


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
