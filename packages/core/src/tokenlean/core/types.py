"""The values that flow through a tokenlean pipeline.

All of them are frozen dataclasses: a layer never edits a request in place, it
returns a new one (``dataclasses.replace`` or the ``with_*`` helpers), so the
pipeline can compare what went in with what came out.

Token convention (the OpenAI one, also genai-prices'): ``Usage.input_tokens`` is
*all* prompt tokens, cache reads and writes included; ``output_tokens`` includes
reasoning tokens. Anthropic reports them apart; :meth:`Usage.from_anthropic`
folds them in.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date
from decimal import Decimal
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal

from .errors import InvalidRequestError

if TYPE_CHECKING:
    from .records import CallRecord

__all__ = [
    "OUTPUT_CAP_KEYS",
    "ROLES",
    "Chunk",
    "Cost",
    "LayerNote",
    "Message",
    "Request",
    "Response",
    "Usage",
    "is_reasoning_model",
]

Role = Literal["system", "developer", "user", "assistant", "tool"]
ROLES: frozenset[str] = frozenset({"system", "developer", "user", "assistant", "tool"})
FinishReason = Literal["stop", "length", "tool_calls", "content_filter", "error"]
_EMPTY: Mapping[str, Any] = MappingProxyType({})
#: the names providers give the most output tokens a call may produce (OpenAI's
#: ``max_tokens`` / ``max_completion_tokens``, Gemini's ``max_output_tokens``,
#: Anthropic's legacy ``max_tokens_to_sample``, Hugging Face's ``max_new_tokens``,
#: Ollama's ``num_predict``)
OUTPUT_CAP_KEYS: tuple[str, ...] = ("max_tokens", "max_completion_tokens", "max_output_tokens",
                                    "max_tokens_to_sample", "max_new_tokens", "num_predict")
#: OpenAI's reasoning-model families: their reasoning tokens count against the cap, and
#: chat completions rejects ``max_tokens`` for them (``max_completion_tokens`` only)
REASONING_MODEL_PREFIXES: tuple[str, ...] = ("o1", "o3", "o4", "gpt-5")


def is_reasoning_model(model: str) -> bool:
    """An OpenAI reasoning model (``o1*``, ``o3*``, ``o4*``, ``gpt-5*``; a provider prefix
    such as ``openai/`` is ignored; ``gpt-5-chat*`` is not one)."""
    name = model.rsplit("/", 1)[-1].lower()
    return name.startswith(REASONING_MODEL_PREFIXES) and not name.startswith("gpt-5-chat")


def _frozen_mapping(value: Mapping[str, Any] | None, what: str) -> Mapping[str, Any]:
    if value is None:
        return _EMPTY
    if not isinstance(value, Mapping):
        raise InvalidRequestError(f"{what} must be a mapping, got {type(value).__name__}")
    return MappingProxyType(dict(value))


def _check_text(value: str, what: str) -> None:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidRequestError(
            f"{what} is not valid Unicode text (lone surrogate at position {exc.start}); "
            "decode your input with errors='replace' first"
        ) from None


@dataclass(frozen=True, slots=True, kw_only=True)
class Message:
    """One chat message. ``content`` is text, or OpenAI-style content parts."""

    role: str
    content: str | tuple[Mapping[str, Any], ...] = ""
    name: str | None = None
    tool_calls: tuple[Mapping[str, Any], ...] = ()
    tool_call_id: str | None = None

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise InvalidRequestError(
                f"message role {self.role!r} is not one of {sorted(ROLES)}"
            )
        if isinstance(self.content, str):
            _check_text(self.content, f"{self.role} message content")
        else:
            if isinstance(self.content, (bytes, Mapping)) or not isinstance(self.content, Iterable):
                raise InvalidRequestError(
                    f"message content must be a string or a list of content parts, "
                    f"got {type(self.content).__name__}"
                )
            parts = tuple(self.content)
            for part in parts:
                if not isinstance(part, Mapping) or not isinstance(part.get("type"), str):
                    raise InvalidRequestError(
                        "each content part must be a mapping with a 'type' key, "
                        f"e.g. {{'type': 'text', 'text': '...'}}; got {part!r:.80}"
                    )
                if part["type"] == "text":
                    if not isinstance(part.get("text"), str):
                        raise InvalidRequestError("a text content part needs a string 'text'")
                    _check_text(part["text"], "text content part")
            object.__setattr__(self, "content", parts)
        if self.name is not None and not isinstance(self.name, str):
            raise InvalidRequestError("message name must be a string")
        object.__setattr__(self, "tool_calls", tuple(self.tool_calls or ()))

    @property
    def text(self) -> str:
        """The message's text; text parts joined by newlines, other parts skipped."""
        if isinstance(self.content, str):
            return self.content
        return "\n".join(p["text"] for p in self.content if p.get("type") == "text")

    def with_text(self, text: str) -> Message:
        """A copy whose text is ``text`` (non-text content parts are kept)."""
        if isinstance(self.content, str):
            return replace(self, content=text)
        others = tuple(p for p in self.content if p.get("type") != "text")
        return replace(self, content=({"type": "text", "text": text}, *others))

    def to_openai(self) -> dict[str, Any]:
        out: dict[str, Any] = {"role": self.role, "content": (
            self.content if isinstance(self.content, str) else [dict(p) for p in self.content]
        )}
        if self.name:
            out["name"] = self.name
        if self.tool_calls:
            out["tool_calls"] = [dict(c) for c in self.tool_calls]
        if self.tool_call_id:
            out["tool_call_id"] = self.tool_call_id
        return out

    @classmethod
    def from_openai(cls, data: Mapping[str, Any]) -> Message:
        if not isinstance(data, Mapping):
            raise InvalidRequestError(f"a message must be a mapping, got {type(data).__name__}")
        if "role" not in data:
            raise InvalidRequestError("a message needs a 'role'")
        content = data.get("content")
        return cls(
            role=data["role"],
            content="" if content is None else content,
            name=data.get("name"),
            tool_calls=tuple(data.get("tool_calls") or ()),
            tool_call_id=data.get("tool_call_id"),
        )


