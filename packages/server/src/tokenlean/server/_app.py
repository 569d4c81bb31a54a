"""The FastAPI application: OpenAI and Anthropic endpoints over one :class:`Engine`."""

from __future__ import annotations

import asyncio
import json
import math
import os
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST
from sse_starlette import EventSourceResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.cors import CORSMiddleware

from tokenlean.core import ConfigError, InvalidRequestError

from . import _anthropic, _openai
from ._access import Access
from ._early import DEFAULT_STOP_CONFIDENCE
from ._engine import (
    Delta,
    Engine,
    EngineClosed,
    EventStream,
    Failed,
    Finished,
    PromptTooLong,
    QueueFull,
    SamplingParams,
    Started,
)
from ._errors import ApiError, error_body
from ._guard import TENANT_SCOPE_KEY, Guard, error_response, read_body
from ._json import parse_json_body

__all__ = ["DEFAULT_MAX_BODY_BYTES", "create_app"]

TENANT_HEADER = "x-tokenlean-tenant"
DEFAULT_MAX_BODY_BYTES = 4 * 1024 * 1024
_T = TypeVar("_T")
_ENDPOINTS = frozenset({"/v1/chat/completions", "/v1/completions", "/v1/messages",
                        "/v1/messages/count_tokens", "/v1/models"})


def _sse(data: Any, event: str | None = None) -> dict[str, str]:
    out = {"data": data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))}
    if event is not None:
        out["event"] = event
    return out


