"""``lean(chat_model)``: any LangChain chat model, behind the tokenlean pipeline.

The wrapped model is the pipeline's provider; tokenlean's layers (templates,
compression, budget, cache) run before it and the ledger records every call.
invoke / batch / stream and their async twins, ``bind_tools`` and
``with_structured_output`` pass through; callbacks and tracing see the wrapper
as an ordinary chat model.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LangSmithParams, LanguageModelInput
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult, Generation
from langchain_core.runnables import Runnable, RunnableBinding
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import ConfigDict, Field, PrivateAttr, model_validator

from tokenlean.core import Chunk, Message, Pipeline, Request, Response
from tokenlean.core.presets import LayerChoice, resolve_lean
from tokenlean.core.settings import (
    build_request,
    call_tenant,
    cap_key,
    check_tenant,
    merge_settings,
)

from ._convert import (
    from_lc_messages,
    hit_id_from_lc,
    to_lc_ai_message,
    to_lc_messages,
    to_lc_tool_call_chunks,
    usage_from_lc,
    usage_to_lc,
)

__all__ = ["LeanChatModel", "lean"]

# per-call keywords that are tokenlean's own, never passed to the wrapped model
_PER_CALL = ("tenant", "user")
# the app's own bind_tools call (its tools and keywords), replayed on the wrapped model
_BIND_TOOLS = "_tokenlean_bind_tools"


def _unbound(model: Any) -> tuple[Any, list[Mapping[str, Any]]]:
    """The chat model under ``model``'s bindings, and the bindings' keyword arguments,
    innermost first (an outer binding's win, as when LangChain calls through them)."""
    bindings: list[Mapping[str, Any]] = []
    while isinstance(model, RunnableBinding):
        bindings.insert(0, model.kwargs)
        model = model.bound
    return model, bindings


def model_settings(model: Any) -> list[Mapping[str, Any]]:
    """The settings ``model`` (a chat model, or a binding of one) calls with, as layers of
    settings lowest precedence first: what LangChain itself reports as the model's
    invocation parameters (its fields' defaults, ``model_kwargs`` included), then each
    binding's keyword arguments."""
    base, bindings = _unbound(model)
    own = base._get_invocation_params() if isinstance(base, BaseChatModel) else {}
    return [own, *bindings]


def _model_name(model: Any) -> str:
    base, bindings = _unbound(model)
    for settings in (*reversed(bindings), vars(base) if hasattr(base, "__dict__") else {}):
        for attr in ("model_name", "model", "model_id", "deployment_name"):
            value = settings.get(attr)
            if isinstance(value, str) and value:
                return value
    return type(base).__name__


@dataclass(frozen=True, slots=True)
class _Call:
    """One call as the app made it: its messages, keyword arguments, and the request
    tokenlean built from them (what the layers' changes are measured against)."""

    messages: Sequence[BaseMessage]
    stop: list[str] | None
    kwargs: Mapping[str, Any]
    asked: Request
    cap_key: str


class LeanChatModel(BaseChatModel):
    """A chat model that runs tokenlean's layers around ``inner``."""

    model_config = ConfigDict(arbitrary_types_allowed=True, populate_by_name=True)

    inner: Runnable[Any, Any]
    """The wrapped chat model (or a binding of one)."""
    layers: list[Any] = Field(default_factory=list)
    """tokenlean layers, run in order before ``inner`` is called."""
    ledger: Any = None
    """Where call records go (``SQLiteLedger``, an exporter, ``Fanout``...)."""
    tenant: str = "default"
    model_name: str | None = Field(default=None, alias="model")
    """Model name used for token counting and prices (default: the inner model's)."""
    temperature: float | None = None
    """Set: overrides the wrapped model's temperature on every call."""
    max_tokens: int | None = None
    """Set: overrides the wrapped model's output cap on every call."""
    stop: list[str] | None = None
    """Set: overrides the wrapped model's stop sequences on every call."""
    timeout: float | None = None
    max_retries: int | None = None
    streaming: bool = False

    _pipeline: Pipeline | None = PrivateAttr(default=None)

    def __init__(self, **data: Any) -> None:
        # checked before pydantic: core's ConfigError for a None / "" tenant, not a
        # ValidationError (None) or a wrapper that serves the default tenant ("")
        check_tenant(data.get("tenant", "default"))
        super().__init__(**data)

    @model_validator(mode="after")
    def _inner_profile(self) -> LeanChatModel:
        """The wrapped model's capabilities are the wrapper's (agents read them to choose
        how to ask for structured output)."""
        if self.profile is None:
            self.profile = getattr(_unbound(self.inner)[0], "profile", None)
        return self

    @property
    def _llm_type(self) -> str:
        return "tokenlean-lean"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model_name": self._resolved_model, "layers": [layer.name for layer in self.layers]}

    @property
    def _resolved_model(self) -> str:
        return self.model_name or _model_name(self.inner)

    def _overrides(self) -> dict[str, Any]:
        """The wrapper's own settings, which it sends to the wrapped model on every call."""
        return {k: v for k, v in (("temperature", self.temperature),
                                  ("max_tokens", self.max_tokens), ("stop", self.stop))
                if v is not None}

    def _settings(self, stop: list[str] | None, kwargs: Mapping[str, Any]
                  ) -> list[Mapping[str, Any]]:
        """Every layer of settings of a call, lowest precedence first: the wrapped model's,
        the wrapper's overrides and pricing name, the call's own."""
        call = {k: v for k, v in kwargs.items() if k not in _PER_CALL}
        return [*model_settings(self.inner), self._overrides(), {"model": self.model_name},
                {**call, "stop": stop}]

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        params = super()._get_ls_params(stop=stop, **kwargs)
        merged = merge_settings(*self._settings(stop, kwargs))
        params["ls_provider"] = "tokenlean"
        params["ls_model_name"] = merged.get("model") or self._resolved_model
        for name, key in (("ls_temperature", "temperature"), ("ls_max_tokens", "max_tokens"),
                          ("ls_stop", "stop")):
            if merged.get(key) is not None:
                params[name] = merged[key]  # type: ignore[literal-required]
        return params

    # ---- pure helpers shared by every path ---------------------------------

    def _call(self, messages: Sequence[BaseMessage], stop: list[str] | None,
              kwargs: dict[str, Any]) -> _Call:
        """The app's call and the :class:`Request` it asks for (one mapping for every
        adapter: :func:`tokenlean.core.settings.build_request`)."""
        settings = self._settings(stop, kwargs)
        settings[-2] = {"model": self._resolved_model}
        asked = build_request(from_lc_messages(messages), *settings,
                              tenant=call_tenant(kwargs, self.tenant), user=kwargs.get("user"))
        return _Call(messages, stop, kwargs, asked, cap_key(*settings))

    def _inner_call(self, request: Request, call: _Call
                    ) -> tuple[Runnable[Any, Any], list[BaseMessage], dict[str, Any]]:
        """The runnable, messages and kwargs to call ``inner`` with for ``request``: the
        app's own call, with what the layers changed (messages, a lowered cap)."""
        runnable = self.inner
        replayed: tuple[Sequence[Any], Mapping[str, Any]] | None = call.kwargs.get(_BIND_TOOLS)
        skip = {*_PER_CALL, _BIND_TOOLS, *(("tools", *replayed[1]) if replayed else ())}
        kwargs = {**self._overrides(),
                  **{k: v for k, v in call.kwargs.items() if k not in skip}}
        if call.stop is not None:
            kwargs["stop"] = call.stop
        if replayed is not None:
            # the app bound tools on the wrapper: bind them on the wrapped model the same way
            tools, binding = replayed
            runnable = self.inner.bind_tools(tools, **binding)  # type: ignore[attr-defined]
        if request.output_cap is not None and request.output_cap != call.asked.output_cap:
            kwargs[call.cap_key] = request.output_cap  # a layer (budget) lowered or set it
        messages = list(call.messages) if request.messages is call.asked.messages \
            else to_lc_messages(request.messages, call.messages)
        return runnable, messages, kwargs

    @staticmethod
    def _to_response(message: BaseMessage) -> Response:
        meta = getattr(message, "response_metadata", {}) or {}
        tool_calls = to_lc_tool_calls(message)
        return Response(
            text=message.text if isinstance(message.text, str) else str(message.content),
            finish_reason=str(meta.get("finish_reason") or meta.get("stop_reason")
                              or ("tool_calls" if tool_calls else "stop")),
            usage=usage_from_lc(getattr(message, "usage_metadata", None)),
            model=str(meta.get("model_name") or ""),
            tool_calls=tool_calls,
            raw=message,
        )

    @staticmethod
    def _tokenlean_meta(result_request: Request, response: Response,
                        record: Any | None) -> dict[str, Any]:
        meta: dict[str, Any] = {"request_id": result_request.request_id,
                                "cached": response.cached}
        if response.cache_score is not None:
            meta["cache_score"] = response.cache_score
        hit_id = response.cache_hit_id
        if hit_id is not None:
            meta["cache_hit_id"] = hit_id  # for report_wrong_hit
        if record is not None:
            meta["saved_tokens"] = {r.layer: r.saved_input_tokens + r.saved_output_tokens
                                    for r in record.layers}
            meta["cost_usd"] = None if record.cost_usd is None else float(record.cost_usd)
            meta["not_cached"] = record.not_cached  # why the cache kept no copy (or None)
            meta["record"] = record.to_dict()  # what the cost handlers book for this call
        return meta

    @staticmethod
    def _message(response: Response, request: Request, record: Any) -> AIMessage:
        """The answer as LangChain's ``AIMessage`` (the inner model's own on a miss)."""
        meta = LeanChatModel._tokenlean_meta(request, response, record)
        if isinstance(response.raw, AIMessage) and not response.cached:
            message = response.raw.model_copy()
        else:
            message = to_lc_ai_message(_answer_message(response))
            message.usage_metadata = usage_to_lc(response.usage)
            message.response_metadata = {"finish_reason": response.finish_reason,
                                         "model_name": response.model}
        message.response_metadata = {**message.response_metadata, "tokenlean": meta}
        return message

    # ---- feedback --------------------------------------------------------------

    def report_wrong_hit(self, message_or_hit_id: BaseMessage | Generation | str) -> bool:
        """Tell the cache that a semantic hit it served was wrong (``message_or_hit_id``:
        the ``AIMessage`` the call returned, or its ``response_metadata["tokenlean"]
        ["cache_hit_id"]``). The entry is not served again to a query that close, and the
        cache's false-hit bound counts the wrong hit. Returns False, learning nothing,
        when the answer was no semantic hit under a bound (a miss, an exact hit) or the
        model has no cache layer; a hit id no cache gave is an ``InvalidRequestError``."""
        return report_to_cache(self.layers, message_or_hit_id)

    async def areport_wrong_hit(self, message_or_hit_id: BaseMessage | Generation | str
                                ) -> bool:
        return await areport_to_cache(self.layers, message_or_hit_id)

    def _pipeline_for(self, provider: _StreamingInner) -> Pipeline:
        return Pipeline(provider=provider, layers=self.layers, ledger=self.ledger)

    # ---- sync ----------------------------------------------------------------

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: CallbackManagerForLLMRun | None = None,
                  **kwargs: Any) -> ChatResult:
        call = self._call(messages, stop, kwargs)
        result = self._pipeline_for(_StreamingInner(self, call)).run(call.asked)
        return ChatResult(generations=[ChatGeneration(
            message=self._message(result.response, result.request, result.record))])

    def _stream(self, messages: list[BaseMessage], stop: list[str] | None = None,
                run_manager: CallbackManagerForLLMRun | None = None,
                **kwargs: Any) -> Iterator[ChatGenerationChunk]:
        call = self._call(messages, stop, kwargs)
        pipeline = self._pipeline_for(_StreamingInner(self, call))
        for chunk in pipeline.stream(call.asked):
            out = self._lc_chunk(chunk, call.asked)
            if out is not None:
                if run_manager and isinstance(out.message.content, str) and out.message.content:
                    run_manager.on_llm_new_token(out.message.content, chunk=out)
                yield out

    # ---- async ---------------------------------------------------------------

    async def _agenerate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                         run_manager: AsyncCallbackManagerForLLMRun | None = None,
                         **kwargs: Any) -> ChatResult:
        call = self._call(messages, stop, kwargs)
        result = await self._pipeline_for(_StreamingInner(self, call)).arun(call.asked)
        return ChatResult(generations=[ChatGeneration(
            message=self._message(result.response, result.request, result.record))])

    async def _astream(self, messages: list[BaseMessage], stop: list[str] | None = None,
                       run_manager: AsyncCallbackManagerForLLMRun | None = None,
                       **kwargs: Any) -> AsyncIterator[ChatGenerationChunk]:
        call = self._call(messages, stop, kwargs)
        pipeline = self._pipeline_for(_StreamingInner(self, call))
        async for chunk in pipeline.astream(call.asked):
            out = self._lc_chunk(chunk, call.asked)
            if out is not None:
                if run_manager and isinstance(out.message.content, str) and out.message.content:
                    await run_manager.on_llm_new_token(out.message.content, chunk=out)
                yield out

    def _lc_chunk(self, chunk: Chunk, request: Request) -> ChatGenerationChunk | None:
        """Native chunks pass through (tool-call deltas and usage intact); a replayed
        answer becomes one text chunk plus a final chunk carrying its usage."""
        if isinstance(chunk.raw, AIMessageChunk):
            return ChatGenerationChunk(message=chunk.raw)
        if chunk.response is not None:
            response = chunk.response
            meta = {"tokenlean": self._tokenlean_meta(request, response, chunk.record)}
            if response.cached:
                return ChatGenerationChunk(message=AIMessageChunk(
                    content="", usage_metadata=usage_to_lc(response.usage),
                    tool_call_chunks=to_lc_tool_call_chunks(response.tool_calls),
                    response_metadata={**meta, "finish_reason": response.finish_reason},
                    chunk_position="last"))
            return ChatGenerationChunk(message=AIMessageChunk(content="", response_metadata=meta))
        if chunk.text:
            return ChatGenerationChunk(message=AIMessageChunk(content=chunk.text))
        return None

    # ---- tools and structured output ------------------------------------------

    def bind_tools(self, tools: Sequence[Any], *, tool_choice: Any = None,
                   **kwargs: Any) -> Runnable[LanguageModelInput, AIMessage]:
        """Tools for the request as OpenAI tools; the wrapped model gets the app's very
        ``bind_tools`` call (its own tool conversion, ``strict``, ``response_format``...)."""
        if tool_choice is not None:
            kwargs["tool_choice"] = tool_choice
        formatted = [convert_to_openai_tool(tool) for tool in tools]
        return self.bind(tools=formatted, **kwargs, **{_BIND_TOOLS: (list(tools), dict(kwargs))})


