"""``lean(chat_model)``: any LangChain chat model, behind the tokenlean pipeline.

The wrapped model is the pipeline's provider; tokenlean's layers (templates,
compression, budget, cache) run before it and the ledger records every call.
invoke / batch / stream and their async twins, ``bind_tools`` and
``with_structured_output`` pass through; callbacks and tracing see the wrapper
as an ordinary chat model.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LangSmithParams, LanguageModelInput
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import ConfigDict, Field, PrivateAttr

from tokenlean.core import Chunk, Message, Pipeline, Request, Response
from tokenlean.core.presets import LayerChoice, build_layers

from ._convert import (
    from_lc_messages,
    to_lc_ai_message,
    to_lc_message,
    usage_from_lc,
    usage_to_lc,
)

__all__ = ["LeanChatModel", "lean"]

_PER_CALL = ("tenant", "user")


def _model_name(model: Any) -> str:
    bound = getattr(model, "bound", model)
    for attr in ("model_name", "model", "model_id", "deployment_name"):
        value = getattr(bound, attr, None)
        if isinstance(value, str) and value:
            return value
    return type(bound).__name__


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
    max_tokens: int | None = None
    stop: list[str] | None = None
    timeout: float | None = None
    max_retries: int | None = None
    streaming: bool = False

    _pipeline: Pipeline | None = PrivateAttr(default=None)

    @property
    def _llm_type(self) -> str:
        return "tokenlean-lean"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model_name": self._resolved_model, "layers": [layer.name for layer in self.layers]}

    @property
    def _resolved_model(self) -> str:
        return self.model_name or _model_name(self.inner)

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        params = super()._get_ls_params(stop=stop, **kwargs)
        params["ls_provider"] = "tokenlean"
        params["ls_model_name"] = kwargs.get("model") or self._resolved_model
        if self.temperature is not None:
            params["ls_temperature"] = self.temperature
        if self.max_tokens is not None:
            params["ls_max_tokens"] = self.max_tokens
        if stop or self.stop:
            params["ls_stop"] = stop or self.stop
        return params

    # ---- pure helpers shared by every path ---------------------------------

    def _request(self, messages: Sequence[BaseMessage], stop: list[str] | None,
                 kwargs: dict[str, Any]) -> Request:
        tools = tuple(kwargs.get("tools") or ())
        params = {k: v for k, v in kwargs.items()
                  if k not in {"tools", "max_tokens", "temperature", *_PER_CALL}
                  and isinstance(v, (str, int, float, bool, type(None), dict, list))}
        return Request(
            messages=from_lc_messages(messages),
            model=kwargs.get("model") or self._resolved_model,
            max_tokens=kwargs.get("max_tokens", self.max_tokens),
            temperature=kwargs.get("temperature", self.temperature),
            stop=tuple(stop or self.stop or ()),
            tools=tools,
            params=params,
            tenant=kwargs.get("tenant") or self.tenant,
            user=kwargs.get("user"),
        )

    def _inner_call(self, request: Request, kwargs: dict[str, Any]
                    ) -> tuple[Runnable[Any, Any], list[BaseMessage], dict[str, Any]]:
        """The runnable, messages and kwargs to call ``inner`` with for ``request``."""
        runnable = self.inner
        call_kwargs = {k: v for k, v in kwargs.items()
                       if k not in {"tools", "tool_choice", *_PER_CALL}}
        if request.tools:
            bind = {"tool_choice": kwargs["tool_choice"]} if kwargs.get("tool_choice") else {}
            # inner is any Runnable; a call with tools needs a chat model (bind_tools)
            runnable = self.inner.bind_tools(list(request.tools), **bind)  # type: ignore[attr-defined]
        if request.stop:
            call_kwargs["stop"] = list(request.stop)
        if request.max_tokens is not None and request.max_tokens != self.max_tokens:
            call_kwargs["max_tokens"] = request.max_tokens  # a layer (budget) changed it
        return runnable, [to_lc_message(m) for m in request.messages], call_kwargs

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
        if record is not None:
            meta["saved_tokens"] = {r.layer: r.saved_input_tokens + r.saved_output_tokens
                                    for r in record.layers}
            meta["cost_usd"] = None if record.cost_usd is None else float(record.cost_usd)
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

    def _pipeline_for(self, provider: _StreamingInner) -> Pipeline:
        return Pipeline(provider=provider, layers=self.layers, ledger=self.ledger)

    # ---- sync ----------------------------------------------------------------

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: CallbackManagerForLLMRun | None = None,
                  **kwargs: Any) -> ChatResult:
        request = self._request(messages, stop, kwargs)
        result = self._pipeline_for(_StreamingInner(self, kwargs)).run(request)
        return ChatResult(generations=[ChatGeneration(
            message=self._message(result.response, result.request, result.record))])

    def _stream(self, messages: list[BaseMessage], stop: list[str] | None = None,
                run_manager: CallbackManagerForLLMRun | None = None,
                **kwargs: Any) -> Iterator[ChatGenerationChunk]:
        request = self._request(messages, stop, kwargs)
        pipeline = self._pipeline_for(_StreamingInner(self, kwargs))
        for chunk in pipeline.stream(request):
            out = self._lc_chunk(chunk, request)
            if out is not None:
                if run_manager and isinstance(out.message.content, str) and out.message.content:
                    run_manager.on_llm_new_token(out.message.content, chunk=out)
                yield out

    # ---- async ---------------------------------------------------------------

    async def _agenerate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                         run_manager: AsyncCallbackManagerForLLMRun | None = None,
                         **kwargs: Any) -> ChatResult:
        request = self._request(messages, stop, kwargs)
        result = await self._pipeline_for(_StreamingInner(self, kwargs)).arun(request)
        return ChatResult(generations=[ChatGeneration(
            message=self._message(result.response, result.request, result.record))])

    async def _astream(self, messages: list[BaseMessage], stop: list[str] | None = None,
                       run_manager: AsyncCallbackManagerForLLMRun | None = None,
                       **kwargs: Any) -> AsyncIterator[ChatGenerationChunk]:
        request = self._request(messages, stop, kwargs)
        pipeline = self._pipeline_for(_StreamingInner(self, kwargs))
        async for chunk in pipeline.astream(request):
            out = self._lc_chunk(chunk, request)
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
                    response_metadata={**meta, "finish_reason": response.finish_reason},
                    chunk_position="last"))
            return ChatGenerationChunk(message=AIMessageChunk(content="", response_metadata=meta))
        if chunk.text:
            return ChatGenerationChunk(message=AIMessageChunk(content=chunk.text))
        return None

    # ---- tools and structured output ------------------------------------------

    def bind_tools(self, tools: Sequence[Any], *, tool_choice: Any = None,
                   **kwargs: Any) -> Runnable[LanguageModelInput, AIMessage]:
        formatted = [convert_to_openai_tool(tool) for tool in tools]
        if tool_choice is not None:
            kwargs["tool_choice"] = tool_choice
        return self.bind(tools=formatted, **kwargs)


class _StreamingInner:
    """The wrapped LangChain model as the pipeline's provider (complete and stream)."""

    name = "langchain"

    def __init__(self, owner: LeanChatModel, kwargs: dict[str, Any]) -> None:
        self.owner, self.kwargs = owner, kwargs

    def complete(self, request: Request) -> Response:
        runnable, messages, call_kwargs = self.owner._inner_call(request, self.kwargs)
        return self.owner._to_response(runnable.invoke(messages, **call_kwargs))

    async def acomplete(self, request: Request) -> Response:
        runnable, messages, call_kwargs = self.owner._inner_call(request, self.kwargs)
        return self.owner._to_response(await runnable.ainvoke(messages, **call_kwargs))

    def stream(self, request: Request) -> Iterator[Chunk]:
        runnable, messages, call_kwargs = self.owner._inner_call(request, self.kwargs)
        total: AIMessageChunk | None = None
        for piece in runnable.stream(messages, **call_kwargs):
            total = piece if total is None else total + piece
            yield Chunk(text=piece.text if isinstance(piece.content, str) else "", raw=piece)
        yield Chunk(response=self.owner._to_response(total or AIMessageChunk(content="")))

    async def astream(self, request: Request) -> AsyncIterator[Chunk]:
        runnable, messages, call_kwargs = self.owner._inner_call(request, self.kwargs)
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


