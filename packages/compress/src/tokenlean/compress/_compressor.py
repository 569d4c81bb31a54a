"""The one interface: compress documents (or one context) for an optional
question to a token target, and say what was kept."""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_args

import numpy as np

from tokenlean.core import ConfigError, InvalidRequestError, get_tokenizer

from ._relevance import answer_cue, word_info
from ._scorers import EmbeddingScorer, RandomScorer, SegmentScorer, TokenleanScorer
from ._text import STOPWORDS, Segment, split_segments, stem, words

__all__ = ["CompressResult", "Compressor", "Method", "Span", "compress"]

Method = Literal["tokenlean", "random", "embeddings", "llmlingua", "longllmlingua"]
METHODS: tuple[str, ...] = get_args(Method)
DOC_SEPARATOR = "\n\n"
MAX_RATIO = 1000.0

# Presets for ``force``: segments matching them are kept first, and token pruning
# never drops a word they match.
FORCE_PRESETS: dict[str, str] = {
    "numbers": r"\d",
    "names": r"(?<![.!?]\s)(?<!^)\b[A-Z][a-z]+(?:\s+[A-Z][a-z]+)+",
    "code": r"`|\b(?:def|class|return|import|function|const|var|let)\b|[{};]\s*$|=>|::",
    "urls": r"https?://\S+",
}


@dataclass(frozen=True, slots=True)
class Span:
    """A kept piece of the input, for citations: ``documents[doc][start:end]``.

    ``segment`` is the sentence's index within its document; ``partial`` is True
    when only a window of the sentence (or a pruned version of it) was kept.
    """

    doc: int
    segment: int
    start: int
    end: int
    partial: bool = False


@dataclass(frozen=True, slots=True)
class CompressResult:
    """What :meth:`Compressor.compress` returns.

    ``text`` is the compressed documents joined by a blank line (empty ones
    left out); ``documents`` has one entry per input document ("" when nothing
    of it was kept). Token counts use ``model``'s tokenizer (o200k for gpt-4o).
    ``retention`` is the quality proxy: the estimated share of the relevant
    content kept (for question-aware methods, the ranker's probability that the
    answer-bearing sentence survived). ``passthrough`` is True when the input
    was already within budget and came back unchanged.
    """

    text: str
    documents: tuple[str, ...]
    tokens_before: int
    tokens_after: int
    kept: tuple[Span, ...]
    method: str
    retention: float
    budget: int
    passthrough: bool = False

    @property
    def ratio(self) -> float:
        """``tokens_before / tokens_after`` (inf when nothing was kept)."""
        return self.tokens_before / self.tokens_after if self.tokens_after else math.inf

    @property
    def saved_tokens(self) -> int:
        return self.tokens_before - self.tokens_after


def check_ratio(ratio: Any, *, error: type[Exception] = ConfigError) -> float | None:
    if ratio is None:
        return None
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not math.isfinite(ratio):
        raise error(f"ratio must be a finite number > 1 (5 keeps about a fifth), got {ratio!r}")
    if ratio <= 1:
        raise error(f"ratio must be > 1 (5 keeps about a fifth of the tokens), got {ratio}; "
                    "to keep everything, do not compress")
    if ratio > MAX_RATIO:
        raise error(f"ratio {ratio} is absurd (max {MAX_RATIO:g}); use max_tokens for a hard cap")
    return float(ratio)


def check_max_tokens(max_tokens: Any, *, error: type[Exception] = ConfigError) -> int | None:
    if max_tokens is None:
        return None
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        raise error(f"max_tokens must be a positive integer, got {max_tokens!r}")
    return max_tokens


def _documents(context: Any) -> tuple[str, ...]:
    if isinstance(context, str):
        docs: tuple[Any, ...] = (context,)
    elif isinstance(context, (bytes, bytearray)):
        raise InvalidRequestError("context must be text (str), not bytes: decode it first")
    elif isinstance(context, Sequence):
        docs = tuple(context)
        if not docs:
            raise InvalidRequestError("no documents to compress: pass a string or a non-empty "
                                      "list of strings")
    else:
        raise InvalidRequestError(
            f"context must be a string or a list of strings, got {type(context).__name__}")
    for i, doc in enumerate(docs):
        if not isinstance(doc, str):
            raise InvalidRequestError(
                f"document {i} is {type(doc).__name__}, not text; pass page_content / "
                "node text strings")
    return docs


