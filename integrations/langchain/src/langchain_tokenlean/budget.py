"""``BudgetCallbackHandler``: tokenlean budgets around any LangChain chat model.

Enforces in ``on_chat_model_start`` (reserves the call's worst case, raising
:class:`~tokenlean.core.BudgetExceeded` before the model runs), settles in
``on_llm_end`` with the message's ``usage_metadata`` (streamed calls too: a
stream without usage is charged by counting its text, never as $0) and
releases the reservation in ``on_llm_error``.

A callback cannot change the call, so here every budget acts as ``"raise"``
or ``"warn"``: ``"clamp"`` and ``"route"`` refuse a call that does not fit
as it is. Set ``max_tokens`` on the model (it is read from LangChain's
``ls_max_tokens``), or the layer's predictor / ``default_max_tokens`` is
reserved. Tenant and user come from the run's metadata (``tenant``,
``user``/``user_id``) or the handler's defaults.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import BaseMessage
from langchain_core.outputs import LLMResult

from tokenlean.budget import BudgetLayer
from tokenlean.core import ConfigError, Request, Response
from tokenlean.core.settings import build_request, call_tenant, check_tenant, merge_settings

from ._convert import from_lc_messages, usage_from_lc

__all__ = ["BudgetCallbackHandler"]


class BudgetCallbackHandler(BaseCallbackHandler):
    """Reserve / settle / release a :class:`~tokenlean.budget.BudgetLayer`'s budgets."""

    raise_error: bool = True  # BudgetExceeded must stop the call

    def __init__(self, layer: BudgetLayer, *, tenant: str = "default", user: str | None = None,
                 default_model: str | None = None) -> None:
        if not isinstance(layer, BudgetLayer):
            raise ConfigError("BudgetCallbackHandler needs a tokenlean.budget.BudgetLayer")
        self.layer = layer
        check_tenant(tenant)
        self.tenant, self.user, self.default_model = tenant, user, default_model
        self._runs: dict[UUID, Request] = {}
        self._lock = threading.Lock()

    def _request(self, messages: Sequence[BaseMessage], metadata: dict[str, Any],
                 invocation: dict[str, Any]) -> Request:
        """The call as core's one mapping reads it: the model's invocation parameters (its
        own settings and the call's, cap included under whatever name the model uses),
        the model name LangChain traces it as, else ``default_model``."""
        settings = ({"model": self.default_model, "max_tokens": metadata.get("ls_max_tokens")},
                    invocation, {"model": metadata.get("ls_model_name")})
        if not merge_settings(*settings).get("model"):
            raise ConfigError("cannot tell which model this call uses (no ls_model_name); "
                              "pass BudgetCallbackHandler(default_model=...)")
        return build_request(from_lc_messages(messages), *settings,
                             tenant=call_tenant(metadata, self.tenant),
                             user=metadata.get("user") or metadata.get("user_id") or self.user)

    def on_chat_model_start(self, serialized: dict[str, Any], messages: list[list[BaseMessage]],
                            *, run_id: UUID, metadata: dict[str, Any] | None = None,
                            **kwargs: Any) -> None:
        request = self._request(messages[0], metadata or {}, kwargs.get("invocation_params") or {})
        reserved = self.layer.reserve(request, adjust=False)
        with self._lock:
            self._runs[run_id] = reserved

    def on_llm_end(self, response: LLMResult, *, run_id: UUID, **kwargs: Any) -> None:
        with self._lock:
            request = self._runs.pop(run_id, None)
        if request is None:
            return
        generation = response.generations[0][0] if response.generations and \
            response.generations[0] else None
        message = getattr(generation, "message", None)
        usage = usage_from_lc(getattr(message, "usage_metadata", None))
        if usage.total_tokens == 0 and response.llm_output:
            token_usage = response.llm_output.get("token_usage") or {}
            usage = usage_from_lc({"input_tokens": token_usage.get("prompt_tokens", 0),
                                   "output_tokens": token_usage.get("completion_tokens", 0)})
        finish = ((getattr(generation, "generation_info", None) or {}).get("finish_reason")
                  or (getattr(message, "response_metadata", None) or {}).get("finish_reason")
                  or "stop")
        text = generation.text if generation is not None else ""
        self.layer.settle(request, Response(text=text, usage=usage, model=request.model,
                                            finish_reason=str(finish)))

    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        with self._lock:
            request = self._runs.pop(run_id, None)
        if request is not None:
            self.layer.cancel(request, error)
