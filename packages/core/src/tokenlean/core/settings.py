"""One mapping from a model's settings to a :class:`Request`.

Every adapter (LangChain's ``lean()`` and agent middleware, LlamaIndex's
``lean()``) describes a call the same way: the messages, then **layers of
settings**, lowest precedence first -- the wrapped model's own configuration
(``ChatOpenAI(max_tokens=30, temperature=1.2)``), then anything the wrapper
overrides, then the call's own arguments. :func:`build_request` merges them
into one :class:`Request` that carries every setting that changes the answer
or what it costs, so the cache keys on all of them, the budget layer sees the
app's own cap, and the ledger prices the model that was asked for.

How a layer of settings is read (the same for every framework):

* Nested provider options are lifted to the top of their layer, where they win
  (``model_kwargs`` of LangChain models, ``additional_kwargs`` of LlamaIndex
  LLMs, the OpenAI SDK's ``extra_body``), as the frameworks themselves do.
* The output cap goes by many names (:data:`OUTPUT_CAP_KEYS`); a layer's is
  the lowest it names, and it becomes ``Request.max_tokens``.
* The model is the first of :data:`MODEL_KEYS`; ``stop_sequences`` is
  ``stop``, ``random_seed`` is ``seed``.
* ``tool_choice`` is written the OpenAI way (LangChain's and Anthropic's
  ``"any"`` is ``"required"``, a tool name is ``{"type": "function", ...}``),
  so one meaning gives one request.
* ``None`` means "not set": it never overrides a lower layer.
* Settings that change neither the answer nor its cost (transport, retries,
  credentials, streaming, tracing: :data:`NOT_ANSWER_KEYS`, and any name
  starting with ``_`` or ``ls_``) are left out. Everything else goes into
  ``Request.params`` as JSON-like values (a Pydantic class as its JSON schema,
  any other object as its ``repr``), so an unknown setting can only make two
  calls look different, never alike.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import Enum
from typing import Any

from .errors import ConfigError
from .types import OUTPUT_CAP_KEYS, Message, Request

__all__ = ["MODEL_KEYS", "NOT_ANSWER_KEYS", "OUTPUT_CAP_KEYS", "build_request", "cap_key",
           "merge_settings", "model_of"]

#: where frameworks keep the model's name, in the order they are read
MODEL_KEYS: tuple[str, ...] = ("model", "model_name", "model_id")
#: nested option mappings whose keys are sent as top-level body fields
NESTED_KEYS: tuple[str, ...] = ("model_kwargs", "additional_kwargs", "extra_body")
_ALIASES = {"stop_sequences": "stop", "random_seed": "seed"}
#: settings that change neither what the model answers nor what the call costs
NOT_ANSWER_KEYS: frozenset[str] = frozenset({
    # streaming and transport
    "stream", "streaming", "stream_usage", "stream_options", "disable_streaming",
    "timeout", "request_timeout", "default_request_timeout", "max_retries", "rate_limiter",
    "http_client", "http_async_client", "client", "async_client", "reuse_client",
    "default_headers", "default_query", "extra_headers", "extra_query",
    # endpoints and credentials
    "api_key", "openai_api_key", "anthropic_api_key", "api_base", "base_url",
    "openai_api_base", "anthropic_api_url", "api_version", "openai_api_version",
    "organization", "openai_organization", "openai_proxy",
    # tracing, serialization and bookkeeping
    "callbacks", "callback_manager", "tags", "metadata", "verbose", "cache", "output_version",
    "class_name", "store", "tenant", "user",
})


def _is_set(value: Any) -> bool:
    return value is not None


def _jsonable(value: Any) -> Any:
    """``value`` as JSON-like data (mappings, lists, scalars) for ``Request.params``."""
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, Enum):
        return _jsonable(value.value)
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, type) and hasattr(value, "model_json_schema"):  # a Pydantic class
        return _jsonable(value.model_json_schema())
    if hasattr(value, "model_dump") and not isinstance(value, type):  # a Pydantic object
        return _jsonable(value.model_dump(mode="json"))
    return repr(value)


def _lifted(settings: Mapping[str, Any]) -> dict[str, Any]:
    """``settings`` with its nested provider options lifted to the top (where they win)."""
    out = {k: v for k, v in settings.items() if k not in NESTED_KEYS}
    for key in NESTED_KEYS:
        nested = settings.get(key)
        if isinstance(nested, Mapping):
            out.update(nested)
    return out


def model_of(settings: Mapping[str, Any]) -> str | None:
    """The model one layer of settings names (``model``, ``model_name``, ``model_id``)."""
    lifted = _lifted(settings)
    for key in MODEL_KEYS:
        value = lifted.get(key)
        if isinstance(value, str) and value.strip():
            return value
    return None


def _layer(settings: Mapping[str, Any]) -> dict[str, Any]:
    """One layer of settings in the request's own names; unset values dropped."""
    lifted = {_ALIASES.get(k, k): v for k, v in _lifted(settings).items() if _is_set(v)}
    out: dict[str, Any] = {}
    caps = [lifted[k] for k in OUTPUT_CAP_KEYS if k in lifted]
    if caps:
        out["max_tokens"] = min(caps)
    model = model_of(lifted)
    if model is not None:
        out["model"] = model
    for key, value in lifted.items():
        if key in OUTPUT_CAP_KEYS or key in MODEL_KEYS or key in NOT_ANSWER_KEYS \
                or key.startswith(("_", "ls_")):
            continue
        out[key] = value
    return out