class Compressor:
    """Question-aware compression to a token target.

    Args:
        method: ``"tokenlean"`` (default: embedded, no torch, nothing downloaded),
            ``"random"`` (floor), ``"embeddings"`` (MiniLM sentence filter, extra
            ``embeddings``), ``"llmlingua"`` / ``"longllmlingua"`` (extra
            ``llmlingua``; SmolLM2-135M as the scoring LM unless ``model_path``).
        ratio: keep about ``1/ratio`` of the tokens (> 1). Default 5 when neither
            ``ratio`` nor ``max_tokens`` is given.
        max_tokens: hard cap on the compressed text's tokens (with ``ratio``, the
            smaller budget wins).
        model: whose tokenizer counts tokens (default ``gpt-4o``: o200k).
        force: segments matching any of these are kept first and never pruned;
            each is a preset (``"numbers"``, ``"names"``, ``"code"``, ``"urls"``),
            or a regular expression. Question terms always count for relevance.
        prune: optional token-level pruning: drop words whose self-information
            (wordfreq, ``8 - zipf``) is below this (e.g. 1.5 drops "the", "of")
            from all but the best sentence, to fit more sentences. Off by default:
            on SQuAD/NQ it loses more answers than it saves (see the benchmark).
        length_penalty: for the default method, how much a long sentence must
            out-score a short one (``logit - length_penalty * log(tokens)``).
        seed: for ``method="random"``.
        model_path: for the LLMLingua methods, a local HF folder or GGUF file.
        device: for the LLMLingua methods, where the scoring LM runs.
    """

    def __init__(self, *, method: Method = "tokenlean", ratio: float | None = None,
                 max_tokens: int | None = None, model: str = "gpt-4o",
                 force: Sequence[str] = (), prune: float | None = None,
                 length_penalty: float = 1.0, seed: int = 0,
                 model_path: str | None = None, device: str = "cpu") -> None:
        if method not in METHODS:
            raise ConfigError(f"unknown method {method!r}; choose one of {list(METHODS)}")
        self.ratio = check_ratio(ratio)
        self.max_tokens = check_max_tokens(max_tokens)
        if self.ratio is None and self.max_tokens is None:
            self.ratio = 5.0
        if not isinstance(model, str) or not model:
            raise ConfigError("model must be a non-empty model name, e.g. 'gpt-4o'")
        get_tokenizer(model)
        self.model = model
        if isinstance(force, str):
            force = (force,)
        patterns = []
        for item in force:
            if not isinstance(item, str) or not item:
                raise ConfigError(f"force items must be non-empty strings, got {item!r}")
            try:
                patterns.append(re.compile(FORCE_PRESETS.get(item, item), re.MULTILINE))
            except re.error as exc:
                raise ConfigError(f"force pattern {item!r} is not a valid regular expression "
                                  f"({exc}); presets: {sorted(FORCE_PRESETS)}") from None
        self.force = tuple(force)
        self._force = tuple(patterns)
        if prune is not None and (isinstance(prune, bool) or not isinstance(prune, (int, float))
                                  or not 0 < prune < 8):
            raise ConfigError(f"prune must be a self-information threshold in (0, 8), e.g. 1.5; "
                              f"got {prune!r}")
        self.prune = prune
        if (isinstance(length_penalty, bool) or not isinstance(length_penalty, (int, float))
                or not 0 <= length_penalty <= 5):
            raise ConfigError(f"length_penalty must be between 0 and 5, got {length_penalty!r}")
        self.method = method
        self._scorer: SegmentScorer | None = None
        self._lingua: Any = None
        if method == "tokenlean":
            self._scorer = TokenleanScorer(length_penalty=float(length_penalty))
        elif method == "random":
            self._scorer = RandomScorer(seed=seed)
        elif method == "embeddings":
            self._scorer = EmbeddingScorer()
        else:
            from ._lingua import LinguaCompressor

            self._lingua = LinguaCompressor(long=method == "longllmlingua",
                                            model_path=model_path, device=device)

    def __repr__(self) -> str:
        return (f"Compressor(method={self.method!r}, ratio={self.ratio}, "
                f"max_tokens={self.max_tokens}, model={self.model!r})")

    # ---- public ------------------------------------------------------------

    def compress(self, context: str | Sequence[str], question: str | None = None, *,
                 ratio: float | None = None, max_tokens: int | None = None) -> CompressResult:
        """Compress ``context`` (a string or a list of documents) for ``question``.

        Text already within the budget comes back unchanged (``passthrough``).
        Raises :class:`InvalidRequestError` for non-text input or no documents.
        """
        docs, question, budget_of = self._validate(context, question, ratio, max_tokens)
        tokenizer = get_tokenizer(self.model)
        before = len(tokenizer.encode(DOC_SEPARATOR.join(docs)))
        budget = budget_of(before)
        if before <= budget:
            return self._passthrough(docs, before, budget)
        if self._lingua is not None:
            return self._lingua.compress(docs, question, budget=budget, before=before,
                                         model=self.model, method=self.method)
        return self._compress_segments(docs, question, budget, before)

    async def acompress(self, context: str | Sequence[str], question: str | None = None, *,
                        ratio: float | None = None,
                        max_tokens: int | None = None) -> CompressResult:
        """Async twin of :meth:`compress` (CPU work runs in a worker thread)."""
        return await asyncio.to_thread(self.compress, context, question, ratio=ratio,
                                       max_tokens=max_tokens)

    # ---- pure helpers ------------------------------------------------------

    def _validate(self, context: Any, question: Any, ratio: Any, max_tokens: Any
                  ) -> tuple[tuple[str, ...], str | None, Callable[[int], int]]:
        docs = _documents(context)
        if question is not None and not isinstance(question, str):
            raise InvalidRequestError(f"question must be a string or None, got "
                                      f"{type(question).__name__}")
        r = check_ratio(ratio, error=InvalidRequestError)
        m = check_max_tokens(max_tokens, error=InvalidRequestError)
        if r is None and m is None:
            r, m = self.ratio, self.max_tokens

        def budget_of(before: int) -> int:
            caps = [before]
            if r is not None:
                caps.append(max(1, math.floor(before / r)))
            if m is not None:
                caps.append(m)
            return min(caps)

        return docs, (question or None), budget_of

    def _passthrough(self, docs: Sequence[str], before: int, budget: int) -> CompressResult:
        kept = tuple(Span(doc=i, segment=s.index, start=s.start, end=s.end)
                     for i, d in enumerate(docs) for s in split_segments(d, i))
        return CompressResult(text=DOC_SEPARATOR.join(d for d in docs if d), documents=tuple(docs),
                              tokens_before=before, tokens_after=before, kept=kept,
                              method=self.method, retention=1.0, budget=budget, passthrough=True)

    def _forced(self, segments: Sequence[Segment], question: str | None) -> np.ndarray:
        if not self._force:
            return np.zeros(len(segments), dtype=bool)
        return np.array([any(p.search(s.text) for p in self._force) for s in segments])

    def _compress_segments(self, docs: Sequence[str], question: str | None, budget: int,
                           before: int) -> CompressResult:
        scorer = self._scorer
        if scorer is None:  # pragma: no cover - LLMLingua methods return earlier
            raise ConfigError(f"method {self.method!r} does not score segments")
        tokenizer = get_tokenizer(self.model)
        segments = [s for i, d in enumerate(docs) for s in split_segments(d, i)]
        if not segments:
            return self._passthrough(docs, before, budget)
        lengths = np.array([len(tokenizer.encode(s.text)) for s in segments], dtype=np.int64)
        key, weight = scorer.score(question, segments, lengths)
        forced = self._forced(segments, question)
        order = sorted(range(len(segments)), key=lambda i: (not forced[i], -key[i]))
        pieces = self._select(segments, lengths, order, budget, question, tokenizer)
        # the joins can add a token here and there: drop the weakest until it fits
        while True:
            documents = _assemble(docs, segments, pieces)
            text = DOC_SEPARATOR.join(d for d in documents if d)
            after = len(tokenizer.encode(text))
            if after <= budget or len(pieces) <= 1:
                break
            worst = max(pieces, key=lambda i: order.index(i))
            del pieces[worst]
        if after > budget:  # one piece, still too long: hard-cut it at the budget
            (i, piece), = pieces.items()
            cut = tokenizer.decode(tokenizer.encode(piece.text)[:max(1, budget - 1)])
            pieces = {i: _Piece(cut.rstrip(), True, piece.start, piece.start + len(cut))}
            documents = _assemble(docs, segments, pieces)
            text = DOC_SEPARATOR.join(d for d in documents if d)
            after = len(tokenizer.encode(text))
        kept = tuple(Span(doc=segments[i].doc, segment=segments[i].index, start=p.start,
                          end=p.end, partial=p.partial) for i, p in sorted(pieces.items()))
        retention = float(sum(weight[i] * (0.5 if p.partial else 1.0) for i, p in pieces.items()))
        return CompressResult(text=text, documents=tuple(documents), tokens_before=before,
                              tokens_after=after, kept=kept, method=self.method,
                              retention=round(min(1.0, retention), 4), budget=budget)

    def _select(self, segments: Sequence[Segment], lengths: np.ndarray, order: Sequence[int],
                budget: int, question: str | None, tokenizer: Any) -> dict[int, _Piece]:
        """Best-first under the budget; pruned copies past the best one if ``prune``;
        then fill what is left with a window of the best sentence that did not fit.

        The best segment always gets in: when it alone is over the budget, its
        window around the question's words takes the whole budget (at 10x a
        long answer-bearing sentence is common, and any window of it beats
        whole sentences that rank lower).
        """
        pieces: dict[int, _Piece] = {}
        used = 0
        for rank, i in enumerate(order):
            seg = segments[i]
            if self.prune is not None and rank > 0:
                text = self._pruned(seg.text)
                cost = len(tokenizer.encode(text)) + 1
                partial = text != seg.text
            else:
                text, cost, partial = seg.text, int(lengths[i]) + 1, False
            if used + cost <= budget:
                pieces[i] = _Piece(text, partial, seg.start, seg.end)
                used += cost
            elif rank == 0:
                window = _window(seg, question, budget - 1, tokenizer)
                if window is not None:
                    pieces[i] = window
                    used += len(tokenizer.encode(window.text)) + 1
        room = budget - used - 1
        if room >= 4 or not pieces:
            for i in order:
                if i in pieces:
                    continue
                window = _window(segments[i], question, room, tokenizer)
                if window is not None:
                    pieces[i] = window
                break
        return pieces

    def _pruned(self, text: str) -> str:
        threshold = self.prune or 0.0
        out: list[str] = []
        for m in _PRUNE_TOKEN.finditer(text):
            token = m.group(1)
            if token[0].isalnum() and word_info(token.lower()) < threshold \
                    and not any(p.search(token) for p in self._force):
                continue
            out.append(m.group(0))
        return "".join(out).strip()