def _check_number(name: str, value: float | None, *, low: float, high: float) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InvalidRequestError(f"{name} must be a finite number, got {value!r}")
    if not low <= value <= high:
        raise InvalidRequestError(f"{name} must be between {low} and {high}, got {value}")


@dataclass(frozen=True, slots=True, kw_only=True)
class LayerNote:
    """What a layer says about its own work on one request.

    Token savings on the *input* are measured by the pipeline (it counts the
    request before and after the layer); a layer only adds what cannot be
    measured that way: an estimate of output tokens it saved and its quality
    proxy (e.g. ``{"retention": 0.97}`` or ``{"similarity": 0.93}``).
    """

    layer: str
    saved_output_tokens: int = 0
    quality: Mapping[str, float] = field(default_factory=lambda: _EMPTY)
    detail: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)

    def __post_init__(self) -> None:
        object.__setattr__(self, "quality", _frozen_mapping(self.quality, "quality"))
        object.__setattr__(self, "detail", _frozen_mapping(self.detail, "detail"))


@dataclass(frozen=True, slots=True, kw_only=True)
class Request:
    """One model call: what the app asked for, plus where it came from."""

    messages: tuple[Message, ...]
    model: str
    provider: str | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: tuple[str, ...] = ()
    seed: int | None = None
    tools: tuple[Mapping[str, Any], ...] = ()
    params: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)
    tenant: str = "default"
    user: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)
    notes: tuple[LayerNote, ...] = ()
    request_id: str = field(default_factory=lambda: uuid.uuid4().hex)

    def __post_init__(self) -> None:
        if isinstance(self.messages, (str, bytes)) or not isinstance(self.messages, Sequence):
            raise InvalidRequestError("messages must be a list of Message")
        messages = tuple(
            m if isinstance(m, Message) else Message.from_openai(m) for m in self.messages
        )
        if not messages:
            raise InvalidRequestError("a request needs at least one message")
        object.__setattr__(self, "messages", messages)
        if not isinstance(self.model, str) or not self.model.strip():
            raise InvalidRequestError("model must be a non-empty string, e.g. 'gpt-4o'")
        if self.max_tokens is not None and (
            isinstance(self.max_tokens, bool) or not isinstance(self.max_tokens, int)
            or self.max_tokens < 1
        ):
            raise InvalidRequestError(
                f"max_tokens must be a positive integer, got {self.max_tokens!r}")
        _check_number("temperature", self.temperature, low=0.0, high=2.0)
        _check_number("top_p", self.top_p, low=0.0, high=1.0)
        stop = (self.stop,) if isinstance(self.stop, str) else tuple(self.stop or ())
        if not all(isinstance(s, str) and s for s in stop):
            raise InvalidRequestError("stop must be a string or a list of non-empty strings")
        object.__setattr__(self, "stop", stop)
        if self.seed is not None and (isinstance(self.seed, bool)
                                      or not isinstance(self.seed, int)):
            raise InvalidRequestError(f"seed must be an integer, got {self.seed!r}")
        if not isinstance(self.tenant, str) or not self.tenant:
            raise InvalidRequestError("tenant must be a non-empty string")
        object.__setattr__(self, "tools", tuple(self.tools or ()))
        object.__setattr__(self, "params", _frozen_mapping(self.params, "params"))
        object.__setattr__(self, "metadata", _frozen_mapping(self.metadata, "metadata"))

    def with_messages(self, messages: Iterable[Message]) -> Request:
        return replace(self, messages=tuple(messages))

    def with_note(self, note: LayerNote) -> Request:
        return replace(self, notes=(*self.notes, note))

    @property
    def output_cap(self) -> int | None:
        """The most output tokens this request lets the model produce: ``max_tokens``, or
        a provider's own name for it in ``params`` (the lowest where it names several),
        None when it sets no cap."""
        caps = [self.max_tokens] if self.max_tokens is not None else []
        caps += [v for k in OUTPUT_CAP_KEYS if isinstance(v := self.params.get(k), int)
                 and not isinstance(v, bool)]
        return min(caps) if caps else None

    def with_output_cap(self, tokens: int) -> Request:
        """A copy capped at ``tokens`` wherever this request names its cap (``max_tokens``
        and each cap key in ``params``), in ``max_tokens`` when it names none; so the body
        sent carries one cap, under the name the app used."""
        named = {k: tokens for k in OUTPUT_CAP_KEYS if k in self.params}
        if not named:
            return replace(self, max_tokens=tokens)
        return replace(self, max_tokens=None if self.max_tokens is None else tokens,
                       params={**self.params, **named})

    @property
    def last_user_text(self) -> str:
        for message in reversed(self.messages):
            if message.role == "user":
                return message.text
        return ""

    def to_openai(self) -> dict[str, Any]:
        """The body of an OpenAI ``/v1/chat/completions`` call for this request. For a
        reasoning model (:func:`is_reasoning_model`) the cap is sent as
        ``max_completion_tokens``, the one name OpenAI accepts for those models."""
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [m.to_openai() for m in self.messages],
        }
        for key in ("max_tokens", "temperature", "top_p", "seed"):
            value = getattr(self, key)
            if value is not None:
                body[key] = value
        if self.stop:
            body["stop"] = list(self.stop)
        if self.tools:
            body["tools"] = [dict(t) for t in self.tools]
        if self.user:
            body["user"] = self.user
        body.update(self.params)
        if is_reasoning_model(self.model) and "max_tokens" in body:
            cap = body.pop("max_tokens")
            body["max_completion_tokens"] = min(cap, body.get("max_completion_tokens", cap))
        return body

    @classmethod
    def from_openai(cls, body: Mapping[str, Any], *, tenant: str = "default",
                    provider: str | None = "openai") -> Request:
        """Build a request from an OpenAI chat-completions body (``max_completion_tokens``
        stays under its own name in ``params``, so a lowered cap is sent under it)."""
        if not isinstance(body, Mapping):
            raise InvalidRequestError("a chat-completions body must be a JSON object")
        known = {"model", "messages", "max_tokens", "temperature",
                 "top_p", "stop", "seed", "tools", "user"}
        if "messages" not in body or "model" not in body:
            raise InvalidRequestError("a chat-completions body needs 'model' and 'messages'")
        return cls(
            messages=tuple(body["messages"]),
            model=body["model"],
            provider=provider,
            max_tokens=body.get("max_tokens"),
            temperature=body.get("temperature"),
            top_p=body.get("top_p"),
            stop=body.get("stop") or (),
            seed=body.get("seed"),
            tools=tuple(body.get("tools") or ()),
            user=body.get("user"),
            tenant=tenant,
            params={k: v for k, v in body.items() if k not in known},
        )


