"""``lean(llm)``: any LlamaIndex LLM behind the tokenlean pipeline.

Every call is described by core's one request mapping
(:func:`tokenlean.core.settings.build_request`): the wrapped LLM's own
settings (what it would send: ``OpenAI(temperature=..., max_tokens=...)``,
its ``additional_kwargs``) plus the call's arguments (tools, tool choice,
stop, ...). The wrapper is a ``FunctionCallingLLM`` that hands tool
preparation and parsing to the wrapped LLM, so ``chat_with_tools``,
``predict_and_call`` and ``structured_predict`` work through it, cache hits
included (a replayed answer carries its tool calls as ``ToolCallBlock`` blocks).

A semantic cache hit served under a false-hit bound carries
``additional_kwargs["tokenlean"]["cache_hit_id"]``: when its answer was wrong,
``llm.report_wrong_hit(response)`` tells the cache (issue #21).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from llama_index.core.base.llms.types import (
    ChatMessage,
    ChatResponse,
    ChatResponseAsyncGen,
    ChatResponseGen,
    CompletionResponse,
    CompletionResponseAsyncGen,
    CompletionResponseGen,
    LLMMetadata,
)
from llama_index.core.llms.callbacks import llm_chat_callback, llm_completion_callback
from llama_index.core.llms.function_calling import FunctionCallingLLM
from llama_index.core.llms.llm import LLM
from pydantic import ConfigDict, Field, model_validator

from tokenlean.core import (
    CallResult,
    Chunk,
    InvalidRequestError,
    Message,
    Pipeline,
    Request,
    Response,
    Usage,
)
from tokenlean.core.presets import LayerChoice, resolve_lean
from tokenlean.core.settings import build_request, call_tenant, cap_key, check_tenant

from ._convert import (
    finish_reason_from_li,
    from_li_messages,
    to_li_message,
    to_li_messages,
    tool_calls_from_li,
    usage_from_li,
)

__all__ = ["LeanLLM", "lean", "lean_query_engine"]

_PER_CALL = ("tenant", "user")


def llm_settings(llm: Any, kwargs: Mapping[str, Any]) -> Mapping[str, Any]:
    """What ``llm`` sends for a call with ``kwargs``: the body fields it builds itself
    (``_get_model_kwargs``, which LlamaIndex's OpenAI-style LLMs use for every call) or,
    for other LLMs, the fields their class adds to LlamaIndex's ``LLM`` (its settings:
    ``temperature``, ``max_tokens``, ``additional_kwargs``...; the base class's prompt
    helpers act on the messages, which the request already has) overridden by the
    call's arguments."""
    builder = getattr(llm, "_get_model_kwargs", None)
    if callable(builder):
        built: Mapping[str, Any] = builder(**kwargs)
        return built
    fields = getattr(type(llm), "model_fields", {})
    own = {name: getattr(llm, name, None) for name, info in fields.items()
           if not info.exclude and name not in LLM.model_fields}
    return {**own, **kwargs}