class _Server:
    """Request handling shared by the endpoints (one instance per app)."""

    def __init__(self, engine: Engine, *, model_name: str, aliases: Sequence[str],
                 default_max_tokens: int, max_prompt_tokens: int, max_body_bytes: int,
                 workers: int, soft_budget_ratio: float | None = None,
                 stop_confidence: float = DEFAULT_STOP_CONFIDENCE) -> None:
        self.engine = engine
        self.soft_budget_ratio = soft_budget_ratio
        self.stop_confidence = stop_confidence
        self.model_name = model_name
        self.names = (model_name, *aliases)
        self.default_max_tokens = default_max_tokens
        self.max_prompt_tokens = max_prompt_tokens
        self.max_body_bytes = max_body_bytes
        self.workers = workers
        self.pool: ThreadPoolExecutor | None = None
        self.created = int(time.time())

    async def off_loop(self, fn: Callable[..., _T], *args: Any) -> _T:
        """Run CPU work (JSON parsing, validation, tokenization) on the request pool, so the
        event loop keeps answering other clients meanwhile."""
        if self.pool is None:
            raise ApiError(503, "the server is not running", code="engine_closed")
        return await asyncio.get_running_loop().run_in_executor(self.pool, fn, *args)

    def check_model(self, model: str) -> str:
        if model not in self.names:
            raise ApiError(404, f"model {model!r} is not served here; this server serves "
                                f"{self.model_name!r} (GET /v1/models lists the names it "
                                f"accepts)", param="model", code="model_not_found")
        return model

    def too_long(self, tokens: int, param: str) -> ApiError:
        return ApiError(400, f"the prompt has {tokens} tokens; this server accepts at most "
                             f"{self.max_prompt_tokens} prompt tokens (the model's context "
                             f"length is {self.engine.context_length}): shorten the prompt",
                        param=param, code="context_length_exceeded")

    def encode(self, call: _openai.Call) -> list[int]:
        limit = self.max_prompt_tokens
        param = "messages" if call.messages is not None else "prompt"
        try:
            if call.messages is not None:
                return self.engine.encode_chat(call.messages, limit=limit)
            if isinstance(call.prompt, list):
                vocab = len(self.engine.tokenizer)
                if len(call.prompt) > limit:
                    raise self.too_long(len(call.prompt), param)
                if max(call.prompt) >= vocab:
                    raise ApiError(400, f"prompt has a token id >= the vocabulary size {vocab}",
                                   param="prompt")
                return list(call.prompt)
            return self.engine.encode_text(call.prompt or "", limit=limit)
        except PromptTooLong as exc:
            raise self.too_long(exc.tokens, param) from None
        except InvalidRequestError as exc:
            raise ApiError(400, str(exc), param=param) from None

    def prepare(self, raw: bytes, parse: Callable[[Any], _openai.Call]
                ) -> tuple[_openai.Call, list[int], SamplingParams]:
        """Body bytes to (call, prompt ids, sampling): the CPU work, run off the loop."""
        call = parse(parse_json_body(raw))
        self.check_model(call.model)
        prompt = self.encode(call)
        return call, prompt, self.params(call, len(prompt))

    def count_tokens(self, raw: bytes) -> int:
        model, messages = _anthropic.parse_count_tokens(parse_json_body(raw))
        self.check_model(model)
        try:
            return len(self.engine.encode_chat(messages, limit=self.max_prompt_tokens))
        except PromptTooLong as exc:
            raise self.too_long(exc.tokens, "messages") from None
        except InvalidRequestError as exc:
            raise ApiError(400, str(exc)) from None

    def params(self, call: _openai.Call, prompt_tokens: int) -> SamplingParams:
        room = self.engine.context_length - prompt_tokens
        max_tokens = call.max_tokens if call.max_tokens is not None \
            else min(self.default_max_tokens, room)
        if max_tokens < 1 or prompt_tokens + max_tokens > self.engine.context_length:
            raise ApiError(
                400, f"this model's maximum context length is {self.engine.context_length} "
                     f"tokens; the prompt has {prompt_tokens} tokens and {max_tokens} more were "
                     f"requested: shorten the messages or lower max_tokens to at most "
                     f"{max(room, 0)}", param="max_tokens", code="context_length_exceeded")
        soft, confidence = self.early_stopping(call, max_tokens)
        return SamplingParams(max_tokens=max_tokens, temperature=call.temperature,
                              top_p=call.top_p, seed=call.seed, stop=call.stop,
                              soft_max_tokens=soft, stop_confidence=confidence)

    def early_stopping(self, call: _openai.Call, max_tokens: int) -> tuple[int | None, float]:
        """The request's soft budget and threshold: its own ``tokenlean`` field, else the
        server's ``soft_budget_ratio`` of its ``max_tokens`` (None: no early stopping)."""
        soft = call.early.soft_max_tokens
        if soft is None and self.soft_budget_ratio is not None:
            soft = math.ceil(self.soft_budget_ratio * max_tokens)
        confidence = call.early.stop_confidence
        if soft is None and confidence is not None:
            raise ApiError(400, "tokenlean.stop_confidence needs a soft budget: add "
                                "tokenlean.soft_max_tokens (this server sets none by default)",
                           param="tokenlean.stop_confidence")
        return soft, self.stop_confidence if confidence is None else confidence

    def open(self, request: Request, prompt: list[int], params: SamplingParams) -> EventStream:
        salt = request.scope.get(TENANT_SCOPE_KEY, "")
        try:
            return self.engine.stream(prompt, params, salt=salt)
        except QueueFull as exc:
            raise ApiError(429, str(exc), code="queue_full", headers={"retry-after": "1"}
                           ) from None
        except EngineClosed as exc:
            raise ApiError(503, str(exc), code="engine_closed") from None
        except InvalidRequestError as exc:
            raise ApiError(400, str(exc)) from None

    async def collect(self, request: Request, stream: EventStream) -> tuple[str, Finished]:
        """The whole text; cancels the generation if the client disconnects meanwhile."""

        async def watch() -> None:
            while (await request.receive())["type"] != "http.disconnect":
                pass
            await stream.aclose()

        watcher = asyncio.create_task(watch())
        parts: list[str] = []
        try:
            async for event in stream:
                if isinstance(event, Delta):
                    parts.append(event.text)
                elif isinstance(event, Failed):
                    raise ApiError(500, event.message)
                elif isinstance(event, Finished):
                    if event.reason == "cancelled":
                        raise ApiError(499 if await request.is_disconnected() else 503,
                                       "the request was cancelled")
                    return "".join(parts), event
            raise ApiError(503, "the request was cancelled")
        finally:
            watcher.cancel()
            await stream.aclose()

    def count(self, endpoint: str, status: int) -> None:
        if endpoint not in _ENDPOINTS:  # bounded label values: unknown paths share one
            endpoint = "other"
        self.engine.metrics.requests.labels(endpoint, str(status)).inc()


