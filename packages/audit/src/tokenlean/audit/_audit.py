"""Replay a traffic log offline through the layers and estimate what each saves.

Layers are applied **sequentially to the same request stream**, in pipeline
order, each to what the previous ones left:

1. ``templates``: the rewriter (``tokenlean.templates.TemplateRewriter``,
   safe mode) on system / developer messages. Saved: input tokens measured
   before/after. Quality proxy: the rewriter's MiniLM similarity.
2. ``compress``: only *context-bearing* messages: tool results and the
   context block of a message that marks one (``Context:``, ``Documents:``,
   ``<context>``...). The user's own question, instructions and code are never
   compressed. Saved: input tokens. Quality proxy: the compressor's retention
   estimate (or, when it reports none, the share of question words kept).
3. ``budget``: the length predictor's ``max_tokens`` for the request. A
   predicted cap does not shorten a good answer, so an answer that ended on
   its own saves nothing; output is counted as saved only where the logged
   answer ran into a length cap (``finish_reason == "length"``) longer than the
   predicted one (a runaway the predicted cap would have stopped earlier).
   Quality proxy: coverage (share of answers that fit under the cap) and the
   share the cap would have cut.
4. ``cache``: a fresh in-memory ``ResponseCache`` (exact + semantic, default
   false-hit guard) replayed in log order; each miss stores its logged answer.
   A hit removes the whole remaining call: the input the earlier layers left
   and the output. Only hits the guard accepted count. The cache sees the
   request as the pipeline would (including the budget's ``max_tokens``,
   which is part of the cache key).

Token counts use the ``--price-as`` model's tokenizer for both prompts and
answers, and prices come from its genai-prices rates, so a log of mixed models
is priced as if it all had gone to that model. Cost per 1M tokens (before and
after) divides the spend by the *original* traffic's tokens (input + output),
so the two numbers share a denominator and their ratio is the saving.
"""

from __future__ import annotations

import re
import time
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from tokenlean.core import (
    ConfigError,
    Message,
    Request,
    Response,
    TokenleanError,
    TokenleanWarning,
    Usage,
    count_messages,
    count_tokens,
)
from tokenlean.core.prices import default_price_table

from ._logs import LogEntry, read_log

__all__ = ["LAYERS", "AuditOptions", "audit_entries", "audit_log", "context_spans"]

LAYERS = ("templates", "compress", "budget", "cache")
_MTOK = 1_000_000

_CONTEXT_MARK = re.compile(
    r"^[ \t]*(?:#+[ \t]*)?(?:context|contexts|documents?|sources?|passages?"
    r"|retrieved(?: documents)?|background|reference(?:s| material)?|knowledge)[ \t]*:"
    r"|<(?:context|documents?|sources?|passages?)>", re.I | re.M)
_QUESTION_MARK = re.compile(r"^[ \t]*(?:question|query|user question)[ \t]*:"
                            r"|</(?:context|documents?|sources?|passages?)>", re.I | re.M)


def context_spans(message: Message, *, min_tokens: int = 120,
                  count_model: str = "gpt-4o") -> list[tuple[int, int]]:
    """Character spans of ``message`` that carry retrieved context (may be empty).

    A tool message is context as a whole; a system or user message only from
    a context marker (``Context:``, ``Documents:``, ``<context>``...) up to a
    ``Question:`` line or a closing tag. Spans under ``min_tokens`` are left
    alone (nothing worth compressing).
    """
    text = message.text
    if not text or not isinstance(message.content, str):
        return []
    spans: list[tuple[int, int]] = []
    if message.role == "tool":
        spans = [(0, len(text))]
    elif message.role in ("system", "developer", "user"):
        for mark in _CONTEXT_MARK.finditer(text):
            start = mark.end()
            if spans and start < spans[-1][1]:
                continue
            end_mark = _QUESTION_MARK.search(text, start)
            end = end_mark.start() if end_mark else len(text)
            if end > start:
                spans.append((start, end))
    return [(a, b) for a, b in spans
            if count_tokens(text[a:b], model=count_model).tokens >= min_tokens]


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditOptions:
    """What the audit replays and how it prices."""

    price_as: str = "gpt-4o"
    layers: Sequence[str] = LAYERS
    compress_ratio: float = 3.0
    budget_quantile: float | None = None
    cache_embedder: str = "wordllama"
    tenant_field: str | None = None
    max_examples: int = 50
    max_points: int = 2000


