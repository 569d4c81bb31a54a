"""``lean(llm)``: any LlamaIndex LLM behind the tokenlean pipeline."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence
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
    MessageRole,
)
from llama_index.core.llms.callbacks import llm_chat_callback, llm_completion_callback
from llama_index.core.llms.llm import LLM
from pydantic import ConfigDict, Field

from tokenlean.core import (
    CallResult,
    Chunk,
    FunctionProvider,
    Message,
    Pipeline,
    Request,
    Response,
    SQLiteLedger,
    Usage,
    count_messages,
    count_tokens,
)
from tokenlean.core.presets import LayerChoice, build_layers

from ._convert import from_li_messages, to_li_message, usage_from_li

__all__ = ["LeanLLM", "lean", "lean_query_engine"]


def _limits(request: Request, kwargs: dict[str, Any]) -> dict[str, Any]:
    """The call's keyword arguments with the max_tokens the layers set (a budget's bound)."""
    if request.max_tokens is None:
        return kwargs
    return {**kwargs, "max_tokens": request.max_tokens}


def _estimate(request: Request, text: str) -> Usage:
    """Usage the inner LLM did not report, counted the way the model is billed."""
    return Usage(input_tokens=count_messages(request.messages, model=request.model).tokens,
                 output_tokens=count_tokens(text, model=request.model).tokens)


class LeanLLM(LLM):
    """A LlamaIndex LLM that runs tokenlean's layers around ``inner``."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    inner: Any = Field(description="The wrapped LlamaIndex LLM.")
    layers: list[Any] = Field(default_factory=list, description="tokenlean layers, in order.")
    ledger: Any = Field(default=None, description="Where call records go.")
    tenant: str = Field(default="default")
    model_name: str | None = Field(default=None, description="Model for counting and prices.")

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

    # ---- pure helpers ---------------------------------------------------------

    def _request(self, messages: Sequence[Message], kwargs: dict[str, Any]) -> Request:
        return Request(messages=tuple(messages), model=self._model,
                       max_tokens=kwargs.get("max_tokens"), tenant=kwargs.pop("tenant", None)
                       or self.tenant, user=kwargs.pop("user", None))

    def _pipeline(self, provider: Any) -> Pipeline:
        return Pipeline(provider=provider, layers=self.layers, ledger=self.ledger)

    @staticmethod
    def _response(request: Request, text: str, raw: Any, extra: dict[str, Any]) -> Response:
        usage = usage_from_li(raw, extra) or _estimate(request, text)
        return Response(text=text, usage=usage, model=request.model, raw=raw)

    @staticmethod
    def _meta(result: CallResult) -> dict[str, Any]:
        record = result.record
        return {"tokenlean": {
            "request_id": record.request_id, "cached": result.response.cached,
            "cache_score": result.response.cache_score,
            "saved_tokens": {r.layer: r.saved_input_tokens + r.saved_output_tokens
                             for r in record.layers},
            "cost_usd": None if record.cost_usd is None else float(record.cost_usd),
            "record": record.to_dict()},  # what the cost handler books for this call
            "prompt_tokens": result.response.usage.input_tokens,
            "completion_tokens": result.response.usage.output_tokens}

    def _chat_provider(self, kwargs: dict[str, Any]) -> FunctionProvider:
        def call(req: Request) -> Response:
            out = self.inner.chat([to_li_message(m) for m in req.messages],
                                  **_limits(req, kwargs))
            return self._response(req, out.message.content or "", out.raw, out.additional_kwargs)

        async def acall(req: Request) -> Response:
            out = await self.inner.achat([to_li_message(m) for m in req.messages],
                                         **_limits(req, kwargs))
            return self._response(req, out.message.content or "", out.raw, out.additional_kwargs)

        return FunctionProvider(call, afunc=acall, name="llamaindex")

    def _completion_provider(self, formatted: bool, kwargs: dict[str, Any]) -> FunctionProvider:
        def call(req: Request) -> Response:
            out = self.inner.complete(req.last_user_text, formatted=formatted,
                                      **_limits(req, kwargs))
            return self._response(req, out.text, out.raw, out.additional_kwargs)

        async def acall(req: Request) -> Response:
            out = await self.inner.acomplete(req.last_user_text, formatted=formatted,
                                             **_limits(req, kwargs))
            return self._response(req, out.text, out.raw, out.additional_kwargs)

        return FunctionProvider(call, afunc=acall, name="llamaindex")

    # ---- chat -------------------------------------------------------------------

    @llm_chat_callback()
    def chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        request = self._request(from_li_messages(messages), kwargs)
        result = self._pipeline(self._chat_provider(kwargs)).run(request)
        return ChatResponse(message=ChatMessage(role=MessageRole.ASSISTANT,
                                                content=result.response.text),
                            raw=result.response.raw, additional_kwargs=self._meta(result))

    @llm_chat_callback()
    async def achat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        request = self._request(from_li_messages(messages), kwargs)
        result = await self._pipeline(self._chat_provider(kwargs)).arun(request)
        return ChatResponse(message=ChatMessage(role=MessageRole.ASSISTANT,
                                                content=result.response.text),
                            raw=result.response.raw, additional_kwargs=self._meta(result))

    @llm_chat_callback()
    def stream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseGen:
        request = self._request(from_li_messages(messages), kwargs)
        provider = _StreamingInner(self, kwargs, chat=True)

        def gen() -> ChatResponseGen:
            text = ""
            for chunk in self._pipeline(provider).stream(request):
                text += chunk.text
                if chunk.text or chunk.response is not None:
                    yield ChatResponse(message=ChatMessage(role=MessageRole.ASSISTANT,
                                                           content=text), delta=chunk.text)

        return gen()

    @llm_chat_callback()
    async def astream_chat(self, messages: Sequence[ChatMessage],
                           **kwargs: Any) -> ChatResponseAsyncGen:
        request = self._request(from_li_messages(messages), kwargs)
        provider = _StreamingInner(self, kwargs, chat=True)

        async def gen() -> ChatResponseAsyncGen:
            text = ""
            async for chunk in self._pipeline(provider).astream(request):
                text += chunk.text
                if chunk.text or chunk.response is not None:
                    yield ChatResponse(message=ChatMessage(role=MessageRole.ASSISTANT,
                                                           content=text), delta=chunk.text)

        return gen()

    # ---- completion --------------------------------------------------------------

    def _prompt_request(self, prompt: str, kwargs: dict[str, Any]) -> Request:
        return self._request((Message(role="user", content=prompt),), kwargs)

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        request = self._prompt_request(prompt, kwargs)
        result = self._pipeline(self._completion_provider(formatted, kwargs)).run(request)
        return CompletionResponse(text=result.response.text, raw=result.response.raw,
                                  additional_kwargs=self._meta(result))

    @llm_completion_callback()
    async def acomplete(self, prompt: str, formatted: bool = False,
                        **kwargs: Any) -> CompletionResponse:
        request = self._prompt_request(prompt, kwargs)
        result = await self._pipeline(self._completion_provider(formatted, kwargs)).arun(request)
        return CompletionResponse(text=result.response.text, raw=result.response.raw,
                                  additional_kwargs=self._meta(result))

    @llm_completion_callback()
    def stream_complete(self, prompt: str, formatted: bool = False,
                        **kwargs: Any) -> CompletionResponseGen:
        request = self._prompt_request(prompt, kwargs)
        provider = _StreamingInner(self, {**kwargs, "formatted": formatted}, chat=False)

        def gen() -> CompletionResponseGen:
            text = ""
            for chunk in self._pipeline(provider).stream(request):
                text += chunk.text
                if chunk.text or chunk.response is not None:
                    yield CompletionResponse(text=text, delta=chunk.text)

        return gen()

    @llm_completion_callback()
    async def astream_complete(self, prompt: str, formatted: bool = False,
                               **kwargs: Any) -> CompletionResponseAsyncGen:
        request = self._prompt_request(prompt, kwargs)
        provider = _StreamingInner(self, {**kwargs, "formatted": formatted}, chat=False)

        async def gen() -> CompletionResponseAsyncGen:
            text = ""
            async for chunk in self._pipeline(provider).astream(request):
                text += chunk.text
                if chunk.text or chunk.response is not None:
                    yield CompletionResponse(text=text, delta=chunk.text)

        return gen()


