"""``TokenleanCache``: LangChain's ``BaseCache`` backed by ``tokenlean.cache``.

    from langchain_core.globals import set_llm_cache
    from langchain_tokenlean import TokenleanCache

    set_llm_cache(TokenleanCache(path="~/.tokenlean/lc-cache.sqlite"))
    # or per model: ChatOpenAI(..., cache=TokenleanCache(...))

Exact hits need the same messages and the same model settings (LangChain's
``llm_string``); semantic hits need the same settings and earlier turns and a
last user turn that means the same (vector search + false-hit guard, under a
learned false-hit bound: ``max_false_hit_rate``). A semantic hit's message
carries ``response_metadata["tokenlean"]["cache_hit_id"]``; hand the message
to :meth:`TokenleanCache.report_wrong_hit` when the answer was wrong. Only
types are converted here: the logic is :class:`tokenlean.cache.ResponseCache`.
"""

from __future__ import annotations

import ast
import asyncio
import re
import warnings
from pathlib import Path
from typing import Any, Literal

from langchain_core.caches import RETURN_VAL_TYPE, BaseCache
from langchain_core.load import loads
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, Generation

from tokenlean.cache import CacheHit, FalseHitGuard, ResponseCache, Store
from tokenlean.core import ConfigError, Message, Request, Response
from tokenlean.core.settings import check_tenant

from ._convert import (
    from_lc_messages,
    hit_id_from_lc,
    to_lc_message,
    usage_from_lc,
    usage_to_lc,
)

__all__ = ["TokenleanCache"]

_PARAM = re.compile(r"\('(model|model_name|temperature|seed)', ([^)]*)\)")


def _settings(llm_string: str) -> tuple[str, float | None, int | None]:
    """The model name, temperature and seed LangChain put in ``llm_string`` (for
    invalidation by model and the sampled-call policy); the whole string is in the key."""
    model, temperature, seed = "langchain", None, None
    for name, value in _PARAM.findall(llm_string):
        try:
            parsed = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError):
            continue
        if name in ("model", "model_name") and isinstance(parsed, str) and parsed:
            model = parsed
        elif (name == "temperature" and isinstance(parsed, (int, float))
              and not isinstance(parsed, bool)):
            temperature = float(parsed) if 0 <= parsed <= 2 else None
        elif name == "seed" and isinstance(parsed, int) and not isinstance(parsed, bool):
            seed = parsed
    return model, temperature, seed


def _messages(prompt: str) -> tuple[Message, ...]:
    """Chat models pass ``dumps(messages)``; text LLMs pass the prompt itself."""
    if prompt.startswith("[") and '"lc"' in prompt:
        try:
            with warnings.catch_warnings():  # `loads` is marked beta
                warnings.simplefilter("ignore")
                value = loads(prompt, allowed_objects="messages")
        except Exception:  # not a serialised message list after all
            value = None
        if isinstance(value, list) and value and all(isinstance(m, BaseMessage) for m in value):
            return from_lc_messages(value)
    return (Message(role="user", content=prompt),)