def _openai_sse(stream: EventStream, rid: str, model: str, created: int, *, chat: bool,
                include_usage: bool) -> AsyncIterator[dict[str, str]]:
    async def events() -> AsyncIterator[dict[str, str]]:
        try:
            async for event in stream:
                if isinstance(event, Started):
                    if chat:
                        yield _sse(_openai.chat_chunk(rid, model, created,
                                                      delta={"role": "assistant", "content": ""},
                                                      with_usage=include_usage))
                elif isinstance(event, Delta):
                    yield _sse(_openai.chat_chunk(rid, model, created,
                                                  delta={"content": event.text},
                                                  with_usage=include_usage) if chat else
                               _openai.completion_chunk(rid, model, created, text=event.text))
                elif isinstance(event, Finished):
                    if event.reason == "cancelled":
                        return
                    yield _sse(_openai.chat_chunk(rid, model, created, finish=event,
                                                  with_usage=include_usage) if chat else
                               _openai.completion_chunk(rid, model, created, finish=event))
                    if include_usage:
                        obj = "chat.completion.chunk" if chat else "text_completion"
                        yield _sse(_openai.usage_chunk(rid, model, created, obj, event))
                    yield _sse("[DONE]")
                else:
                    yield _sse(error_body("openai", 500, event.message))
                    return
        finally:
            await stream.aclose()

    return events()


def _anthropic_sse(stream: EventStream, rid: str, model: str) -> AsyncIterator[dict[str, str]]:
    async def events() -> AsyncIterator[dict[str, str]]:
        try:
            async for event in stream:
                if isinstance(event, Started):
                    usage = {"input_tokens": event.prompt_tokens - event.cached_tokens,
                             "output_tokens": 0,
                             "cache_read_input_tokens": event.cached_tokens,
                             "cache_creation_input_tokens": 0}
                    yield _sse({"type": "message_start", "message": {
                        "id": rid, "type": "message", "role": "assistant", "model": model,
                        "content": [], "stop_reason": None, "stop_sequence": None,
                        "usage": usage}}, "message_start")
                    yield _sse({"type": "content_block_start", "index": 0,
                                "content_block": {"type": "text", "text": ""}},
                               "content_block_start")
                    yield _sse({"type": "ping"}, "ping")
                elif isinstance(event, Delta):
                    yield _sse({"type": "content_block_delta", "index": 0,
                                "delta": {"type": "text_delta", "text": event.text}},
                               "content_block_delta")
                elif isinstance(event, Finished):
                    if event.reason == "cancelled":
                        return
                    yield _sse({"type": "content_block_stop", "index": 0}, "content_block_stop")
                    yield _sse(_anthropic.message_delta(event), "message_delta")
                    yield _sse({"type": "message_stop"}, "message_stop")
                else:
                    yield _sse(error_body("anthropic", 500, event.message), "error")
                    return
        finally:
            await stream.aclose()

    return events()


def _fraction(name: str, value: Any, *, low_open: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1 \
            or (low_open and value == 0):
        span = "(0, 1]" if low_open else "[0, 1]"
        raise ConfigError(f"{name} must be a number in {span}, got {value!r}")
    return float(value)


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name} must be an integer >= 1, got {value!r}")
    return value


