"""The pipeline layer: rewrite system / developer messages with the safe passes."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Literal

from tokenlean.core import ConfigError, LayerNote, Message, Request

from ._rewrite import FIRST_SIGHT_MAX_CHARS, RewriteResult, TemplateRewriter
from ._similarity import SimilarityScorer

__all__ = ["TemplatesLayer"]


class TemplatesLayer:
    """Rewrites the prompt text the app wrote (system / developer messages by
    default) and leaves what users typed alone.

    The rewrite of a given text is memoised, so a system prompt that repeats on
    every call is rewritten and scored once; later calls cost a dict lookup.
    The note carries ``quality={"similarity": min over rewritten messages}``
    and ``detail={"passes": {pass: tokens saved}}``.

    A text longer than ``first_sight_max_chars`` (default 2,000) gets its meaning
    check, and the passes that need one, when it repeats: an app's template is
    sent on every call and is rewritten from its second call on; a system message
    that carries retrieved context, new on every call, gets the lossless passes
    only and never waits for MiniLM. ``None`` rewrites every text in full at once.
    """

    name = "templates"

    def __init__(self, *, mode: Literal["safe", "whitespace", "all"] = "safe",
                 roles: Sequence[str] = ("system", "developer"),
                 similarity_floor: float | None = None,
                 scorer: SimilarityScorer | Literal["minilm"] | None = "minilm",
                 rewriter: TemplateRewriter | None = None,
                 first_sight_max_chars: int | None = FIRST_SIGHT_MAX_CHARS) -> None:
        if isinstance(roles, str) or not roles:
            raise ConfigError("roles must be a non-empty list of message roles, e.g. ['system']")
        if rewriter is not None and not isinstance(rewriter, TemplateRewriter):
            raise ConfigError("rewriter must be a TemplateRewriter")
        self.roles = frozenset(roles)
        self.rewriter = rewriter or TemplateRewriter(
            mode=mode, similarity_floor=similarity_floor, scorer=scorer,
            first_sight_max_chars=first_sight_max_chars)

    def _targets(self, request: Request) -> list[int]:
        return [i for i, m in enumerate(request.messages)
                if m.role in self.roles and m.text.strip()]

    def _apply(self, request: Request, results: dict[int, RewriteResult]) -> Request:
        changed = {i: r for i, r in results.items() if r.changed}
        if not changed:
            return request
        messages: list[Message] = [
            m.with_text(changed[i].text) if i in changed else m
            for i, m in enumerate(request.messages)
        ]
        passes: dict[str, int] = {}
        for r in changed.values():
            for p in r.passes:
                if p.saved_tokens:
                    passes[p.name] = passes.get(p.name, 0) + p.saved_tokens
        sims = [r.similarity for r in changed.values() if r.similarity is not None]
        note = LayerNote(
            layer=self.name,
            quality={"similarity": min(sims)} if sims else {},
            detail={"passes": passes, "messages": len(changed),
                    "mode": self.rewriter.mode},
        )
        return request.with_messages(messages).with_note(note)

    def process(self, request: Request) -> Request:
        targets = self._targets(request)
        results = self.rewriter.rewrite_many([request.messages[i].text for i in targets])
        return self._apply(request, dict(zip(targets, results, strict=True)))

    async def aprocess(self, request: Request) -> Request:
        targets = self._targets(request)
        texts = [request.messages[i].text for i in targets]
        cached = [hit for t in texts if (hit := self.rewriter.cached(t)) is not None]
        if len(cached) == len(texts):
            results = cached
        else:
            results = await asyncio.to_thread(self.rewriter.rewrite_many, texts)
        return self._apply(request, dict(zip(targets, results, strict=True)))