@dataclass
class _LayerAcc:
    name: str
    status: str = "ran"
    note: str = ""
    saved_input: int = 0
    saved_output: int = 0
    saved_usd: Decimal = Decimal(0)
    changed: int = 0
    quality: dict[str, list[float]] = field(default_factory=dict)

    def add_quality(self, key: str, value: float | None) -> None:
        if value is not None:
            self.quality.setdefault(key, []).append(float(value))


# ---- layer adapters (each uses the layer package's public API) ------------------


class _Templates:
    name = "templates"

    def __init__(self, price_as: str) -> None:
        from tokenlean.templates import TemplateRewriter

        self.rewriter = TemplateRewriter(mode="safe", model=price_as)

    def apply(self, request: Request, acc: _LayerAcc) -> Request:
        messages = list(request.messages)
        changed = False
        for i, m in enumerate(messages):
            if m.role not in ("system", "developer") or not m.text.strip():
                continue
            new = self._rewrite_instructions(m, acc)
            if new != m.text:
                messages[i] = m.with_text(new)
                changed = True
        return request.with_messages(messages) if changed else request

    def _rewrite_instructions(self, message: Message, acc: _LayerAcc) -> str:
        """Rewrite the template part of a system message; a retrieved-context block in it
        is data, not template (compression's job), and is left as is."""
        text = message.text
        spans = context_spans(message, min_tokens=0, count_model=self.rewriter.model)
        cuts = [0, *[x for span in spans for x in span], len(text)]
        out = []
        for k in range(0, len(cuts), 2):
            a, b = cuts[k], cuts[k + 1]
            piece = text[a:b]
            if piece.strip():
                result = self.rewriter.rewrite(piece.strip())
                acc.add_quality("similarity", result.similarity)
                if result.changed and result.saved_tokens > 0:
                    lead = piece[:len(piece) - len(piece.lstrip())]
                    trail = piece[len(piece.rstrip()):]
                    piece = lead + result.text.strip() + trail
            out.append(piece)
            if k + 2 < len(cuts):
                out.append(text[b:cuts[k + 2]])
        return "".join(out)


class _Compress:
    """Question-aware compression of context spans through ``tokenlean.compress``."""

    name = "compress"

    def __init__(self, price_as: str, ratio: float) -> None:
        from tokenlean.compress import Compressor

        self.price_as = price_as
        self.compressor = Compressor(ratio=ratio, model=price_as)
        self.points: list[tuple[float, float]] = []

    def _one(self, text: str, question: str) -> tuple[str, float | None]:
        result = self.compressor.compress(text, question or None)
        return result.text, float(result.retention)

    def apply(self, request: Request, acc: _LayerAcc) -> Request:
        question = request.last_user_text
        messages = list(request.messages)
        changed = False
        for i, m in enumerate(messages):
            spans = context_spans(m, count_model=self.price_as)
            if not spans:
                continue
            text = m.text
            out, last = [], 0
            for a, b in spans:
                q = question
                if m.role == "user":  # the question inside the same message
                    q = (text[:a] + " " + text[b:]).strip() or question
                piece, retention = self._one(text[a:b], q)
                before = count_tokens(text[a:b], model=self.price_as).tokens
                after = max(1, count_tokens(piece, model=self.price_as).tokens)
                if after < before:
                    self.points.append((before / after, 1.0 if retention is None else retention))
                    acc.add_quality("retention", retention)
                    out.append(text[last:a] + piece)
                else:
                    out.append(text[last:b])
                last = b
            out.append(text[last:])
            new = "".join(out)
            if new != text:
                messages[i] = m.with_text(new)
                changed = True
        return request.with_messages(messages) if changed else request


class _Budget:
    name = "budget"

    def __init__(self, price_as: str, quantile: float | None) -> None:
        from tokenlean.budget import LengthPredictor

        self.predictor = LengthPredictor.default(count_model=price_as)
        if quantile is not None:
            self.predictor = self.predictor.with_quantile(quantile)
        self.points: list[tuple[int, int]] = []
        self.covered = 0
        self.seen = 0

    def apply(self, request: Request, output_tokens: int, finish_reason: str | None,
              acc: _LayerAcc) -> tuple[Request, int]:
        cap = self.predictor.predict(request.messages)
        if request.max_tokens is not None:
            cap = min(cap, request.max_tokens)
        self.seen += 1
        self.points.append((cap, output_tokens))
        if output_tokens <= cap:
            self.covered += 1
        saved = 0
        if finish_reason == "length" and output_tokens > cap:
            saved = output_tokens - cap  # a runaway the predicted cap stops earlier
        if saved:
            acc.changed += 1
        from dataclasses import replace

        return replace(request, max_tokens=cap), saved


