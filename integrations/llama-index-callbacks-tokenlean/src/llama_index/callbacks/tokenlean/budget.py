"""``TokenleanBudgetHandler``: tokenlean budgets around every LlamaIndex LLM call.

Before the call the handler reserves the call's worst case on a
:class:`~tokenlean.budget.BudgetLayer` (raising
:class:`~tokenlean.core.BudgetExceeded` before the model runs, or clamping /
routing / applying the predicted ``max_tokens``); after it, it settles the
reservation with the actual usage -- streamed calls included (usage read
from any chunk; a stream that reports none is charged by counting its text,
never as $0) -- and releases it when the call fails (an abandoned stream is
charged what was reserved, as the layer's ``on_abort`` says).

Two LlamaIndex hooks are needed, because LlamaIndex's instrumentation
dispatcher *swallows* every exception a handler raises and hands handlers a
copy of the call's keyword arguments:

* the decision runs in the LLM's ``CallbackManager`` (``on_event_start`` of
  the ``LLM`` event), which LlamaIndex calls just before the model with the
  very ``kwargs`` dict the model receives and whose exceptions reach the
  caller. Clamped, routed or predicted limits are written there as
  ``max_tokens`` / ``model`` keyword arguments: LLMs that take per-call
  keyword arguments (OpenAI, Anthropic, ``CustomLLM`` subclasses that read
  them) honour them; others ignore them and are settled on what they used;
* the settlement listens to the instrumentation events (chat / completion
  in-progress and end), like :class:`TokenleanEventHandler`, with a
  :class:`TokenleanSpanHandler` so that an LLM call nested in another one
  (a ``CustomLLM``'s ``chat`` runs its ``complete``) is budgeted once.

``enforce_budget(layer, llm)`` attaches both; ``handler.detach()`` removes them.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from llama_index.core.callbacks import CallbackManager, CBEventType, EventPayload
from llama_index.core.callbacks.base_handler import BaseCallbackHandler
from llama_index.core.instrumentation.dispatcher import Dispatcher
from llama_index.core.instrumentation.event_handlers import BaseEventHandler
from llama_index.core.instrumentation.events import BaseEvent
from llama_index.core.instrumentation.events.llm import (
    LLMChatEndEvent,
    LLMChatInProgressEvent,
    LLMCompletionEndEvent,
    LLMCompletionInProgressEvent,
)
from llama_index.core.instrumentation.span import active_span_id
from pydantic import ConfigDict, PrivateAttr

from tokenlean.core import ConfigError, Message, Request, Response, Usage
from tokenlean.core._optional import require
from tokenlean.core.settings import MODEL_KEYS, build_request, call_tenant, check_tenant

from ._convert import messages_from_llama, model_from_dict, usage_from_response
from .base import TokenleanSpanHandler, attach_handlers, detach_handlers

__all__ = ["TokenleanBudgetHandler", "enforce_budget"]


@dataclass
class _Reserved:
    request: Request  # as the layer returned it (its note holds the reservation)
    stream_usage: Usage | None = None
    child_usage: Usage | None = None


def _response_text(response: Any) -> str:
    if response is None:
        return ""
    message = getattr(response, "message", None)
    text = getattr(message, "content", None) if message is not None else \
        getattr(response, "text", None)
    return str(text or "")


class _Gate(BaseCallbackHandler):
    """The pre-call hook (legacy callback manager): reserve, or raise before the call."""

    def __init__(self, owner: TokenleanBudgetHandler) -> None:
        super().__init__(event_starts_to_ignore=[], event_ends_to_ignore=[])
        self.owner = owner

    def on_event_start(self, event_type: CBEventType, payload: dict[str, Any] | None = None,
                       event_id: str = "", parent_id: str = "", **kwargs: Any) -> str:
        if event_type == CBEventType.LLM and payload is not None:
            self.owner._reserve(payload, event_id)
        return event_id

    def on_event_end(self, event_type: CBEventType, payload: dict[str, Any] | None = None,
                     event_id: str = "", **kwargs: Any) -> None:
        if event_type == CBEventType.LLM and payload and EventPayload.EXCEPTION in payload:
            self.owner._fail(event_id, payload[EventPayload.EXCEPTION])

    def start_trace(self, trace_id: str | None = None) -> None:
        return None

    def end_trace(self, trace_id: str | None = None,
                  trace_map: dict[str, list[str]] | None = None) -> None:
        return None


class TokenleanBudgetHandler(BaseEventHandler):
    """Enforces a :class:`~tokenlean.budget.BudgetLayer`'s budgets on LlamaIndex LLM calls.

    ``apply_limits=True`` lets ``"clamp"`` / ``"route"`` budgets and the
    layer's predictor change the call (``max_tokens`` / ``model`` keyword
    arguments); with ``False`` a call that does not fit as it is raises.
    Tenant and user: ``tenant`` / ``user`` keyword arguments of the call
    (removed before the model sees them), else the handler's defaults.
    ``default_model``: the model to price when the LLM's metadata names none.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    layer: Any
    tenant: str = "default"
    user: str | None = None
    default_model: str | None = None
    apply_limits: bool = True
    span_handler: TokenleanSpanHandler | None = None

    _runs: dict[str, _Reserved] = PrivateAttr(default_factory=dict)
    _events: dict[str, str] = PrivateAttr(default_factory=dict)  # callback event id -> span id
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)
    _gate: _Gate | None = PrivateAttr(default=None)
    _attached: list[tuple[Any, Any]] = PrivateAttr(default_factory=list)
    _managers: list[CallbackManager] = PrivateAttr(default_factory=list)

    def __init__(self, **data: Any) -> None:
        layer, tenant = data.get("layer"), data.get("tenant", "default")
        budget = require("tokenlean.budget", extra="budget", feature="TokenleanBudgetHandler")
        if not isinstance(layer, budget.BudgetLayer):
            raise ConfigError("TokenleanBudgetHandler needs a tokenlean.budget.BudgetLayer")
        check_tenant(tenant)
        super().__init__(**data)

    def model_post_init(self, context: Any) -> None:
        if self.span_handler is None:
            self.span_handler = TokenleanSpanHandler()
        self._gate = _Gate(self)

    @classmethod
    def class_name(cls) -> str:
        return "TokenleanBudgetHandler"

    @property
    def callback(self) -> BaseCallbackHandler:
        """The pre-call hook to add to an LLM's ``CallbackManager`` (``attach`` does it)."""
        assert self._gate is not None  # set in model_post_init
        return self._gate

    # ---- before the call ---------------------------------------------------------

    def _request(self, payload: Mapping[str, Any], call_kwargs: dict[str, Any]) -> Request:
        model_dict = payload.get(EventPayload.SERIALIZED) or {}
        if EventPayload.MESSAGES in payload:
            messages = messages_from_llama(payload[EventPayload.MESSAGES] or ())
        else:
            messages = (Message(role="user", content=str(payload.get(EventPayload.PROMPT) or "")),)
        tenant = call_tenant(call_kwargs, self.tenant)
        call_kwargs.pop("tenant", None)
        user = call_kwargs.pop("user", None) or self.user
        # core's one mapping: the LLM's serialized settings (its cap under whatever name,
        # additional_kwargs included), then the call's; the model named as the handler reads it
        own = {k: v for k, v in model_dict.items() if k not in MODEL_KEYS}
        model = model_from_dict(model_dict) or self.default_model or "unknown"
        return build_request(messages, own, call_kwargs, {"model": model}, tenant=tenant,
                             user=user)

    def _outer_of(self, span_id: str) -> str | None:
        ancestors = self.span_handler.ancestors(span_id) if self.span_handler else []
        return next((a for a in ancestors if a in self._runs), None)

    def _reserve(self, payload: dict[str, Any], event_id: str) -> None:
        span_id = active_span_id.get()
        if not span_id:
            return
        with self._lock:
            if span_id in self._runs or self._outer_of(span_id) is not None:
                return  # nested in a budgeted call: that call is the one budgeted
        call_kwargs = payload.get(EventPayload.ADDITIONAL_KWARGS)
        call_kwargs = call_kwargs if isinstance(call_kwargs, dict) else {}
        request = self._request(payload, call_kwargs)
        reserved = self.layer.reserve(request, adjust=self.apply_limits)  # may raise
        if self.apply_limits:
            # the dict LlamaIndex passes to the model: the limits take effect
            if reserved.max_tokens is not None and reserved.max_tokens != request.max_tokens:
                call_kwargs["max_tokens"] = reserved.max_tokens
            if reserved.model != request.model:
                call_kwargs["model"] = reserved.model
        with self._lock:
            self._runs[span_id] = _Reserved(reserved)
            self._events[event_id] = span_id

    # ---- after the call ----------------------------------------------------------

    def handle(self, event: BaseEvent, **kwargs: Any) -> None:
        if isinstance(event, (LLMChatInProgressEvent, LLMCompletionInProgressEvent)):
            usage = usage_from_response(event.response)
            if usage is not None:
                with self._lock:
                    run = self._runs.get(event.span_id or "")
                    if run is not None:
                        run.stream_usage = usage  # providers send call totals: the latest wins
        elif isinstance(event, (LLMChatEndEvent, LLMCompletionEndEvent)):
            self._settle(event.span_id or "", event.response)

    def _settle(self, span_id: str, response: Any) -> None:
        reported = usage_from_response(response)
        with self._lock:
            run = self._runs.pop(span_id, None)
            if run is None:
                outer = self._outer_of(span_id)
                if outer is not None and reported is not None:
                    self._runs[outer].child_usage = reported
                return
            self._events = {k: v for k, v in self._events.items() if v != span_id}
        usage = reported or run.stream_usage or run.child_usage or Usage()
        request = run.request
        # a zero usage makes the layer count the prompt and the text (never $0)
        self.layer.settle(request, Response(text=_response_text(response), usage=usage,
                                            model=request.model))

    def _fail(self, event_id: str, exc: BaseException) -> None:
        with self._lock:
            span_id = self._events.pop(event_id, None)
            run = self._runs.pop(span_id, None) if span_id else None
        if run is not None:
            self.layer.cancel(run.request, exc)

    # ---- attach / detach ---------------------------------------------------------

    def attach(self, *llms: Any, dispatcher: Dispatcher | None = None) -> TokenleanBudgetHandler:
        """Enforce on ``llms`` (their callback managers get the pre-call hook) and listen
        to ``dispatcher``'s LLM events (default: the root dispatcher)."""
        if not llms:
            raise ConfigError("attach needs the LLM(s) to enforce budgets on: "
                              "handler.attach(llm)")
        for llm in llms:
            manager = getattr(llm, "callback_manager", None)
            if not isinstance(manager, CallbackManager):
                manager = CallbackManager([])
                llm.callback_manager = manager
            manager.add_handler(self.callback)
            self._managers.append(manager)
        attach_handlers(self, self.span_handler, self._attached, dispatcher)
        return self

    def detach(self) -> None:
        """Remove everything :meth:`attach` added."""
        while self._managers:
            self._managers.pop().remove_handler(self.callback)
        detach_handlers(self._attached)


def enforce_budget(layer: Any, *llms: Any, tenant: str = "default",
                   user: str | None = None, default_model: str | None = None,
                   apply_limits: bool = True,
                   dispatcher: Dispatcher | None = None) -> TokenleanBudgetHandler:
    """Enforce ``layer`` (a ``BudgetLayer``) on every call of ``llms``; returns the handler::

        layer = BudgetLayer(budgets=[Budget(name="day", max_usd=5, period="day")],
                            predictor=LengthPredictor.default())
        handler = enforce_budget(layer, llm)
        index.as_query_engine(llm=llm).query("...")   # BudgetExceeded when over
    """
    handler = TokenleanBudgetHandler(layer=layer, tenant=tenant, user=user,
                                     default_model=default_model, apply_limits=apply_limits)
    return handler.attach(*llms, dispatcher=dispatcher)