def _capped(llm: Any, key: str, tokens: int, kwargs: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """``llm`` and ``kwargs`` with the output cap at ``tokens``, set where the app set it
    (an LLM's own field wins over a call argument in LlamaIndex, so a cap the app put on
    the LLM is lowered on a copy of it)."""
    if key in getattr(type(llm), "model_fields", {}) and getattr(llm, key, None) is not None:
        return llm.model_copy(update={key: tokens}), kwargs
    extra = getattr(llm, "additional_kwargs", None)
    if isinstance(extra, dict) and key in extra:
        return llm.model_copy(update={"additional_kwargs": {**extra, key: tokens}}), kwargs
    return llm, {**kwargs, key: tokens}


@dataclass(frozen=True, slots=True)
class _Call:
    """One call as the app made it, and the request tokenlean built from it."""

    originals: Sequence[ChatMessage]
    kwargs: Mapping[str, Any]
    asked: Request
    cap_key: str


class LeanLLM(FunctionCallingLLM):
    """A LlamaIndex LLM that runs tokenlean's layers around ``inner``."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    inner: Any = Field(description="The wrapped LlamaIndex LLM.")
    layers: list[Any] = Field(default_factory=list, description="tokenlean layers, in order.")
    ledger: Any = Field(default=None, description="Where call records go.")
    tenant: str = Field(default="default")
    model_name: str | None = Field(default=None, description="Model for counting and prices.")

    def __init__(self, **data: Any) -> None:
        # checked before pydantic: core's ConfigError for a None / "" tenant, not a
        # ValidationError (None) or a wrapper that serves the default tenant ("")
        check_tenant(data.get("tenant", "default"))
        super().__init__(**data)

    @model_validator(mode="after")
    def _inner_program_mode(self) -> LeanLLM:
        """Structured output is asked for the way the wrapped LLM is set to ask for it."""
        mode = getattr(self.inner, "pydantic_program_mode", None)
        if mode is not None:
            self.pydantic_program_mode = mode
        return self

    @classmethod
    def class_name(cls) -> str:
        return "LeanLLM"

    @property
    def metadata(self) -> LLMMetadata:
        """The inner LLM's, named after ``model`` when one was given (so cost handlers
        price calls as the ledger does)."""
        inner: LLMMetadata = self.inner.metadata
        return inner.model_copy(update={"model_name": self.model_name}) if self.model_name \
            else inner

    @property
    def _model(self) -> str:
        return self.model_name or getattr(self.inner.metadata, "model_name", None) or "unknown"

    # ---- the request, and the call to the inner LLM -----------------------------

    def _call(self, messages: Sequence[Message], originals: Sequence[ChatMessage],
              kwargs: dict[str, Any]) -> _Call:
        """The app's call and the :class:`Request` it asks for (one mapping for every
        adapter: :func:`tokenlean.core.settings.build_request`)."""
        tenant = call_tenant(kwargs, self.tenant)
        kwargs.pop("tenant", None)
        user = kwargs.pop("user", None)
        settings = [llm_settings(self.inner, kwargs), {"model": self._model}]
        asked = build_request(messages, *settings, tenant=tenant, user=user)
        return _Call(originals, kwargs, asked, cap_key(*settings))

    def _chat_call(self, messages: Sequence[ChatMessage], kwargs: dict[str, Any]) -> _Call:
        return self._call(from_li_messages(messages), list(messages), kwargs)

    def _prompt_call(self, prompt: str, formatted: bool, kwargs: dict[str, Any]) -> _Call:
        call = self._call((Message(role="user", content=prompt),), (), kwargs)
        return _Call(call.originals, {**call.kwargs, "formatted": formatted}, call.asked,
                     call.cap_key)

    @staticmethod
    def _target(request: Request, call: _Call, llm: Any) -> tuple[Any, dict[str, Any]]:
        """The LLM and kwargs to call for ``request``: the app's own, with a cap a layer
        lowered (or set where the app gave none)."""
        kwargs = dict(call.kwargs)
        cap = request.output_cap
        if cap is not None and cap != call.asked.output_cap:
            return _capped(llm, call.cap_key, cap, kwargs)
        return llm, kwargs

    @staticmethod
    def _messages(request: Request, call: _Call) -> list[ChatMessage]:
        if request.messages is call.asked.messages:
            return list(call.originals)
        return to_li_messages(request.messages, call.originals)

    def _pipeline(self, provider: Any) -> Pipeline:
        return Pipeline(provider=provider, layers=self.layers, ledger=self.ledger)

    @staticmethod
    def _response(request: Request, out: ChatResponse | CompletionResponse | None) -> Response:
        """The inner LLM's answer as a :class:`Response` (``raw``: the answer itself). Usage
        the inner LLM did not report stays zero: the pipeline's accounting estimates it
        (:func:`tokenlean.core.estimate_usage`) and says so in the record."""
        if out is None:
            return Response(text="", model=request.model)
        if isinstance(out, ChatResponse):
            text, tool_calls = out.message.content or "", tool_calls_from_li(out.message)
        else:
            text, tool_calls = out.text, ()
        usage = usage_from_li(out.raw, out.additional_kwargs) or Usage()
        return Response(text=text, usage=usage, model=request.model, tool_calls=tool_calls,
                        finish_reason=finish_reason_from_li(out.raw, tool_calls), raw=out)

    @staticmethod
    def _meta(result: CallResult) -> dict[str, Any]:
        record = result.record
        return {"tokenlean": {
            "request_id": record.request_id, "cached": result.response.cached,
            "cache_score": result.response.cache_score,
            "cache_hit_id": result.response.cache_hit_id,  # for report_wrong_hit (or None)
            "saved_tokens": {r.layer: r.saved_input_tokens + r.saved_output_tokens
                             for r in record.layers},
            "cost_usd": None if record.cost_usd is None else float(record.cost_usd),
            "not_cached": record.not_cached,  # why the cache kept no copy (or None)
            "record": record.to_dict()},  # what the cost handler books for this call
            "prompt_tokens": result.response.usage.input_tokens,
            "completion_tokens": result.response.usage.output_tokens}

    @staticmethod
    def _answer_message(response: Response) -> ChatMessage:
        """A replayed answer as a LlamaIndex message (tool calls as ``ToolCallBlock`` blocks)."""
        return to_li_message(Message(role="assistant", content=response.text,
                                     tool_calls=response.tool_calls))

    def _chat_result(self, result: CallResult) -> ChatResponse:
        """The inner LLM's own answer on a miss, the replayed one on a hit; with
        tokenlean's metadata."""
        meta = self._meta(result)
        own = result.response.raw
        if isinstance(own, ChatResponse) and not result.response.cached:
            return own.model_copy(update={"additional_kwargs": {**own.additional_kwargs,
                                                                **meta}})
        return ChatResponse(message=self._answer_message(result.response), additional_kwargs=meta)

    def _completion_result(self, result: CallResult) -> CompletionResponse:
        meta = self._meta(result)
        own = result.response.raw
        if isinstance(own, CompletionResponse) and not result.response.cached:
            return own.model_copy(update={"additional_kwargs": {**own.additional_kwargs,
                                                                **meta}})
        return CompletionResponse(text=result.response.text, additional_kwargs=meta)

    # ---- feedback -----------------------------------------------------------------

    def _cache_layer(self) -> Any | None:
        """The response cache among the layers (the layer that takes wrong-hit reports)."""
        for layer in self.layers:
            if callable(getattr(layer, "report_wrong_hit", None)):
                return layer
        return None

    def report_wrong_hit(self, response_or_hit_id: ChatResponse | CompletionResponse | str
                         ) -> bool:
        """Tell the cache that a semantic hit it served was wrong (``response_or_hit_id``:
        the ``ChatResponse`` / ``CompletionResponse`` the call returned, or its
        ``additional_kwargs["tokenlean"]["cache_hit_id"]``). The entry is not served
        again to a query that close, and the cache's false-hit bound counts the wrong
        hit. Returns False, learning nothing, when the answer was no semantic hit under
        a bound (a miss, an exact hit) or there is no cache layer; a hit id no cache
        gave is an ``InvalidRequestError``."""
        hit_id, cache = _hit_id_from_li(response_or_hit_id), self._cache_layer()
        return hit_id is not None and cache is not None and bool(cache.report_wrong_hit(hit_id))

    async def areport_wrong_hit(self, response_or_hit_id: ChatResponse | CompletionResponse
                                | str) -> bool:
        hit_id, cache = _hit_id_from_li(response_or_hit_id), self._cache_layer()
        return hit_id is not None and cache is not None \
            and bool(await cache.areport_wrong_hit(hit_id))

    # ---- chat -------------------------------------------------------------------

    @llm_chat_callback()
    def chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        call = self._chat_call(messages, kwargs)
        return self._chat_result(self._pipeline(_Inner(self, call, chat=True)).run(call.asked))

    @llm_chat_callback()
    async def achat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        call = self._chat_call(messages, kwargs)
        result = await self._pipeline(_Inner(self, call, chat=True)).arun(call.asked)
        return self._chat_result(result)

    def _replayed(self, text: str, chunk: Chunk) -> ChatResponse:
        """A streamed piece of an answer tokenlean replays (a cache hit): the text so far;
        the last piece carries the whole message, tool calls included."""
        if chunk.response is not None:
            return ChatResponse(message=self._answer_message(chunk.response), delta="")
        return ChatResponse(message=ChatMessage(role="assistant", content=text),
                            delta=chunk.text)

    @llm_chat_callback()
    def stream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseGen:
        call = self._chat_call(messages, kwargs)
        pipeline = self._pipeline(_Inner(self, call, chat=True))

        def gen() -> ChatResponseGen:
            text = ""
            for chunk in pipeline.stream(call.asked):
                if isinstance(chunk.raw, ChatResponse):
                    yield chunk.raw  # the inner LLM's own piece (tool-call deltas intact)
                elif chunk.text or (chunk.response is not None and chunk.response.cached):
                    text += chunk.text
                    yield self._replayed(text, chunk)

        return gen()

    @llm_chat_callback()
    async def astream_chat(self, messages: Sequence[ChatMessage],
                           **kwargs: Any) -> ChatResponseAsyncGen:
        call = self._chat_call(messages, kwargs)
        pipeline = self._pipeline(_Inner(self, call, chat=True))

        async def gen() -> ChatResponseAsyncGen:
            text = ""
            async for chunk in pipeline.astream(call.asked):
                if isinstance(chunk.raw, ChatResponse):
                    yield chunk.raw
                elif chunk.text or (chunk.response is not None and chunk.response.cached):
                    text += chunk.text
                    yield self._replayed(text, chunk)

        return gen()

    # ---- completion --------------------------------------------------------------

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        call = self._prompt_call(prompt, formatted, kwargs)
        result = self._pipeline(_Inner(self, call, chat=False)).run(call.asked)
        return self._completion_result(result)

    @llm_completion_callback()
    async def acomplete(self, prompt: str, formatted: bool = False,
                        **kwargs: Any) -> CompletionResponse:
        call = self._prompt_call(prompt, formatted, kwargs)
        result = await self._pipeline(_Inner(self, call, chat=False)).arun(call.asked)
        return self._completion_result(result)

    @llm_completion_callback()
    def stream_complete(self, prompt: str, formatted: bool = False,
                        **kwargs: Any) -> CompletionResponseGen:
        call = self._prompt_call(prompt, formatted, kwargs)
        pipeline = self._pipeline(_Inner(self, call, chat=False))

        def gen() -> CompletionResponseGen:
            text = ""
            for chunk in pipeline.stream(call.asked):
                if isinstance(chunk.raw, CompletionResponse):
                    yield chunk.raw
                elif chunk.text:
                    text += chunk.text
                    yield CompletionResponse(text=text, delta=chunk.text)

        return gen()

    @llm_completion_callback()
    async def astream_complete(self, prompt: str, formatted: bool = False,
                               **kwargs: Any) -> CompletionResponseAsyncGen:
        call = self._prompt_call(prompt, formatted, kwargs)
        pipeline = self._pipeline(_Inner(self, call, chat=False))

        async def gen() -> CompletionResponseAsyncGen:
            text = ""
            async for chunk in pipeline.astream(call.asked):
                if isinstance(chunk.raw, CompletionResponse):
                    yield chunk.raw
                elif chunk.text:
                    text += chunk.text
                    yield CompletionResponse(text=text, delta=chunk.text)

        return gen()

    # ---- structured output: the wrapped LLM's own way ------------------------------

    def _extend_messages(self, messages: list[ChatMessage]) -> list[ChatMessage]:
        """The wrapped LLM's system prompt, as it would add it."""
        extended: list[ChatMessage] = self.inner._extend_messages(messages)
        return extended

    def _native_format(self, output_cls: type[Any],
                       llm_kwargs: dict[str, Any] | None) -> dict[str, Any] | None:
        """Arguments for the wrapped LLM's own structured-output mode (LlamaIndex's
        OpenAI-style LLMs ask for a JSON-schema response format where the model supports
        one), or None when it has none or does not use it for this model."""
        uses = getattr(self.inner, "_should_use_structure_outputs", None)
        prepare = getattr(self.inner, "_prepare_schema", None)
        if callable(uses) and callable(prepare) and uses():
            native: dict[str, Any] = prepare(dict(llm_kwargs or {}), output_cls)
            return native
        return None

    def _tool_kwargs(self, llm_kwargs: dict[str, Any] | None) -> dict[str, Any]:
        """Arguments for the function-calling way; OpenAI-style LLMs force the tool call."""
        kwargs = dict(llm_kwargs or {})
        if callable(getattr(self.inner, "_should_use_structure_outputs", None)):
            kwargs.setdefault("tool_choice", "required")
        return kwargs

    def _schema_messages(self, prompt: Any, prompt_args: dict[str, Any]) -> list[ChatMessage]:
        return self._extend_messages(prompt.format_messages(**prompt_args))

    def structured_predict(self, output_cls: type[Any], prompt: Any,
                           llm_kwargs: dict[str, Any] | None = None, **prompt_args: Any) -> Any:
        native = self._native_format(output_cls, llm_kwargs)
        if native is None:
            return super().structured_predict(output_cls, prompt,
                                              llm_kwargs=self._tool_kwargs(llm_kwargs),
                                              **prompt_args)
        response = self.chat(self._schema_messages(prompt, prompt_args), **native)
        return output_cls.model_validate_json(str(response.message.content))

    async def astructured_predict(self, output_cls: type[Any], prompt: Any,
                                  llm_kwargs: dict[str, Any] | None = None,
                                  **prompt_args: Any) -> Any:
        native = self._native_format(output_cls, llm_kwargs)
        if native is None:
            return await super().astructured_predict(output_cls, prompt,
                                                     llm_kwargs=self._tool_kwargs(llm_kwargs),
                                                     **prompt_args)
        response = await self.achat(self._schema_messages(prompt, prompt_args), **native)
        return output_cls.model_validate_json(str(response.message.content))

    def _structured_stream_call(self, output_cls: type[Any], prompt: Any,
                                llm_kwargs: dict[str, Any] | None = None,
                                **prompt_args: Any) -> Any:
        from llama_index.core.program.streaming_utils import process_streaming_content_incremental

        native = self._native_format(output_cls, llm_kwargs)
        if native is None:
            return super()._structured_stream_call(output_cls, prompt,
                                                   self._tool_kwargs(llm_kwargs), **prompt_args)
        messages = self._schema_messages(prompt, prompt_args)

        def gen() -> Iterator[Any]:
            current = None
            for response in self.stream_chat(messages, **native):
                current = process_streaming_content_incremental(response, output_cls, current)
                yield current

        return gen()

    async def _structured_astream_call(self, output_cls: type[Any], prompt: Any,
                                       llm_kwargs: dict[str, Any] | None = None,
                                       **prompt_args: Any) -> Any:
        from llama_index.core.program.streaming_utils import process_streaming_content_incremental

        native = self._native_format(output_cls, llm_kwargs)
        if native is None:
            return await super()._structured_astream_call(
                output_cls, prompt, self._tool_kwargs(llm_kwargs), **prompt_args)
        messages = self._schema_messages(prompt, prompt_args)

        async def gen() -> AsyncIterator[Any]:
            current = None
            async for response in await self.astream_chat(messages, **native):
                current = process_streaming_content_incremental(response, output_cls, current)
                yield current

        return gen()

    # ---- tools: prepared and parsed by the wrapped LLM ------------------------------

    def _tool_caller(self) -> FunctionCallingLLM:
        if not isinstance(self.inner, FunctionCallingLLM):
            raise InvalidRequestError(
                f"the wrapped LLM ({type(self.inner).__name__}) does not call tools; wrap a "
                "function-calling LLM (e.g. llama_index.llms.openai.OpenAI) to use tools")
        return self.inner

    def _prepare_chat_with_tools(self, tools: Sequence[Any], user_msg: Any = None,
                                 chat_history: list[ChatMessage] | None = None,
                                 verbose: bool = False, allow_parallel_tool_calls: bool = False,
                                 tool_required: bool = False, **kwargs: Any) -> dict[str, Any]:
        return self._tool_caller()._prepare_chat_with_tools_compat(
            tools, user_msg=user_msg, chat_history=chat_history, verbose=verbose,
            allow_parallel_tool_calls=allow_parallel_tool_calls, tool_required=tool_required,
            **kwargs)

    def _validate_chat_with_tools_response(self, response: ChatResponse, tools: Sequence[Any],
                                           allow_parallel_tool_calls: bool = False,
                                           **kwargs: Any) -> ChatResponse:
        return self._tool_caller()._validate_chat_with_tools_response(
            response, tools, allow_parallel_tool_calls=allow_parallel_tool_calls, **kwargs)

    def get_tool_calls_from_response(self, response: ChatResponse,
                                     error_on_no_tool_call: bool = True,
                                     **kwargs: Any) -> list[Any]:
        return self._tool_caller().get_tool_calls_from_response(
            response, error_on_no_tool_call=error_on_no_tool_call, **kwargs)