class _StreamingInner:
    """Provider that streams from the wrapped LLM (chat or completion)."""

    name = "llamaindex"

    def __init__(self, owner: LeanLLM, kwargs: dict[str, Any], *, chat: bool) -> None:
        self.owner, self.kwargs, self.chat = owner, kwargs, chat

    def _args(self, request: Request) -> tuple[Any, dict[str, Any]]:
        if self.chat:
            return [to_li_message(m) for m in request.messages], _limits(request, self.kwargs)
        return request.last_user_text, _limits(request, self.kwargs)

    def _delta_text(self, piece: Any) -> str:
        return piece.delta or ""

    def complete(self, request: Request) -> Response:
        provider = (self.owner._chat_provider(self.kwargs) if self.chat else
                    self.owner._completion_provider(
                        self.kwargs.get("formatted", False),
                        {k: v for k, v in self.kwargs.items() if k != "formatted"}))
        return provider.complete(request)

    async def acomplete(self, request: Request) -> Response:
        return await (self.owner._chat_provider(self.kwargs) if self.chat else
                      self.owner._completion_provider(
                          self.kwargs.get("formatted", False),
                          {k: v for k, v in self.kwargs.items() if k != "formatted"})
                      ).acomplete(request)

    def stream(self, request: Request) -> Iterator[Chunk]:
        args, kwargs = self._args(request)
        method = self.owner.inner.stream_chat if self.chat else self.owner.inner.stream_complete
        text, last = "", None
        for piece in method(args, **kwargs):
            delta = self._delta_text(piece)
            text, last = text + delta, piece
            if delta:
                yield Chunk(text=delta)
        yield Chunk(response=self.owner._response(
            request, text, getattr(last, "raw", None), getattr(last, "additional_kwargs", {})))

    async def astream(self, request: Request) -> AsyncIterator[Chunk]:
        args, kwargs = self._args(request)
        method = self.owner.inner.astream_chat if self.chat else self.owner.inner.astream_complete
        text, last = "", None
        async for piece in await method(args, **kwargs):
            delta = self._delta_text(piece)
            text, last = text + delta, piece
            if delta:
                yield Chunk(text=delta)
        yield Chunk(response=self.owner._response(
            request, text, getattr(last, "raw", None), getattr(last, "additional_kwargs", {})))