def _non_negative_int(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidRequestError(f"{name} must be a non-negative integer, got {value!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Usage:
    """Tokens one call used (OpenAI convention: cache and reasoning tokens are
    *included* in ``input_tokens`` / ``output_tokens``, not added to them)."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0

    def __post_init__(self) -> None:
        for name in ("input_tokens", "output_tokens", "cache_read_tokens",
                     "cache_write_tokens", "reasoning_tokens"):
            _non_negative_int(name, getattr(self, name))
        if self.cache_read_tokens + self.cache_write_tokens > self.input_tokens:
            raise InvalidRequestError(
                "cache_read_tokens + cache_write_tokens cannot exceed input_tokens "
                "(input_tokens counts all prompt tokens, cached ones included)"
            )
        if self.reasoning_tokens > self.output_tokens:
            raise InvalidRequestError("reasoning_tokens cannot exceed output_tokens")

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def __add__(self, other: Usage) -> Usage:
        if not isinstance(other, Usage):
            return NotImplemented
        return Usage(
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            cache_read_tokens=self.cache_read_tokens + other.cache_read_tokens,
            cache_write_tokens=self.cache_write_tokens + other.cache_write_tokens,
            reasoning_tokens=self.reasoning_tokens + other.reasoning_tokens,
        )

    @classmethod
    def from_openai(cls, usage: Mapping[str, Any]) -> Usage:
        """From an OpenAI ``usage`` object (chat completions or responses API)."""
        prompt_details = (usage.get("prompt_tokens_details")
                          or usage.get("input_tokens_details") or {})
        out_details = (usage.get("completion_tokens_details")
                       or usage.get("output_tokens_details") or {})
        return cls(
            input_tokens=int(usage.get("prompt_tokens", usage.get("input_tokens", 0)) or 0),
            output_tokens=int(usage.get("completion_tokens", usage.get("output_tokens", 0)) or 0),
            cache_read_tokens=int(prompt_details.get("cached_tokens") or 0),
            reasoning_tokens=int(out_details.get("reasoning_tokens") or 0),
        )

    @classmethod
    def from_anthropic(cls, usage: Mapping[str, Any]) -> Usage:
        """From an Anthropic ``usage`` object, whose ``input_tokens`` exclude cache tokens.
        Extended thinking is billed as output (``output_tokens`` includes it); its share is
        ``output_tokens_details.thinking_tokens`` where the API reports it (else 0: see
        :func:`tokenlean.core.accounting.call_record`'s ``reasoning_text`` estimate)."""
        read = int(usage.get("cache_read_input_tokens") or 0)
        write = int(usage.get("cache_creation_input_tokens") or 0)
        output = int(usage.get("output_tokens") or 0)
        details = usage.get("output_tokens_details") or {}
        thinking = int(details.get("thinking_tokens") or 0) if isinstance(details, Mapping) else 0
        return cls(
            input_tokens=int(usage.get("input_tokens") or 0) + read + write,
            output_tokens=output,
            cache_read_tokens=read,
            cache_write_tokens=write,
            reasoning_tokens=min(thinking, output),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Response:
    """What the model (or a cache standing in for it) answered."""

    text: str
    finish_reason: str = "stop"
    usage: Usage = field(default_factory=Usage)
    model: str = ""
    cached: bool = False
    cache_score: float | None = None
    tool_calls: tuple[Mapping[str, Any], ...] = ()
    raw: Any = field(default=None, compare=False, repr=False)
    # the texts of the chunks a streamed answer arrived in (set by Pipeline.stream;
    # a cache keeps them so a replay streams chunk for chunk like the original)
    chunks: tuple[str, ...] = field(default=(), compare=False, repr=False)
    # the reasoning the model showed (Anthropic's thinking blocks), counted as the call's
    # reasoning tokens when its usage does not report them apart
    reasoning_text: str = field(default="", compare=False, repr=False)

    @property
    def cache_hit_id(self) -> str | None:
        """The id of a semantic cache hit served under a false-hit bound (what
        ``ResponseCache.report_wrong_hit`` takes back), or None for any other answer."""
        found = self.raw.get("cache") if isinstance(self.raw, Mapping) else None
        hit_id = found.get("hit_id") if isinstance(found, Mapping) else None
        return hit_id if isinstance(hit_id, str) else None


@dataclass(frozen=True, slots=True, kw_only=True)
class Cost:
    """Dollars for one :class:`Usage`, with where the prices came from.

    ``source`` is ``"genai-prices <version>"`` (its bundled snapshot) or
    ``"override"``; ``price_date`` is the day whose prices were applied
    (genai-prices selects the price in force at request time), ``None`` for
    overrides.
    """

    input_usd: Decimal
    output_usd: Decimal
    model: str
    provider: str | None
    source: str
    price_date: date | None = None

    @property
    def total_usd(self) -> Decimal:
        return self.input_usd + self.output_usd

    def __float__(self) -> float:
        return float(self.total_usd)


@dataclass(frozen=True, slots=True, kw_only=True)
class Chunk:
    """One piece of a streamed answer; the last one carries the whole ``response``
    (and, from :meth:`Pipeline.stream`, the call's ``record``).

    ``raw`` is the provider's native chunk when there is one (an adapter can pass
    it through to keep tool-call deltas); replayed answers have none.
    """

    text: str = ""
    response: Response | None = None
    raw: Any = field(default=None, compare=False, repr=False)
    record: CallRecord | None = field(default=None, compare=False, repr=False)