def cap_key(*layers: Mapping[str, Any] | None) -> str:
    """The name the app gave its output cap (the layer of highest precedence that sets
    one; ``"max_tokens"`` when none does): the name to send a lowered cap under, so the
    wrapped model reads it where it reads its own."""
    for settings in reversed([s for s in layers if s]):
        lifted = _lifted(settings)
        named = [k for k in OUTPUT_CAP_KEYS if _is_set(lifted.get(k))]
        if named:
            return min(named, key=lambda k: lifted[k])
    return "max_tokens"


def _tool_choice(value: Any, tools: list[Any]) -> Any:
    """``tool_choice`` the OpenAI way: ``"auto"``, ``"none"``, ``"required"`` or one
    function (LangChain's ``True`` forces the only tool, its ``"any"`` is ``"required"``)."""
    if value is True:
        names = [t.get("function", {}).get("name") for t in tools if isinstance(t, Mapping)]
        return {"type": "function", "function": {"name": names[0]}} if len(names) == 1 \
            else "required"
    if isinstance(value, str):
        if value in {"auto", "none", "required"}:
            return value
        if value == "any":
            return "required"
        return {"type": "function", "function": {"name": value}}
    if isinstance(value, Mapping) and value.get("type") in {"any", "auto", "none"}:
        return "required" if value["type"] == "any" else value["type"]
    if isinstance(value, Mapping) and value.get("type") == "tool" and "name" in value:
        return {"type": "function", "function": {"name": value["name"]}}  # Anthropic's form
    return _jsonable(value)


def merge_settings(*layers: Mapping[str, Any] | None) -> dict[str, Any]:
    """``layers`` of settings (lowest precedence first) merged in the request's own names:
    ``model``, ``max_tokens``, ``temperature``, ``top_p``, ``seed``, ``stop``, ``tools``,
    ``tool_choice`` (the OpenAI way) and every other answer-changing setting."""
    merged: dict[str, Any] = {}
    for settings in layers:
        if settings:
            merged.update(_layer(settings))
    if "tools" in merged:
        merged["tools"] = [_jsonable(t) for t in merged["tools"] or ()]
    if "tool_choice" in merged:
        merged["tool_choice"] = _tool_choice(merged["tool_choice"], merged.get("tools") or [])
    return merged


def build_request(messages: Iterable[Message], *layers: Mapping[str, Any] | None,
                  tenant: str = "default", user: str | None = None,
                  provider: str | None = None,
                  metadata: Mapping[str, Any] | None = None) -> Request:
    """The :class:`Request` for ``messages`` under ``layers`` of settings, lowest
    precedence first (the wrapped model's configuration, the wrapper's overrides, the
    call's arguments; see :func:`merge_settings`). ``user``, when not given, is the one
    the settings name (OpenAI's ``user``)."""
    merged = merge_settings(*layers)
    asked_user = next((u for s in reversed([s for s in layers if s])
                       if (u := _lifted(s).get("user"))), None)
    known = {k: merged.pop(k, None) for k in ("model", "max_tokens", "temperature", "top_p",
                                                "seed", "stop", "tools")}
    stop = known["stop"] or ()
    return Request(
        messages=tuple(messages), model=known["model"] or "", provider=provider,
        max_tokens=known["max_tokens"], temperature=known["temperature"],
        top_p=known["top_p"], seed=known["seed"],
        stop=(stop,) if isinstance(stop, str) else tuple(stop),
        tools=tuple(known["tools"] or ()), params={k: _jsonable(v) for k, v in merged.items()},
        tenant=tenant, user=user if user is not None else asked_user,
        metadata=metadata or {})


def check_tenant(tenant: object) -> str:
    """A wrapper's or handler's own tenant, checked when it is built: a non-empty
    string (the rule :class:`Request` applies to a call), else a ``ConfigError``."""
    if not isinstance(tenant, str) or not tenant:
        raise ConfigError("tenant must be a non-empty string")
    return tenant


def call_tenant(given: Mapping[str, Any], default: str, key: str = "tenant") -> Any:
    """The tenant a call names: ``given[key]`` when the call names one -- a None or
    "" too, which :class:`Request` then rejects (``InvalidRequestError``) instead of
    serving the default tenant's cache --, else the wrapper's ``default``."""
    return given[key] if key in given else default