def create_app(engine: Engine, *, model_name: str, aliases: Sequence[str] = (),
               default_max_tokens: int = 512, tenant_header: str = TENANT_HEADER,
               api_keys: Mapping[str, str] | None = None, trust_tenant_header: bool = False,
               allowed_hosts: Sequence[str] | None = None, allowed_origins: Sequence[str] = (),
               max_body_bytes: int = DEFAULT_MAX_BODY_BYTES, max_prompt_tokens: int | None = None,
               workers: int | None = None, soft_budget_ratio: float | None = None,
               stop_confidence: float = DEFAULT_STOP_CONFIDENCE) -> FastAPI:
    """The HTTP app over ``engine`` (started with the app, closed at its shutdown).

    ``model_name`` (and any ``aliases``) are the ``model`` values requests may
    name; others get a 404 ``model_not_found``.

    Access (see ``docs/layers/server.md``, "Exposing the server"):

    * ``api_keys``: ``{key: tenant}`` (``parse_api_keys`` reads ``KEY=TENANT``
      specs). With keys, every request but ``GET /health`` needs one (401
      otherwise), and the key's tenant salts the prefix cache, so tenants never
      share entries. Without keys anyone who reaches the port may call it, and all
      requests share one prefix-cache namespace.
    * ``trust_tenant_header``: honour the client's ``tenant_header`` header (with
      keys, as a sub-tenant of the key's tenant); off by default, since any client
      can send any value.
    * ``allowed_hosts``: Host names served (``name``, ``name:port``, ``*.suffix``,
      an IP block such as ``10.0.0.0/8``, or ``*``); default ``localhost``,
      ``127.0.0.1`` and ``[::1]`` on any port (against DNS rebinding).
    * ``allowed_origins``: browser origins allowed to call it (with CORS
      headers); default none: a request carrying an ``Origin`` is refused.

    Limits: bodies over ``max_body_bytes`` get a 413 before they are read
    whole; prompts over ``max_prompt_tokens`` (default: the model's context) a
    400. JSON parsing, validation and tokenization run on a pool of ``workers``
    threads (default 2), never on the event loop.

    Early stopping (see ``docs/layers/server.md``, "Early stopping"): a request's
    ``tokenlean.soft_max_tokens`` turns it on for that request; ``soft_budget_ratio``
    (default None: off) gives every other request a soft budget of that fraction of
    its ``max_tokens``; ``stop_confidence`` is the default threshold on ``P(eos)``.
    """
    default_max_tokens = _positive_int("default_max_tokens", default_max_tokens)
    max_body_bytes = _positive_int("max_body_bytes", max_body_bytes)
    max_prompt_tokens = _positive_int("max_prompt_tokens", max_prompt_tokens
                                      if max_prompt_tokens is not None else engine.context_length)
    workers = _positive_int("workers", workers if workers is not None
                            else min(2, os.cpu_count() or 1))
    if soft_budget_ratio is not None:
        soft_budget_ratio = _fraction("soft_budget_ratio", soft_budget_ratio, low_open=True)
    stop_confidence = _fraction("stop_confidence", stop_confidence, low_open=False)
    if not isinstance(model_name, str) or not model_name:
        raise ConfigError("model_name must be a non-empty string")
    access = Access.build(api_keys=api_keys, trust_tenant_header=trust_tenant_header,
                          tenant_header=tenant_header, allowed_hosts=allowed_hosts,
                          allowed_origins=allowed_origins)
    server = _Server(engine, model_name=model_name, aliases=aliases,
                     default_max_tokens=default_max_tokens, max_prompt_tokens=max_prompt_tokens,
                     max_body_bytes=max_body_bytes, workers=workers,
                     soft_budget_ratio=soft_budget_ratio, stop_confidence=stop_confidence)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine.start()
        server.pool = ThreadPoolExecutor(server.workers, thread_name_prefix="tokenlean-parse")
        try:
            yield
        finally:
            pool, server.pool = server.pool, None
            pool.shutdown(wait=False, cancel_futures=True)
            await asyncio.to_thread(engine.close)

    app = FastAPI(title="tokenlean server", lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url=None)
    app.state.server = server
    app.state.access = access
    if access.origins:
        app.add_middleware(CORSMiddleware, allow_origins=sorted(access.origins),
                           allow_methods=["GET", "POST"], allow_headers=["*"])
    app.add_middleware(Guard, access=access, max_body_bytes=max_body_bytes, count=server.count)

    def reply(request: Request, exc: ApiError) -> JSONResponse:
        server.count(request.url.path, exc.status)
        return error_response(request.url.path, request.headers, exc)

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return reply(request, exc)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = (f"unknown path {request.url.path[:200]}: this server serves "
                   f"/v1/chat/completions, /v1/completions, /v1/models, /v1/messages, /health "
                   f"and /metrics" if exc.status_code == 404
                   else f"{request.method} {request.url.path[:200]}: {exc.detail}")
        return reply(request, ApiError(exc.status_code, message))

    def generation_route(path: str, parse: Callable[[Any], _openai.Call],
                         respond: Callable[[str, str, Finished, str, int], dict[str, Any]],
                         sse: Callable[[EventStream, str, str, int, _openai.Call],
                                       AsyncIterator[dict[str, str]]], prefix: str) -> None:
        async def handle(request: Request) -> Response:
            raw = await read_body(request, server.max_body_bytes)
            call, prompt, params = await server.off_loop(server.prepare, raw, parse)
            stream = server.open(request, prompt, params)
            rid, created = f"{prefix}{uuid.uuid4().hex}", int(time.time())
            if call.stream:
                server.count(path, 200)
                return EventSourceResponse(sse(stream, rid, call.model, created, call),
                                           ping=15, headers={"x-request-id": rid})
            text, finish = await server.collect(request, stream)
            server.count(path, 200)
            return JSONResponse(respond(rid, call.model, finish, text, created))

        app.add_api_route(path, handle, methods=["POST"])

    generation_route(
        "/v1/chat/completions", _openai.parse_chat,
        lambda rid, model, fin, text, created: _openai.chat_response(rid, model, created, text,
                                                                     fin),
        lambda s, rid, model, created, call: _openai_sse(s, rid, model, created, chat=True,
                                                         include_usage=call.include_usage),
        "chatcmpl-")
    generation_route(
        "/v1/completions", _openai.parse_completion,
        lambda rid, model, fin, text, created: _openai.completion_response(rid, model, created,
                                                                           text, fin),
        lambda s, rid, model, created, call: _openai_sse(s, rid, model, created, chat=False,
                                                         include_usage=call.include_usage),
        "cmpl-")
    generation_route(
        "/v1/messages", _anthropic.parse_messages,
        lambda rid, model, fin, text, created: _anthropic.message_response(rid, model, text, fin),
        lambda s, rid, model, created, call: _anthropic_sse(s, rid, model),
        "msg_")

    @app.post("/v1/messages/count_tokens")
    async def count_tokens(request: Request) -> JSONResponse:
        raw = await read_body(request, server.max_body_bytes)
        n = await server.off_loop(server.count_tokens, raw)
        server.count(request.url.path, 200)
        return JSONResponse({"input_tokens": n})

    def model_card(name: str) -> dict[str, Any]:
        return {"id": name, "object": "model", "created": server.created, "owned_by": "tokenlean",
                # Anthropic's model list shape, so both SDKs can list models
                "type": "model", "display_name": name, "created_at": "1970-01-01T00:00:00Z"}

    @app.get("/v1/models")
    async def models() -> JSONResponse:
        cards = [model_card(n) for n in server.names]
        return JSONResponse({"object": "list", "data": cards, "has_more": False,
                             "first_id": server.names[0], "last_id": server.names[-1]})

    @app.get("/v1/models/{model_id:path}")
    async def model(model_id: str) -> JSONResponse:
        return JSONResponse(model_card(server.check_model(model_id)))

    @app.get("/health")
    async def health() -> JSONResponse:
        alive = engine.running
        body = {"status": "ok" if alive else "starting", "model": model_name,
                "active_sequences": engine.active, "queue_depth": engine.queue_depth,
                "max_batch": engine.max_batch, "max_queue": engine.max_queue,
                "context_length": engine.context_length}
        return JSONResponse(body, status_code=200 if alive else 503)

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(engine.metrics.render(), media_type=CONTENT_TYPE_LATEST)

    return app