class _Cache:
    name = "cache"

    def __init__(self, embedder: str) -> None:
        from tokenlean.cache import ResponseCache

        self.note = ""
        try:
            self.cache = ResponseCache(semantic=True, embedder=embedder)
        except TokenleanError as exc:  # the semantic guard cannot load: exact hits only
            self.cache = ResponseCache(semantic=False)
            self.note = f"exact hits only: the semantic false-hit guard could not load ({exc})"
        self.lookups = 0
        self.accepted: list[float] = []
        self.examples: list[dict[str, Any]] = []

    def lookup(self, request: Request) -> Any:
        self.lookups += 1
        return self.cache.lookup(request)

    def store(self, request: Request, text: str, output_tokens: int) -> None:
        self.cache.update(request, Response(text=text, model=request.model, finish_reason="stop",
                                            usage=Usage(output_tokens=output_tokens)))

    def close(self) -> None:
        self.cache.close()


def _make(name: str, options: AuditOptions) -> Any:
    if name == "templates":
        return _Templates(options.price_as)
    if name == "compress":
        return _Compress(options.price_as, options.compress_ratio)
    if name == "budget":
        return _Budget(options.price_as, options.budget_quantile)
    if name == "cache":
        return _Cache(options.cache_embedder)
    raise ConfigError(f"unknown layer {name!r}; known: {list(LAYERS)}")


# ---- the replay -------------------------------------------------------------------


def _rates(price_as: str) -> tuple[Decimal, Decimal]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TokenleanWarning)
        rates = default_price_table().rates(model=price_as)
    if rates is None:
        raise ConfigError(f"no price known for {price_as!r}; pass --price-as with a model "
                          "genai-prices knows, e.g. gpt-4o")
    return rates


def _mean(values: Iterable[float]) -> float | None:
    values = list(values)
    return sum(values) / len(values) if values else None


def _tokens(entry: LogEntry, price_as: str) -> tuple[int, int]:
    assert_request = entry.request
    if assert_request is None:  # pragma: no cover - callers check
        raise ConfigError("no request")
    tin = count_messages(assert_request.messages, model=price_as,
                         tools=assert_request.tools).tokens
    if entry.response_text is not None:
        tout = count_tokens(entry.response_text, model=price_as).tokens
    else:
        tout = entry.usage_output or 0
    return tin, tout