class _StreamingInner:
    """The wrapped LangChain model as the pipeline's provider (complete and stream)."""

    name = "langchain"

    def __init__(self, owner: LeanChatModel, call: _Call) -> None:
        self.owner, self.call = owner, call

    def complete(self, request: Request) -> Response:
        runnable, messages, call_kwargs = self.owner._inner_call(request, self.call)
        return self.owner._to_response(runnable.invoke(messages, **call_kwargs))

    async def acomplete(self, request: Request) -> Response:
        runnable, messages, call_kwargs = self.owner._inner_call(request, self.call)
        return self.owner._to_response(await runnable.ainvoke(messages, **call_kwargs))

    def stream(self, request: Request) -> Iterator[Chunk]:
        runnable, messages, call_kwargs = self.owner._inner_call(request, self.call)
        total: AIMessageChunk | None = None
        for piece in runnable.stream(messages, **call_kwargs):
            total = piece if total is None else total + piece
            yield Chunk(text=piece.text if isinstance(piece.content, str) else "", raw=piece)
        yield Chunk(response=self.owner._to_response(total or AIMessageChunk(content="")))

    async def astream(self, request: Request) -> AsyncIterator[Chunk]:
        runnable, messages, call_kwargs = self.owner._inner_call(request, self.call)
        total: AIMessageChunk | None = None
        async for piece in runnable.astream(messages, **call_kwargs):
            total = piece if total is None else total + piece
            yield Chunk(text=piece.text if isinstance(piece.content, str) else "", raw=piece)
        yield Chunk(response=self.owner._to_response(total or AIMessageChunk(content="")))


