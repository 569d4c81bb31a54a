"""``TokenleanMiddleware``: tokenlean's layers as a LangChain v1 agent middleware.

For apps built with ``create_agent`` the model call is the place to hook in::

    from langchain.agents import create_agent
    from langchain_tokenlean.middleware import TokenleanMiddleware

    agent = create_agent(model, tools, middleware=[TokenleanMiddleware(preset="max-savings")])

Every model call of the agent runs through the same pipeline as ``lean()``:
the cache may answer it (the model is not called), templates and compression
rewrite the system prompt and messages, the budget layer's ``max_tokens`` is
put into the call's ``model_settings`` (so ``create_agent`` binds it on the
model), and the ledger gets one row per call. Messages a layer did not change
reach the model as the very objects the agent built (ids, metadata intact), so
with the lossless defaults a miss is the call the agent would have made.

Limits: a budget layer's *model* choice is recorded but the agent's model is
kept (swap models with LangChain's own model middleware); a cache hit carries
the answer message only, not a ``structured_response``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from contextvars import ContextVar
from typing import Any

from langchain.agents.middleware import AgentMiddleware, ModelRequest, ModelResponse
from langchain_core.messages import AIMessage, AnyMessage, SystemMessage
from langchain_core.utils.function_calling import convert_to_openai_tool

from tokenlean.core import CallResult, FunctionProvider, Pipeline, Request, Response
from tokenlean.core.presets import LayerChoice

from ._convert import from_lc_message, to_lc_message
from .chat_models import LeanChatModel, _model_name, resolve

__all__ = ["TokenleanMiddleware"]

# the running call's way to the agent's handler (see TokenleanMiddleware._pipeline)
_route: ContextVar[Callable[[Request], Any]] = ContextVar("tokenlean_agent_route")

Handler = Callable[[ModelRequest], ModelResponse]
AsyncHandler = Callable[[ModelRequest], Awaitable[ModelResponse]]


class TokenleanMiddleware(AgentMiddleware):
    """Runs tokenlean's cache, templates, compression and budget around each model call.

    Keywords are ``lean()``'s: a ``preset`` (``"safe"``, ``"max-savings"``,
    ``"off"``), one keyword per layer, or ``layers=[...]``; ``ledger`` (default
    ``~/.tokenlean/ledger.sqlite``, ``False`` for none); ``model`` names the
    price list and tokenizer when the agent's model name is not a priced one.
    """

    def __init__(self, *, preset: str = "safe", layers: Sequence[Any] | None = None,
                 cache: LayerChoice = None, compress: LayerChoice = None,
                 templates: LayerChoice = None, budget: LayerChoice = None,
                 ledger: Any = None, tenant: str = "default", model: str | None = None) -> None:
        super().__init__()
        self.layers, self.ledger = resolve(layers=layers, cache=cache, compress=compress,
                                           templates=templates, budget=budget, preset=preset,
                                           ledger=ledger)
        self.tenant, self.model = tenant, model
        self._built: Pipeline | None = None

    # ---- pure helpers (sync and async share them) -----------------------------

    @staticmethod
    def _lc_messages(request: ModelRequest) -> list[AnyMessage]:
        head = [request.system_message] if request.system_message is not None else []
        return [*head, *request.messages]

    @staticmethod
    def _cap(request: ModelRequest) -> int | None:
        value = request.model_settings.get("max_tokens", getattr(request.model, "max_tokens",
                                                                  None))
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    def _request(self, request: ModelRequest) -> Request:
        tools = tuple(t if isinstance(t, dict) else convert_to_openai_tool(t)
                      for t in request.tools)
        return Request(messages=tuple(from_lc_message(m) for m in self._lc_messages(request)),
                       model=self.model or _model_name(request.model),
                       max_tokens=self._cap(request), tools=tools, tenant=self.tenant)

    def _model_request(self, request: ModelRequest, sent: Request,
                       asked: Request) -> ModelRequest:
        """``request`` with what the layers changed (``asked`` -> ``sent``): messages,
        system prompt, max_tokens. Unchanged, it is the agent's own request."""
        settings = dict(request.model_settings)
        if sent.max_tokens is not None and sent.max_tokens != asked.max_tokens:
            settings["max_tokens"] = sent.max_tokens  # the budget layer's prediction
        if sent.messages is asked.messages:  # no layer touched them
            if settings == request.model_settings:
                return request
            return request.override(model_settings=settings)
        original = self._lc_messages(request)
        messages = [original[i] if i < len(original) and from_lc_message(original[i]) == new
                    else to_lc_message(new) for i, new in enumerate(sent.messages)]
        system: SystemMessage | None = None
        if request.system_message is not None and messages \
                and isinstance(messages[0], SystemMessage):
            system, messages = messages[0], messages[1:]
        return request.override(messages=messages, system_message=system,
                                model_settings=settings)

    @staticmethod
    def _answer(response: ModelResponse) -> AIMessage:
        return next((m for m in reversed(response.result) if isinstance(m, AIMessage)),
                    AIMessage(content=""))

    @staticmethod
    def _result(result: CallResult, misses: list[ModelResponse]) -> ModelResponse:
        message = LeanChatModel._message(result.response, result.request, result.record)
        original = misses[-1] if misses else None
        if original is None or result.response.cached:
            return ModelResponse(result=[message])
        answer = TokenleanMiddleware._answer(original)
        return ModelResponse(result=[message if m is answer else m for m in original.result],
                             structured_response=original.structured_response)

    def _pipeline(self) -> Pipeline:
        """One pipeline for every call (built once); its provider follows ``_route``,
        the running call's way to the agent's handler (calls may overlap)."""
        if self._built is None:
            self._built = Pipeline(provider=FunctionProvider(
                lambda req: _route.get()(req), afunc=lambda req: _route.get()(req),
                name="langchain-agent"), layers=self.layers, ledger=self.ledger)
        return self._built

    # ---- the hooks ---------------------------------------------------------------

    def wrap_model_call(self, request: ModelRequest, handler: Handler) -> ModelResponse:
        misses: list[ModelResponse] = []  # the agent's own response on a miss
        asked = self._request(request)

        def call(sent: Request) -> Response:
            misses.append(handler(self._model_request(request, sent, asked)))
            return LeanChatModel._to_response(self._answer(misses[-1]))

        token = _route.set(call)
        try:
            return self._result(self._pipeline().run(asked), misses)
        finally:
            _route.reset(token)

    async def awrap_model_call(self, request: ModelRequest,
                               handler: AsyncHandler) -> ModelResponse:
        misses: list[ModelResponse] = []
        asked = self._request(request)

        async def acall(sent: Request) -> Response:
            misses.append(await handler(self._model_request(request, sent, asked)))
            return LeanChatModel._to_response(self._answer(misses[-1]))

        token = _route.set(acall)
        try:
            return self._result(await self._pipeline().arun(asked), misses)
        finally:
            _route.reset(token)