def _hit_id_from_li(answer: ChatResponse | CompletionResponse | str) -> str | None:
    """The cache hit id on what the wrapper returned, the id itself for a string, or
    None when the answer was no semantic hit under a bound."""
    if isinstance(answer, str):
        return answer
    if not isinstance(answer, (ChatResponse, CompletionResponse)):
        raise InvalidRequestError(f"report_wrong_hit takes the ChatResponse or "
                                  f"CompletionResponse the hit answered with, or its "
                                  f"cache_hit_id; got {type(answer).__name__}")
    ours = (answer.additional_kwargs or {}).get("tokenlean")
    hit_id = ours.get("cache_hit_id") if isinstance(ours, Mapping) else None
    return hit_id if isinstance(hit_id, str) else None


class _Inner:
    """The wrapped LLM as the pipeline's provider (chat or completion; complete and
    stream), called with the app's own arguments and what the layers changed."""

    name = "llamaindex"

    def __init__(self, owner: LeanLLM, call: _Call, *, chat: bool) -> None:
        self.owner, self.call, self.chat = owner, call, chat

    def _target(self, request: Request) -> tuple[Any, Any, dict[str, Any]]:
        """(bound method's LLM, its first argument, kwargs) for ``request``."""
        llm, kwargs = LeanLLM._target(request, self.call, self.owner.inner)
        if self.chat:
            return llm, LeanLLM._messages(request, self.call), kwargs
        return llm, request.last_user_text, kwargs

    def complete(self, request: Request) -> Response:
        llm, first, kwargs = self._target(request)
        out = llm.chat(first, **kwargs) if self.chat else llm.complete(first, **kwargs)
        return LeanLLM._response(request, out)

    async def acomplete(self, request: Request) -> Response:
        llm, first, kwargs = self._target(request)
        out = await (llm.achat(first, **kwargs) if self.chat else llm.acomplete(first, **kwargs))
        return LeanLLM._response(request, out)

    def stream(self, request: Request) -> Iterator[Chunk]:
        llm, first, kwargs = self._target(request)
        pieces = llm.stream_chat(first, **kwargs) if self.chat \
            else llm.stream_complete(first, **kwargs)
        last = None
        for piece in pieces:
            last = piece
            yield Chunk(text=piece.delta or "", raw=piece)
        yield Chunk(response=LeanLLM._response(request, last))

    async def astream(self, request: Request) -> AsyncIterator[Chunk]:
        llm, first, kwargs = self._target(request)
        pieces = await (llm.astream_chat(first, **kwargs) if self.chat
                        else llm.astream_complete(first, **kwargs))
        last = None
        async for piece in pieces:
            last = piece
            yield Chunk(text=piece.delta or "", raw=piece)
        yield Chunk(response=LeanLLM._response(request, last))


