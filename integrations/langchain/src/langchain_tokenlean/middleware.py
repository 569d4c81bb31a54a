"""``TokenleanMiddleware``: tokenlean's layers as a LangChain v1 agent middleware.

For apps built with ``create_agent`` the model call is the place to hook in::

    from langchain.agents import create_agent
    from langchain_tokenlean.middleware import TokenleanMiddleware

    agent = create_agent(model, tools, middleware=[TokenleanMiddleware(preset="max-savings")])

Each model call of the agent goes to the agent's model wrapped the way
``lean()`` wraps it (a :class:`LeanChatModel` over the same layers and
ledger). The agent then binds its tools, tool choice, structured-output
strategy and model settings on the wrapper exactly as it would on the model,
so the call is described by the same request mapping as ``lean()``: the
cache keys on all of it and may answer (tool calls and structured output
included: the agent parses the replayed message like the model's own),
templates and compression rewrite the messages, the budget layer's cap
reaches the model (never above the app's), and the ledger gets one row per
call. Messages no layer changed reach the model as the very objects the
agent built (ids, metadata intact), so with the lossless defaults a miss is
the call the agent would have made.

Limit: a budget layer's *model* choice (``policy="route"``) is recorded but
the agent's model is kept (swap models with LangChain's own model middleware).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from langchain.agents.middleware import AgentMiddleware, ModelRequest, ModelResponse
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage

from tokenlean.core.presets import LayerChoice, resolve_lean
from tokenlean.core.settings import check_tenant

from .chat_models import LeanChatModel, areport_to_cache, report_to_cache

__all__ = ["TokenleanMiddleware"]

Handler = Callable[[ModelRequest], ModelResponse]
AsyncHandler = Callable[[ModelRequest], Awaitable[ModelResponse]]


class TokenleanMiddleware(AgentMiddleware):
    """Runs tokenlean's cache, templates, compression and budget around each model call.

    Keywords are ``lean()``'s: a ``preset`` (``"safe"``, ``"max-savings"``,
    ``"off"``), one keyword per layer, or ``layers=[...]``; ``ledger`` (a path
    or a ledger object; default ``~/.tokenlean/ledger.sqlite``, ``False`` for
    none); ``model`` names the price list and tokenizer when the agent's model
    name is not a priced one; other keywords (``cache_sampled=True``) go to
    :func:`tokenlean.core.presets.build_layers`.
    """

    def __init__(self, *, preset: str = "safe", layers: Sequence[Any] | None = None,
                 cache: LayerChoice = None, compress: LayerChoice = None,
                 templates: LayerChoice = None, budget: LayerChoice = None,
                 ledger: Any = None, tenant: str = "default", model: str | None = None,
                 **options: Any) -> None:
        check_tenant(tenant)
        super().__init__()
        self.layers, self.ledger = resolve_lean(layers=layers, cache=cache, compress=compress,
                                                templates=templates, budget=budget,
                                                preset=preset, ledger=ledger, **options)
        self.tenant, self.model = tenant, model

    def _leaned(self, request: ModelRequest) -> ModelRequest:
        """``request`` with its model behind tokenlean (the layers and ledger shared)."""
        model: BaseChatModel = request.model
        wrapped = LeanChatModel(inner=model, layers=self.layers, ledger=self.ledger,
                                tenant=self.tenant, model=self.model)
        return request.override(model=wrapped)

    def wrap_model_call(self, request: ModelRequest, handler: Handler) -> ModelResponse:
        return handler(self._leaned(request))

    async def awrap_model_call(self, request: ModelRequest,
                               handler: AsyncHandler) -> ModelResponse:
        return await handler(self._leaned(request))

    def report_wrong_hit(self, message_or_hit_id: BaseMessage | str) -> bool:
        """Tell the middleware's cache that a semantic hit it served the agent was wrong
        (the agent's ``AIMessage``, or its ``response_metadata["tokenlean"]
        ["cache_hit_id"]``); see :meth:`LeanChatModel.report_wrong_hit`."""
        return report_to_cache(self.layers, message_or_hit_id)

    async def areport_wrong_hit(self, message_or_hit_id: BaseMessage | str) -> bool:
        return await areport_to_cache(self.layers, message_or_hit_id)