def _answer_message(response: Response) -> Message:
    return Message(role="assistant", content=response.text, tool_calls=response.tool_calls)


def lean(chat_model: Runnable[Any, Any], *, layers: Sequence[Any] | None = None,
         cache: LayerChoice = None, compress: LayerChoice = None,
         templates: LayerChoice = None, budget: LayerChoice = None,
         preset: str = "safe", ledger: Any = None, tenant: str = "default",
         model: str | None = None) -> LeanChatModel:
    """Wrap ``chat_model`` so every call runs through tokenlean.

    With no keyword only what cannot change answers is on (see
    ``tokenlean.core.presets``). Each layer is one keyword: ``True`` for its
    defaults, a string option, ``False`` to turn it off, or a layer object.
    ``layers=[...]`` replaces the preset entirely. ``ledger`` defaults to
    ``~/.tokenlean/ledger.sqlite``; pass ``False`` for none.
    """
    chosen, sink = resolve(layers=layers, cache=cache, compress=compress, templates=templates,
                           budget=budget, preset=preset, ledger=ledger)
    return LeanChatModel(inner=chat_model, layers=chosen, ledger=sink, tenant=tenant,
                         model=model)


def resolve(*, layers: Sequence[Any] | None, cache: LayerChoice, compress: LayerChoice,
            templates: LayerChoice, budget: LayerChoice, preset: str,
            ledger: Any) -> tuple[list[Any], Any]:
    """The layers and ledger ``lean()`` / ``TokenleanMiddleware`` keywords ask for."""
    chosen = list(layers) if layers is not None else build_layers(
        preset=preset, cache=cache, compress=compress, templates=templates, budget=budget)
    from tokenlean.core import SQLiteLedger

    sink = None if ledger is False else (ledger if ledger is not None else SQLiteLedger())
    return chosen, sink