_PRUNE_TOKEN = re.compile(r"\s*([^\W_]+(?:[-'.][^\W_]+)*|[^\w\s]+)", re.UNICODE)
_WORD_SPAN = re.compile(r"\S+")


@dataclass(frozen=True, slots=True)
class _Piece:
    text: str
    partial: bool
    start: int
    end: int


def _window(seg: Segment, question: str | None, room: int, tokenizer: Any) -> _Piece | None:
    """The window of ``seg`` (at most ``room`` tokens) that best covers the question:
    each question word counts 1, each word of the answer's likely type (a year for
    "when", a name for "who") 0.5; among equal windows, the one that centres them."""
    if room < 2:
        return None
    qstems = {stem(w) for w in words(question or "") if w not in STOPWORDS}
    cue = answer_cue(question)
    spans = [(m.start(), m.end()) for m in _WORD_SPAN.finditer(seg.text)]
    if not spans:
        return None
    cost = [len(tokenizer.encode(" " + seg.text[s:e])) for s, e in spans]
    gain = []
    for s, e in spans:
        token = seg.text[s:e]
        hit = any(stem(w) in qstems for w in words(token))
        gain.append(1.0 if hit else 0.5 if cue(token) else 0.0)
    positions = [k for k, g in enumerate(gain) if g]
    best: tuple[float, float, int, int] | None = None
    j = 0
    used = 0
    h = 0.0
    for i in range(len(spans)):  # two pointers over word windows
        if j < i:
            j, used, h = i, 0, 0.0
        while j < len(spans) and used + cost[j] <= room:
            used += cost[j]
            h += gain[j]
            j += 1
        if j > i:
            inside = [k for k in positions if i <= k < j]
            centred = -abs((i + j - 1) / 2 - sum(inside) / len(inside)) if inside else 0.0
            if best is None or (h, centred) > best[:2]:
                best = (h, centred, i, j)
            used -= cost[i]
            h -= gain[i]
    if best is None:
        return None
    _, _, i, j = best
    start, end = seg.start + spans[i][0], seg.start + spans[j - 1][1]
    return _Piece(seg.text[spans[i][0]:spans[j - 1][1]], True, start, end)