def audit_entries(entries: Iterable[LogEntry], *, options: AuditOptions | None = None,
                  progress: Callable[[int], None] | None = None,
                  source: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Replay ``entries`` and return the report dict (see :mod:`tokenlean.audit.report`)."""
    options = options or AuditOptions()
    unknown = [n for n in options.layers if n not in LAYERS]
    if unknown:
        raise ConfigError(f"unknown layer(s) {unknown}; known: {list(LAYERS)}")
    rate_in, rate_out = _rates(options.price_as)
    started = time.perf_counter()
    accs = {name: _LayerAcc(name) for name in LAYERS}
    impls: dict[str, Any] = {}
    for name in LAYERS:
        if name not in options.layers:
            accs[name].status, accs[name].note = "off", "not requested"
            continue
        try:
            impls[name] = _make(name, options)
        except ImportError as exc:
            accs[name].status = "skipped"
            accs[name].note = (f"tokenlean-{name} is not installed or has no usable public API "
                               f"yet ({exc}); install tokenlean-{name} to include this layer")
        except TokenleanError as exc:  # installed but not usable here (e.g. a missing model)
            accs[name].status = "skipped"
            accs[name].note = f"tokenlean-{name} could not start: {exc}"
    totals = {"in_before": 0, "out_before": 0, "in_after": 0, "out_after": 0}
    cost_before = cost_after = Decimal(0)
    ledger_mode = False
    n = 0
    formats: set[str] = set()
    cache = impls.get("cache")
    if cache is not None and cache.note:
        accs["cache"].note = cache.note
    try:
        for entry in entries:
            n += 1
            formats.add(entry.format)
            if entry.record is not None:
                ledger_mode = True
                t_in, t_out, a_in, a_out = _observed(entry, accs, rate_in, rate_out, cache)
            else:
                t_in, t_out, a_in, a_out = _replay(entry, impls, accs, options, rate_in,
                                                   rate_out)
            totals["in_before"] += t_in
            totals["out_before"] += t_out
            totals["in_after"] += a_in
            totals["out_after"] += a_out
            cost_before += t_in * rate_in + t_out * rate_out
            cost_after += a_in * rate_in + a_out * rate_out
            if progress is not None:
                progress(n)
    finally:
        if cache is not None:
            cache.close()
    return _build_report(n=n, formats=formats, ledger_mode=ledger_mode, accs=accs, impls=impls,
                         totals=totals, cost_before=cost_before, cost_after=cost_after,
                         options=options, elapsed=time.perf_counter() - started,
                         source=source or {})


def _replay(entry: LogEntry, impls: Mapping[str, Any], accs: Mapping[str, _LayerAcc],
            options: AuditOptions, rate_in: Decimal,
            rate_out: Decimal) -> tuple[int, int, int, int]:
    price_as = options.price_as
    request = entry.request
    assert request is not None  # parse_line guarantees it for replayed formats
    t_in, t_out = _tokens(entry, price_as)
    current, cur_in, out = request, t_in, t_out
    for name in ("templates", "compress"):
        layer = impls.get(name)
        if layer is None:
            continue
        new = layer.apply(current, accs[name])
        if new.messages != current.messages:
            new_in = count_messages(new.messages, model=price_as, tools=new.tools).tokens
            saved = cur_in - new_in
            accs[name].saved_input += saved
            accs[name].saved_usd += saved * rate_in
            accs[name].changed += 1
            current, cur_in = new, new_in
    budget = impls.get("budget")
    if budget is not None:
        current, saved_out = budget.apply(current, out, entry.finish_reason, accs["budget"])
        accs["budget"].saved_output += saved_out
        accs["budget"].saved_usd += saved_out * rate_out
        out -= saved_out
    cache = impls.get("cache")
    if cache is not None:
        hit = cache.lookup(current)
        if hit is not None:
            acc = accs["cache"]
            acc.saved_input += cur_in
            acc.saved_output += out
            acc.saved_usd += cur_in * rate_in + out * rate_out
            acc.changed += 1
            acc.add_quality("similarity", hit.score)
            if hit.verifier is not None:
                acc.add_quality("verifier", hit.verifier)
            cache.accepted.append(hit.score)
            if len(cache.examples) < options.max_examples:
                cache.examples.append({"kind": hit.kind, "similarity": round(hit.score, 4),
                                       "verifier": hit.verifier,
                                       "query": current.last_user_text[:300],
                                       "matched": hit.matched_query[:300],
                                       "line": entry.line})
            return t_in, t_out, 0, 0
        if entry.response_text is not None:
            cache.store(current, entry.response_text, out)
    return t_in, t_out, cur_in, out


def _observed(entry: LogEntry, accs: dict[str, _LayerAcc], rate_in: Decimal,
              rate_out: Decimal, cache: Any) -> tuple[int, int, int, int]:
    """A ledger record: the savings its layers recorded (nothing is replayed)."""
    record = entry.record
    assert record is not None  # only called for ledger entries
    a_in, a_out = record.usage.input_tokens, record.usage.output_tokens
    t_in, t_out = a_in, a_out
    for rep in record.layers:
        acc = accs.get(rep.layer)
        if acc is None:
            acc = accs.setdefault(rep.layer, _LayerAcc(rep.layer))
        acc.status = "ran"
        acc.note = "as recorded in the ledger"
        acc.saved_input += rep.saved_input_tokens
        acc.saved_output += rep.saved_output_tokens
        acc.saved_usd += rep.saved_input_tokens * rate_in + rep.saved_output_tokens * rate_out
        if rep.saved_input_tokens or rep.saved_output_tokens:
            acc.changed += 1
        for key, value in rep.quality.items():
            if isinstance(value, (int, float)):
                acc.add_quality(key, value)
        t_in += rep.saved_input_tokens
        t_out += rep.saved_output_tokens
    if record.cached and cache is not None and record.cache_score is not None:
        cache.accepted.append(float(record.cache_score))
    return t_in, t_out, a_in, a_out


def _per_mtok(usd: Decimal, tokens: int) -> float:
    return float(usd) * _MTOK / tokens if tokens else 0.0


def _build_report(*, n: int, formats: set[str], ledger_mode: bool,
                  accs: Mapping[str, _LayerAcc], impls: Mapping[str, Any],
                  totals: Mapping[str, int], cost_before: Decimal, cost_after: Decimal,
                  options: AuditOptions, elapsed: float,
                  source: Mapping[str, Any]) -> dict[str, Any]:
    base_tokens = totals["in_before"] + totals["out_before"]
    layers = []
    for name, acc in accs.items():
        quality: dict[str, Any] = {k: round(v, 4) for k, v in
                                   ((k, _mean(vals)) for k, vals in acc.quality.items())
                                   if v is not None}
        if name == "budget" and "budget" in impls and not ledger_mode:
            b = impls["budget"]
            quality["coverage"] = round(b.covered / b.seen, 4) if b.seen else None
            quality["would_cut_share"] = round(1 - b.covered / b.seen, 4) if b.seen else None
        if name == "cache" and "cache" in impls:
            quality["hit_rate"] = round(acc.changed / n, 4) if n else 0.0
        layers.append({
            "layer": name, "status": acc.status, "note": acc.note,
            "saved_input_tokens": acc.saved_input, "saved_output_tokens": acc.saved_output,
            "saved_usd": round(float(acc.saved_usd), 6),
            "saved_per_mtok": round(_per_mtok(acc.saved_usd, base_tokens), 4),
            "saved_share": round(float(acc.saved_usd / cost_before), 4) if cost_before else 0.0,
            "requests_changed": acc.changed, "quality": quality,
        })
    before = _per_mtok(cost_before, base_tokens)
    after = _per_mtok(cost_after, base_tokens)
    report: dict[str, Any] = {
        "schema": "tokenlean.audit/1",
        "kind": "audit",
        "title": "tokenlean audit",
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "price_as": options.price_as,
        "source": {**source, "format": ",".join(sorted(formats)) or "empty",
                   "mode": "recorded (ledger)" if ledger_mode else "replayed"},
        "requests": n,
        "tokens_before": {"input": totals["in_before"], "output": totals["out_before"]},
        "tokens_after": {"input": totals["in_after"], "output": totals["out_after"]},
        "cost_usd_before": round(float(cost_before), 6),
        "cost_usd_after": round(float(cost_after), 6),
        "cost_per_mtok_before": round(before, 4),
        "cost_per_mtok_after": round(after, 4),
        "saved_ratio": round(1 - float(cost_after / cost_before), 4) if cost_before else 0.0,
        "layers": layers,
        "elapsed_s": round(elapsed, 2),
        "notes": _notes(options, ledger_mode),
    }
    cache = impls.get("cache")
    if cache is not None:
        report["cache"] = {"lookups": cache.lookups if not ledger_mode else n,
                           "hits": (accs["cache"].changed if not ledger_mode
                                    else len(cache.accepted)),
                           "accepted": [round(s, 4) for s in cache.accepted[:options.max_points]],
                           "rejected": [], "examples": cache.examples,
                           "guard": "default false-hit guard" if cache.cache.guard else "none"}
    comp = impls.get("compress")
    if comp is not None:
        report["compression"] = {"target_ratio": options.compress_ratio,
                                 "points": [[round(r, 3), round(q, 4)]
                                            for r, q in comp.points[:options.max_points]]}
    budget = impls.get("budget")
    if budget is not None and not ledger_mode:
        report["budget"] = {"quantile": budget.predictor.quantile,
                            "coverage": round(budget.covered / budget.seen, 4)
                            if budget.seen else None,
                            "points": [list(p) for p in budget.points[:options.max_points]]}
    return report


def _notes(options: AuditOptions, ledger_mode: bool) -> list[str]:
    if ledger_mode:
        return ["Ledger export: the savings shown are what the layers recorded on the real "
                "calls (nothing was replayed); all tokens are re-priced as "
                f"{options.price_as}."]
    return [
        f"Every request was priced as {options.price_as} (genai-prices rates), tokens counted "
        "with its tokenizer; cost per 1M tokens divides spend by the original traffic's "
        "input + output tokens, before and after alike.",
        "Layers were applied in pipeline order to the same request stream, each to what the "
        "previous layers left (compress acts on what templates left; a cache hit removes "
        "the whole remaining call). Per-layer savings add up to the total.",
        "templates: the safe rewriter on system/developer messages only, on their "
        "instruction text (a context block inside a system message is left to compress).",
        "compress: only context-bearing messages (tool results, marked context blocks); "
        f"target ratio {options.compress_ratio}x.",
        "budget: a predicted cap does not shorten an answer that ends on its own, so output "
        "is counted as saved only for logged answers cut by a longer length cap "
        "(finish_reason=length). Coverage is the share of answers that fit under the cap.",
        "cache: a fresh in-memory cache replayed in log order; a miss stores the logged "
        "answer; only hits accepted by the false-hit guard count. The cache key includes "
        "the request's model, so the same prompt sent to different models never hits.",
    ]


def audit_log(path: str | Path, *, options: AuditOptions | None = None,
              limit: int | None = None,
              progress: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Audit the JSONL log at ``path`` (see :mod:`tokenlean.audit._logs` for shapes)."""
    entries = read_log(path, limit=limit)
    return audit_entries(entries, options=options, progress=progress,
                         source={"path": str(path), "limit": limit})