def lean(llm: Any, *, layers: Sequence[Any] | None = None, cache: LayerChoice = None,
         compress: LayerChoice = None, templates: LayerChoice = None,
         budget: LayerChoice = None, preset: str = "safe", ledger: Any = None,
         tenant: str = "default", model: str | None = None) -> LeanLLM:
    """Wrap a LlamaIndex LLM so every call runs through tokenlean (see
    ``tokenlean.core.presets`` for what each keyword and preset turns on)."""
    chosen = list(layers) if layers is not None else build_layers(
        preset=preset, cache=cache, compress=compress, templates=templates, budget=budget)
    sink = None if ledger is False else (ledger if ledger is not None else SQLiteLedger())
    return LeanLLM(inner=llm, layers=chosen, ledger=sink, tenant=tenant, model_name=model)


def lean_query_engine(index: Any, llm: Any, *, postprocessors: Sequence[Any] = (),
                      **lean_kwargs: Any) -> Any:
    """``index.as_query_engine`` with ``lean(llm, **lean_kwargs)`` as its LLM and
    ``postprocessors`` (e.g. tokenlean's compression postprocessor) appended."""
    query_kwargs = {k: lean_kwargs.pop(k) for k in list(lean_kwargs)
                    if k in {"similarity_top_k", "response_mode", "streaming"}}
    return index.as_query_engine(llm=lean(llm, **lean_kwargs),
                                 node_postprocessors=list(postprocessors), **query_kwargs)