def to_lc_tool_calls(message: BaseMessage) -> tuple[dict[str, Any], ...]:
    import json

    return tuple(
        {"id": call.get("id"), "type": "function",
         "function": {"name": call["name"], "arguments": json.dumps(call.get("args", {}))}}
        for call in getattr(message, "tool_calls", None) or ()
    )


def _cache_layer(layers: Sequence[Any]) -> Any | None:
    """The response cache among ``layers`` (the layer that takes wrong-hit reports)."""
    for layer in layers:
        if callable(getattr(layer, "report_wrong_hit", None)):
            return layer
    return None


def report_to_cache(layers: Sequence[Any], answer: BaseMessage | Generation | str) -> bool:
    """``answer``'s cache hit reported to the cache among ``layers`` (see
    :meth:`LeanChatModel.report_wrong_hit`)."""
    hit_id, cache = hit_id_from_lc(answer), _cache_layer(layers)
    return hit_id is not None and cache is not None and bool(cache.report_wrong_hit(hit_id))


async def areport_to_cache(layers: Sequence[Any],
                            answer: BaseMessage | Generation | str) -> bool:
    hit_id, cache = hit_id_from_lc(answer), _cache_layer(layers)
    return hit_id is not None and cache is not None \
        and bool(await cache.areport_wrong_hit(hit_id))