def _assemble(docs: Sequence[str], segments: Sequence[Segment],
              pieces: dict[int, _Piece]) -> list[str]:
    """Kept pieces in their original order; adjacent whole sentences keep their
    original separator, others are joined by a space (a newline across paragraphs)."""
    parts: list[list[str]] = [[] for _ in docs]
    prev: list[int | None] = [None] * len(docs)
    for i in sorted(pieces):
        seg, piece = segments[i], pieces[i]
        p = prev[seg.doc]
        if p is not None:
            last = segments[p]
            if p == i - 1 and not piece.partial and not pieces[p].partial:
                parts[seg.doc].append(docs[seg.doc][last.end:seg.start])
            else:
                parts[seg.doc].append("\n" if last.para != seg.para else " ")
        parts[seg.doc].append(piece.text)
        prev[seg.doc] = i
    return ["".join(p) for p in parts]


def compress(context: str | Sequence[str], question: str | None = None, *,
             ratio: float | None = None, max_tokens: int | None = None,
             method: Method = "tokenlean", model: str = "gpt-4o") -> CompressResult:
    """One-shot :meth:`Compressor.compress` (build a :class:`Compressor` to reuse it)."""
    return Compressor(method=method, ratio=ratio, max_tokens=max_tokens,
                      model=model).compress(context, question)