def lean(llm: Any, *, layers: Sequence[Any] | None = None, cache: LayerChoice = None,
         compress: LayerChoice = None, templates: LayerChoice = None,
         budget: LayerChoice = None, preset: str = "safe", ledger: Any = None,
         tenant: str = "default", model: str | None = None, **options: Any) -> LeanLLM:
    """Wrap a LlamaIndex LLM so every call runs through tokenlean (see
    ``tokenlean.core.presets`` for what each keyword and preset turns on; ``ledger`` is
    a path or a ledger object, ``False`` for none; other keywords such as
    ``cache_sampled=True`` go to :func:`tokenlean.core.presets.build_layers`)."""
    chosen, sink = resolve_lean(layers=layers, cache=cache, compress=compress,
                                templates=templates, budget=budget, preset=preset,
                                ledger=ledger, **options)
    return LeanLLM(inner=llm, layers=chosen, ledger=sink, tenant=tenant, model_name=model)


def lean_query_engine(index: Any, llm: Any, *, postprocessors: Sequence[Any] = (),
                      **lean_kwargs: Any) -> Any:
    """``index.as_query_engine`` with ``lean(llm, **lean_kwargs)`` as its LLM and
    ``postprocessors`` (e.g. tokenlean's compression postprocessor) appended."""
    query_kwargs = {k: lean_kwargs.pop(k) for k in list(lean_kwargs)
                    if k in {"similarity_top_k", "response_mode", "streaming"}}
    return index.as_query_engine(llm=lean(llm, **lean_kwargs),
                                 node_postprocessors=list(postprocessors), **query_kwargs)