def _answer_message(response: Response) -> Message:
    return Message(role="assistant", content=response.text, tool_calls=response.tool_calls)


def lean(chat_model: Runnable[Any, Any], *, layers: Sequence[Any] | None = None,
         cache: LayerChoice = None, compress: LayerChoice = None,
         templates: LayerChoice = None, budget: LayerChoice = None,
         preset: str = "safe", ledger: Any = None, tenant: str = "default",
         model: str | None = None, **options: Any) -> LeanChatModel:
    """Wrap ``chat_model`` so every call runs through tokenlean.

    With no keyword only what cannot change answers is on (see
    ``tokenlean.core.presets``). Each layer is one keyword: ``True`` for its
    defaults, a string option, ``False`` to turn it off, or a layer object.
    ``layers=[...]`` replaces the preset entirely. ``ledger`` is a path
    (``.sqlite``/``.db`` or ``.jsonl``) or a ledger object, by default
    ``~/.tokenlean/ledger.sqlite``; ``False`` for none. Other keywords (such as
    ``cache_sampled=True``) go to :func:`tokenlean.core.presets.build_layers`.
    """
    chosen, sink = resolve_lean(layers=layers, cache=cache, compress=compress,
                                templates=templates, budget=budget, preset=preset,
                                ledger=ledger, **options)
    return LeanChatModel(inner=chat_model, layers=chosen, ledger=sink, tenant=tenant,
                         model=model)