class TokenleanCache(BaseCache):
    """A LangChain cache on tokenlean's exact + semantic response cache.

    Args:
        path: SQLite file for the embedded store (default: in memory); or
        store: any :class:`tokenlean.cache.Store` (``RedisStore`` for exact
            hits shared across machines).
        tenant: entries of one tenant are never served to another.
        semantic / embedder / guard / min_score / ttl_s / cache_sampled: see
            :class:`tokenlean.cache.ResponseCache`. A model whose settings
            (``llm_string``) name no temperature, or one above 0 without a seed,
            samples: its calls are not cached unless ``cache_sampled=True``.
        max_false_hit_rate: the share of wrong semantic hits the cache may serve
            (see :class:`~tokenlean.cache.ResponseCache`; its default with a
            guard, ``None`` for the guard's fixed thresholds). It learns what it
            may serve from its misses and from :meth:`report_wrong_hit`.
        cache: an existing :class:`~tokenlean.cache.ResponseCache` (then the
            options above must not be given).
    """

    def __init__(self, *, path: str | Path | None = None, store: Store | None = None,
                 tenant: str = "default", semantic: bool = True,
                 embedder: Any = "wordllama",
                 guard: FalseHitGuard | Literal["default"] | None = "default",
                 min_score: float | None = None, ttl_s: float | None = None,
                 cache_sampled: bool = False,
                 max_false_hit_rate: float | None | Literal["default"] = "default",
                 cache: ResponseCache | None = None) -> None:
        if cache is None:
            cache = ResponseCache(store=store if store is not None else path,
                                  semantic=semantic, embedder=embedder,
                                  guard=guard, min_score=min_score, ttl_s=ttl_s,
                                  cache_sampled=cache_sampled,
                                  max_false_hit_rate=max_false_hit_rate)
        elif max_false_hit_rate != "default":
            raise ConfigError(f"max_false_hit_rate={max_false_hit_rate!r} with cache=...: "
                              "the cache you pass takes it itself, e.g. "
                              "ResponseCache(max_false_hit_rate=0.01)")
        self.cache = cache
        self.tenant = check_tenant(tenant)

    # ---- conversion --------------------------------------------------------

    def _request(self, prompt: str, llm_string: str) -> Request:
        model, temperature, seed = _settings(llm_string)
        return Request(messages=_messages(prompt), model=model, temperature=temperature,
                       seed=seed, params={"llm_string": llm_string}, tenant=self.tenant,
                       provider="langchain")

    @staticmethod
    def _response(return_val: RETURN_VAL_TYPE) -> Response | None:
        if len(return_val) != 1:
            return None  # n > 1 completions: not cached (a hit would change their number)
        gen = return_val[0]
        if isinstance(gen, ChatGeneration) and isinstance(gen.message, AIMessage):
            from ._convert import from_lc_message

            msg = from_lc_message(gen.message)
            meta = gen.message.response_metadata or {}
            finish = meta.get("finish_reason") or meta.get("stop_reason")
            return Response(text=msg.text, tool_calls=msg.tool_calls,
                            usage=usage_from_lc(gen.message.usage_metadata),
                            finish_reason=str(finish or ("tool_calls" if msg.tool_calls
                                                         else "stop")))
        if isinstance(gen, ChatGeneration):
            return None
        return Response(text=gen.text)

    @staticmethod
    def _generations(hit: CacheHit, chat: bool) -> list[Generation]:
        """The hit as LangChain generations; a semantic hit under a bound carries its
        ``cache_hit_id`` (message ``response_metadata``, text ``generation_info``)."""
        response = hit.response
        ours = None if hit.hit_id is None else {"tokenlean": {"cache_hit_id": hit.hit_id}}
        if not chat:
            return [Generation(text=response.text, generation_info=ours)]
        message = to_lc_message(Message(role="assistant", content=response.text,
                                        tool_calls=response.tool_calls))
        if isinstance(message, AIMessage) and response.usage.total_tokens:
            message.usage_metadata = usage_to_lc(response.usage)
        if ours is not None:
            message.response_metadata = {**message.response_metadata, **ours}
        return [ChatGeneration(message=message)]

    @staticmethod
    def _is_chat(prompt: str) -> bool:
        return prompt.startswith("[") and '"lc"' in prompt

    # ---- BaseCache -----------------------------------------------------------

    def lookup(self, prompt: str, llm_string: str) -> RETURN_VAL_TYPE | None:
        hit = self.cache.lookup(self._request(prompt, llm_string))
        return None if hit is None else self._generations(hit, self._is_chat(prompt))

    def update(self, prompt: str, llm_string: str, return_val: RETURN_VAL_TYPE) -> None:
        response = self._response(return_val)
        if response is not None:
            self.cache.update(self._request(prompt, llm_string), response)

    def clear(self, **kwargs: Any) -> None:
        """Remove this tenant's entries (``model=`` / ``older_than_s=`` narrow it)."""
        self.cache.invalidate(tenant=self.tenant, model=kwargs.get("model"),
                              older_than_s=kwargs.get("older_than_s"))

    async def alookup(self, prompt: str, llm_string: str) -> RETURN_VAL_TYPE | None:
        hit = await self.cache.alookup(self._request(prompt, llm_string))
        return None if hit is None else self._generations(hit, self._is_chat(prompt))

    async def aupdate(self, prompt: str, llm_string: str, return_val: RETURN_VAL_TYPE) -> None:
        response = self._response(return_val)
        if response is not None:
            await self.cache.aupdate(self._request(prompt, llm_string), response)

    async def aclear(self, **kwargs: Any) -> None:
        await asyncio.to_thread(self.clear, **kwargs)

    # ---- feedback --------------------------------------------------------------

    def report_wrong_hit(self, message_or_hit_id: BaseMessage | Generation | str) -> bool:
        """Tell the cache that a semantic hit it served was wrong (``message_or_hit_id``:
        the ``AIMessage`` the model returned, its generation, or its
        ``response_metadata["tokenlean"]["cache_hit_id"]``). The entry is not served
        again to a query that close, and the false-hit bound counts the wrong hit.
        Returns False, learning nothing, for a miss or an exact hit; a hit id no
        cache gave is an ``InvalidRequestError``."""
        hit_id = hit_id_from_lc(message_or_hit_id)
        return hit_id is not None and self.cache.report_wrong_hit(hit_id)

    async def areport_wrong_hit(self, message_or_hit_id: BaseMessage | Generation | str
                                ) -> bool:
        hit_id = hit_id_from_lc(message_or_hit_id)
        return hit_id is not None and await self.cache.areport_wrong_hit(hit_id)
