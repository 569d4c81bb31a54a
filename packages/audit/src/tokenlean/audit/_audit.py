"""Replay a traffic log offline through the pipeline ``lean()`` would run.

The audit does not imitate the layers: it builds them with the function
``lean()`` builds them with (:func:`tokenlean.core.presets.resolve_lean`, the
same preset and keywords, so the same layers in the same order: the cache
first) and runs every logged request through the real
:class:`~tokenlean.core.Pipeline`. Two parts stand in for the outside world:

* the provider is a :class:`~tokenlean.audit._replay.ReplayProvider`, which
  answers each request with the answer the log recorded for it (cut at the
  request's ``max_tokens`` when a layer lowered the cap: the model would have
  stopped there);
* the ledger is a :class:`~tokenlean.audit._replay.MemoryLedger`, which
  collects the :class:`~tokenlean.core.CallRecord` rows the pipeline writes,
  the rows ``lean()``'s ledger would hold.

The report is computed from those rows. Every call is priced as ``price_as``
(its tokenizer counts prompts and answers, its genai-prices rates price them),
so a log of mixed models is priced as if it all had gone to that model. What a
layer saved on the input side is what the pipeline measured (prompt tokens
before minus after the layer). On the output side the replay measures against
the logged answer: a cache hit saves the whole logged call (``lean()``'s ledger
books it as the call it replaced, what that call cost after the other layers;
the rest is booked to the cache too, since the other layers did not run), and
an answer cut by a lowered ``max_tokens`` saves the tokens after the cut
(booked to the layer that set the cap). So the per-layer savings add up to the difference
between the spend before and after. Cost per 1M tokens (before and after)
divides the spend by the *original* traffic's tokens (input + output), so the
two numbers share a denominator and their ratio is the saving.
"""

from __future__ import annotations

import shutil
import tempfile
import time
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from tokenlean.core import (
    CallRecord,
    Layer,
    Pipeline,
    Response,
    TokenleanError,
    TokenleanWarning,
    count_messages,
)
from tokenlean.core.presets import LAYER_ORDER, LayerChoice, close_layers, resolve_lean

from ._logs import LogEntry, read_log
from ._output import OutputRatios, OutputTally, task_type
from ._prefix import PrefixCache, rules_for
from ._replay import MemoryLedger, PricedAs, ReplayProvider

__all__ = ["LAYERS", "AuditOptions", "audit_entries", "audit_log"]

#: the built-in layers, in the order ``lean()`` runs them
LAYERS = LAYER_ORDER
_MTOK = 1_000_000


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditOptions:
    """What the audit replays and how it prices.

    ``preset``, ``choices``, ``cache_sampled`` and ``max_false_hit_rate`` are ``lean()``'s
    (None: the semantic cache's default bound):
    ``AuditOptions(preset="max-savings", choices={"compress": False})`` replays
    ``lean(model, preset="max-savings", compress=False)``. ``layers`` replaces the
    preset with these layer objects, like ``lean(model, layers=[...])``.
    """

    price_as: str = "gpt-4o"
    preset: str = "safe"
    choices: Mapping[str, LayerChoice] = field(default_factory=dict)
    cache_sampled: bool = False
    max_false_hit_rate: float | None = None
    layers: Sequence[Layer] | None = None
    #: measured concise ratios per task type (``tokenlean bench output``): the report
    #: then estimates the output concise mode would save (see :mod:`._output`)
    output_ratios: OutputRatios | None = None
    #: also price both sides with the provider's prompt (prefix) cache (:mod:`._prefix`):
    #: the report's ``prefix_cache`` block
    prefix_cache: bool = False
    max_examples: int = 50
    max_points: int = 2000


@dataclass
class _LayerAcc:
    name: str
    status: str = "ran"
    note: str = ""
    saved_input: int = 0
    saved_output: int = 0
    changed: int = 0
    quality: dict[str, list[float]] = field(default_factory=dict)

    def add_quality(self, key: str, value: Any) -> None:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            self.quality.setdefault(key, []).append(float(value))


@dataclass
class _Books:
    """What the replay adds up while it reads the log."""

    layers: dict[str, _LayerAcc]
    in_before: int = 0
    out_before: int = 0
    in_after: int = 0
    out_after: int = 0
    requests: int = 0
    formats: set[str] = field(default_factory=set)
    ledger_mode: bool = False
    hits: list[float] = field(default_factory=list)
    examples: list[dict[str, Any]] = field(default_factory=list)
    compression: list[tuple[float, float]] = field(default_factory=list)
    budget: list[tuple[int, int]] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    failures: dict[str, int] = field(default_factory=dict)
    not_stored: dict[str, int] = field(default_factory=dict)  # why the cache kept no answer
    output: OutputTally = field(default_factory=OutputTally)  # for the output estimate
    # prompt tokens the provider's prompt cache reads and writes (AuditOptions.prefix_cache)
    read_before: int = 0
    write_before: int = 0
    read_after: int = 0
    write_after: int = 0

    def acc(self, name: str) -> _LayerAcc:
        if name not in self.layers:
            self.layers[name] = _LayerAcc(name)
        return self.layers[name]


@dataclass(frozen=True, slots=True)
class _Replayed:
    """One replayed call, waiting for its ledger row."""

    line: int
    input_tokens: int   # the logged request's prompt, priced-as tokenizer
    output_tokens: int  # the logged answer
    query: str
    hit: Mapping[str, Any] | None  # the cache's raw hit info, when the call was a hit
    task_type: str | None = None  # when the audit estimates the output row


# ---- building the layers ------------------------------------------------------------


def _installed(name: str) -> bool:
    return bool(entry_points(group="tokenlean.layers", name=name))


def _layers(options: AuditOptions) -> tuple[list[Layer], dict[str, _LayerAcc]]:
    """The layers ``lean()`` would run for ``options``, and a report row for every layer
    (those that run, and the built-in ones that do not, with why)."""
    keywords: dict[str, Any] = dict(options.choices)
    if options.cache_sampled:
        keywords["cache_sampled"] = True
    if options.max_false_hit_rate is not None:
        keywords["max_false_hit_rate"] = options.max_false_hit_rate
    # lean()'s own resolution: the same layers, the same checks (the replay has its own
    # ledger, so none is opened here)
    layers, _ = resolve_lean(layers=options.layers, preset=options.preset, ledger=False,
                             **keywords)
    why = (f"off in preset {options.preset!r}" if options.layers is None
           else "not among the layers given")
    rows = {layer.name: _LayerAcc(layer.name) for layer in layers}
    for name in LAYER_ORDER:
        if name in rows:
            continue
        if _installed(name):
            rows[name] = _LayerAcc(name, status="off", note=why)
        else:
            rows[name] = _LayerAcc(name, status="skipped", note=(
                f"no installed package provides the {name} layer "
                f"(pip install 'tokenlean[{name}]')"))
    return layers, rows


# ---- the replay -------------------------------------------------------------------


def _answered(records: Sequence[CallRecord], pending: Sequence[_Replayed],
              books: _Books, options: AuditOptions) -> None:
    """Book the pipeline's ledger rows against the logged calls they replayed."""
    for call, record in zip(pending, records, strict=True):
        books.in_after += record.usage.input_tokens
        books.out_after += record.usage.output_tokens
        books.read_after += record.usage.cache_read_tokens
        books.write_after += record.usage.cache_write_tokens
        cut = call.output_tokens - record.usage.output_tokens
        cap_layer = next((rep.layer for rep in record.layers if "max_tokens" in rep.detail),
                         None)
        before_hit = sum(rep.saved_input_tokens for rep in record.layers[:-1])
        for index, rep in enumerate(record.layers):
            acc = books.acc(rep.layer)
            why = rep.detail.get("not_cached")
            if isinstance(why, str):
                books.not_stored[why] = books.not_stored.get(why, 0) + 1
            if record.cached and index == len(record.layers) - 1:
                # the ledger books a hit as the call it replaced (what it cost after the
                # other layers); against the logged traffic the whole call is gone
                saved_in, saved_out = call.input_tokens - before_hit, call.output_tokens
            else:
                saved_in = rep.saved_input_tokens
                saved_out = cut if not record.cached and rep.layer == cap_layer else 0
            acc.saved_input += saved_in
            acc.saved_output += saved_out
            if saved_in or saved_out:
                acc.changed += 1
                for key, value in rep.quality.items():
                    acc.add_quality(key, value)
            if rep.layer == cap_layer and isinstance(rep.detail.get("max_tokens"), int):
                books.budget.append((int(rep.detail["max_tokens"]), call.output_tokens))
            after = rep.detail.get("tokens_after")
            if rep.layer == "compress" and isinstance(after, int) and after > 0:
                books.compression.append((int(rep.detail.get("tokens_before", after)) / after,
                                          float(rep.quality.get("retention", 1.0))))
        if options.output_ratios is not None:
            _tally_output(books, record, call.task_type)
        if record.cached:
            score = float(record.cache_score if record.cache_score is not None else 1.0)
            books.hits.append(score)
            hit = call.hit or {}
            verifier = hit.get("verifier")
            if verifier is not None:
                books.acc(record.layers[-1].layer).add_quality("verifier", verifier)
            if len(books.examples) < options.max_examples:
                books.examples.append({
                    "kind": hit.get("kind", "exact"), "similarity": round(score, 4),
                    "verifier": verifier, "query": call.query[:300],
                    "matched": str(hit.get("matched_query", ""))[:300], "line": call.line})


def _tally_output(books: _Books, record: CallRecord, task: str | None,
                  recorded: bool = False) -> None:
    """Count an answered call's output for the output estimate (a cache hit has none). In
    a ledger export (``recorded``) a call the budget layer made concise already has the
    shorter answer: it is not counted again (a replay answers with the logged answer)."""
    if record.cached:
        return
    budget = next((rep.detail for rep in record.layers if "task_type" in rep.detail), {})
    if recorded and budget.get("concise") is True:
        books.output.already_concise += 1
        return
    task = task or budget.get("task_type")
    books.output.add(str(task) if task else "unknown", record.usage.output_tokens)


def _run_one(pipeline: Pipeline, provider: ReplayProvider, entry: LogEntry,
             books: _Books, price_as: str, classify: bool = False,
             prefix_cache: PrefixCache | None = None) -> _Replayed | None:
    """Replay one logged call; None when a layer refused it (as lean() would raise).
    ``prefix_cache`` is the provider's prompt cache over the logged requests."""
    request = entry.request
    assert request is not None  # parse_line guarantees it for replayed formats
    prompt = count_messages(request.messages, model=price_as, tools=request.tools).tokens
    read, write = (0, 0) if prefix_cache is None else prefix_cache.bill(
        request.messages, request.tools, prompt_tokens=prompt)
    books.read_before += read
    books.write_before += write
    provider.expect(request, entry.response_text or "", finish_reason=entry.finish_reason,
                    output_tokens=entry.usage_output)
    answer = provider.logged_output_tokens(request)
    books.in_before += prompt
    books.out_before += answer
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", TokenleanWarning)
        try:
            result = pipeline.run(request)
        except TokenleanError as exc:  # a layer refused the call: lean() would raise it
            provider.forget(request)
            books.refused.append(f"line {entry.line}: {exc}")
            books.in_after += prompt
            books.out_after += answer
            books.read_after += read
            books.write_after += write
            result = None
    for warning in caught:
        if issubclass(warning.category, TokenleanWarning):
            key = str(warning.message).split(" failed", 1)[0]
            books.failures[key] = books.failures.get(key, 0) + 1
        else:
            warnings.warn_explicit(warning.message, warning.category, warning.filename,
                                   warning.lineno)
    if result is None:
        return None
    hit = _hit_info(result.response)
    return _Replayed(entry.line, prompt, answer, request.last_user_text, hit,
                     task_type(request.messages) if classify else None)


def _hit_info(response: Response) -> Mapping[str, Any] | None:
    if not response.cached:
        return None
    raw = response.raw.get("cache") if isinstance(response.raw, Mapping) else None
    return raw if isinstance(raw, Mapping) else {}


def _observed(record: CallRecord, books: _Books) -> None:
    """A ledger record: the savings its layers recorded (nothing is replayed)."""
    a_in, a_out = record.usage.input_tokens, record.usage.output_tokens
    books.in_after += a_in
    books.out_after += a_out
    books.in_before += a_in
    books.out_before += a_out
    for rep in record.layers:
        acc = books.acc(rep.layer)
        acc.status, acc.note = "ran", "as recorded in the ledger"
        acc.saved_input += rep.saved_input_tokens
        acc.saved_output += rep.saved_output_tokens
        if rep.saved_input_tokens or rep.saved_output_tokens:
            acc.changed += 1
        for key, value in rep.quality.items():
            acc.add_quality(key, value)
        books.in_before += rep.saved_input_tokens
        books.out_before += rep.saved_output_tokens
    if record.cached and record.cache_score is not None:
        books.hits.append(float(record.cache_score))


def audit_entries(entries: Iterable[LogEntry], *, options: AuditOptions | None = None,
                  progress: Callable[[int], None] | None = None,
                  source: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Replay ``entries`` and return the report dict (see :mod:`tokenlean.audit.report`)."""
    options = options or AuditOptions()
    prices = PricedAs(options.price_as)
    started = time.perf_counter()
    layers, rows = _layers(options)
    scratch = Path(tempfile.mkdtemp(prefix="tokenlean-audit-"))
    if options.layers is None and any(layer.name == "budget" for layer in layers):
        # a fresh deployment: the replay never learns into the app's live budget store
        from tokenlean.budget import use_fresh_stores

        use_fresh_stores(layers, scratch)
    books = _Books(layers=rows)
    logged_prompts = PrefixCache(options.price_as) if options.prefix_cache else None
    provider = ReplayProvider(count_model=options.price_as, prefix_cache=PrefixCache(
        options.price_as) if options.prefix_cache else None)
    ledger = MemoryLedger()
    # no time budget per layer step: a replay's timing is not the app's, and an offline
    # audit should give the same numbers on a busy machine (tokenlean bench overhead
    # measures the time)
    pipeline = Pipeline(provider=provider, layers=layers, ledger=ledger, prices=prices,
                        count_model=options.price_as, layer_time_budget_s=None)
    pending: list[_Replayed] = []
    try:
        for entry in entries:
            books.requests += 1
            books.formats.add(entry.format)
            if entry.record is not None:
                books.ledger_mode = True
                _observed(entry.record, books)
                if options.output_ratios is not None:
                    _tally_output(books, entry.record, None, recorded=True)
            else:
                replayed = _run_one(pipeline, provider, entry, books, options.price_as,
                                    classify=options.output_ratios is not None,
                                    prefix_cache=logged_prompts)
                if replayed is not None:
                    pending.append(replayed)
            if progress is not None:
                progress(books.requests)
    finally:
        if options.layers is None:  # the audit built them: it closes them
            close_layers(layers)
        shutil.rmtree(scratch, ignore_errors=True)
    _answered(list(ledger.records()), pending, books, options)
    return _report(books, layers, options, prices, elapsed=time.perf_counter() - started,
                   source=source or {})


# ---- the report -------------------------------------------------------------------


def _mean(values: Iterable[float]) -> float | None:
    values = list(values)
    return sum(values) / len(values) if values else None


def _per_mtok(usd: Decimal, tokens: int) -> float:
    return float(usd) * _MTOK / tokens if tokens else 0.0


def _layer_rows(books: _Books, rates: tuple[Decimal, Decimal], cost_before: Decimal,
                base_tokens: int) -> list[dict[str, Any]]:
    rate_in, rate_out = rates
    out = []
    for name, acc in books.layers.items():
        quality: dict[str, Any] = {k: round(v, 4) for k, v in
                                   ((k, _mean(vals)) for k, vals in acc.quality.items())
                                   if v is not None}
        if acc.status == "ran" and not books.ledger_mode and name == "budget" and books.budget:
            covered = sum(1 for cap, actual in books.budget if actual <= cap) / len(books.budget)
            quality["coverage"] = round(covered, 4)
            quality["would_cut_share"] = round(1 - covered, 4)
        if acc.status == "ran" and name == "cache":
            quality["hit_rate"] = round(len(books.hits) / books.requests, 4) \
                if books.requests else 0.0
        saved_usd = acc.saved_input * rate_in + acc.saved_output * rate_out
        out.append({
            "layer": name, "status": acc.status, "note": acc.note,
            "saved_input_tokens": acc.saved_input, "saved_output_tokens": acc.saved_output,
            "saved_usd": round(float(saved_usd), 6),
            "saved_per_mtok": round(_per_mtok(saved_usd, base_tokens), 4),
            "saved_share": round(float(saved_usd / cost_before), 4) if cost_before else 0.0,
            "requests_changed": acc.changed, "quality": quality,
        })
    return out


def _report(books: _Books, layers: Sequence[Layer], options: AuditOptions, prices: PricedAs,
            *, elapsed: float, source: Mapping[str, Any]) -> dict[str, Any]:
    rates = prices.rates(model=options.price_as)
    assert rates is not None  # PricedAs checked it
    rate_in, rate_out = rates
    cost_before = books.in_before * rate_in + books.out_before * rate_out
    cost_after = books.in_after * rate_in + books.out_after * rate_out
    base_tokens = books.in_before + books.out_before
    preset = options.preset if options.layers is None else "custom layers"
    report: dict[str, Any] = {
        "schema": "tokenlean.audit/1",
        "kind": "audit",
        "title": "tokenlean audit",
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "price_as": options.price_as,
        "preset": preset,
        "choices": {k: v if isinstance(v, (bool, str)) else type(v).__name__
                    for k, v in options.choices.items() if v is not None},
        "cache_sampled": options.cache_sampled,
        "max_false_hit_rate": options.max_false_hit_rate,
        "layer_order": [layer.name for layer in layers],
        "source": {**source, "format": ",".join(sorted(books.formats)) or "empty",
                   "mode": "recorded (ledger)" if books.ledger_mode else "replayed"},
        "requests": books.requests,
        "tokens_before": {"input": books.in_before, "output": books.out_before},
        "tokens_after": {"input": books.in_after, "output": books.out_after},
        "cost_usd_before": round(float(cost_before), 6),
        "cost_usd_after": round(float(cost_after), 6),
        "cost_per_mtok_before": round(_per_mtok(cost_before, base_tokens), 4),
        "cost_per_mtok_after": round(_per_mtok(cost_after, base_tokens), 4),
        "saved_ratio": round(1 - float(cost_after / cost_before), 4) if cost_before else 0.0,
        "layers": _layer_rows(books, rates, cost_before, base_tokens),
        "elapsed_s": round(elapsed, 2),
        "notes": _notes(books, options, preset),
    }
    if options.prefix_cache:
        report["prefix_cache"] = _prefix_report(books, options, prices, base_tokens)
        report["notes"].append(_prefix_note(report["prefix_cache"]))
    if options.output_ratios is not None:
        report["output_estimate"] = books.output.estimate(options.output_ratios, rate_out,
                                                          cost_before)
        report["notes"].append(_output_note(report["output_estimate"]))
    else:
        report["notes"].append(
            "Output (concise mode): not estimated. A log holds the answers given, not "
            "concise ones; measure the ratio on your traffic with `tokenlean bench output` "
            "and pass it with --output-ratios (AuditOptions(output_ratios=...)).")
    by_name = {layer.name: layer for layer in layers}
    if "cache" in by_name or (books.ledger_mode and books.hits):
        guard = getattr(by_name.get("cache"), "guard", None)
        report["cache"] = {
            "lookups": books.requests,
            "hits": len(books.hits),
            "accepted": [round(s, 4) for s in books.hits[:options.max_points]],
            "rejected": [], "examples": books.examples,
            "not_stored": dict(sorted(books.not_stored.items())),
            "guard": "default false-hit guard" if guard is not None else "none (exact hits)"}
    if "compress" in by_name:
        compressor = getattr(by_name["compress"], "compressor", None)
        report["compression"] = {
            "target_ratio": getattr(compressor, "ratio", None),
            "points": [[round(r, 3), round(q, 4)]
                       for r, q in books.compression[:options.max_points]]}
    if "budget" in by_name and not books.ledger_mode:
        predictor = getattr(by_name["budget"], "predictor", None)
        covered = sum(1 for cap, actual in books.budget if actual <= cap)
        report["budget"] = {
            "quantile": getattr(predictor, "quantile", None),
            "coverage": round(covered / len(books.budget), 4) if books.budget else None,
            "points": [list(p) for p in books.budget[:options.max_points]]}
    return report


def _prefix_report(books: _Books, options: AuditOptions, prices: PricedAs,
                   base_tokens: int) -> dict[str, Any] | None:
    """Spend before and after with the provider's prompt cache billed (see :mod:`._prefix`);
    None for a ledger export (its usage already says what the provider cached)."""
    if books.ledger_mode:
        return None
    rates = prices.rates(model=options.price_as)
    assert rates is not None  # PricedAs checked it
    rate_in, rate_out = rates
    rate_read, rate_write = prices.cache_rates()

    def spend(inp: int, out: int, read: int, write: int) -> Decimal:
        return ((inp - read - write) * rate_in + read * rate_read + write * rate_write
                + out * rate_out)

    before = spend(books.in_before, books.out_before, books.read_before, books.write_before)
    after = spend(books.in_after, books.out_after, books.read_after, books.write_after)
    return {
        "rules": rules_for(options.price_as).describe(),
        "before": {"input": books.in_before, "cache_read": books.read_before,
                   "cache_write": books.write_before},
        "after": {"input": books.in_after, "cache_read": books.read_after,
                  "cache_write": books.write_after},
        "cost_usd_before": round(float(before), 6),
        "cost_usd_after": round(float(after), 6),
        "cost_per_mtok_before": round(_per_mtok(before, base_tokens), 4),
        "cost_per_mtok_after": round(_per_mtok(after, base_tokens), 4),
        "saved_ratio": round(1 - float(after / before), 4) if before else 0.0,
    }


def _prefix_note(block: Mapping[str, Any] | None) -> str:
    if block is None:
        return ("Provider prompt cache: not simulated for a ledger export (its usage "
                "already holds what the provider cached).")
    return (f"Provider prompt cache ({block['rules']}): with it billed, before and after, "
            f"the spend goes from ${block['cost_usd_before']:.4f} to "
            f"${block['cost_usd_after']:.4f} ({block['saved_ratio'] * 100:.1f}% saved). "
            "The per-layer rows above price every input token at the list rate; the "
            "difference is the provider's cache, which discounts the prefixes both sides "
            "repeat and loses any prefix a layer rewrote. It assumes every earlier prompt "
            "is still cached.")


def _output_note(estimate: Mapping[str, Any]) -> str:
    return (f"Output (concise mode) is an estimate, not a replay: {estimate['source']}. "
            "Each task type's measured ratio (concise / unconstrained output tokens) is "
            "applied to the output of this log's answered calls of that type, only for the "
            "types concise mode applies to by default and only where the measurement "
            f"shortened answers: about {estimate['est_saved_output_tokens']:,} output tokens "
            f"(${estimate['est_saved_usd']:.4f}, {estimate['est_saved_share'] * 100:.1f}% of "
            "spend). It is not in the per-layer totals above; answer quality under concise "
            "mode is the benchmark's (containment, similarity), not checked on this log.")


def _not_cached_reason(why: str) -> str:
    """What the cache's ``not_cached`` code means (the cache package says)."""
    try:
        from tokenlean.cache import NOT_CACHED
    except ImportError:  # a third-party cache layer: its code is all there is
        return why
    return NOT_CACHED.get(why, why)


def _notes(books: _Books, options: AuditOptions, preset: str) -> list[str]:
    if books.ledger_mode:
        return ["Ledger export: the savings shown are what the layers recorded on the real "
                "calls (nothing was replayed); all tokens are re-priced as "
                f"{options.price_as}."]
    replayed = (f"the layers lean() builds for preset {preset!r}" if options.layers is None
                else "the layers given")
    notes = [
        f"Replayed through the real pipeline with {replayed}, in lean()'s order (the cache "
        "first, keyed on the request as the app sent it; a hit skips every other layer); "
        "the provider answered each call with its logged answer.",
        f"Every request was priced as {options.price_as} (genai-prices rates), tokens counted "
        "with its tokenizer; cost per 1M tokens divides spend by the original traffic's "
        "input + output tokens, before and after alike. Per-layer savings add up to the "
        "total.",
        "Input saved is what the pipeline measured per layer. A cache hit saves the whole "
        "logged call (lean()'s ledger books a hit as the call it replaced, after the other "
        "layers; the rest is booked to the cache here, since they did not run). Output "
        "saved is measured against the logged answer: a max_tokens "
        "that a layer lowered cuts a longer answer where the model would have stopped "
        "(the cut answer is shorter, and worse: see the budget's would_cut_share).",
        "The cache starts empty and is filled in log order (a miss stores its logged "
        "answer, as lean() would store the model's); its key includes the request's model "
        "and sampling parameters, so what lean() would not serve from cache is not counted.",
    ]
    if books.not_stored:
        misses = books.requests - len(books.hits) - len(books.refused)
        stored = misses - sum(books.not_stored.values())
        reasons = "; ".join(f"{why} {count} ({_not_cached_reason(why)})"
                            for why, count in sorted(books.not_stored.items()))
        notes.append(f"The cache stored {stored} of {misses} answers: {reasons}."
                     + (" --cache-sampled (cache_sampled=True) opts sampled calls in."
                        if "sampled" in books.not_stored else ""))
    for what, count in sorted(books.failures.items()):
        notes.append(f"{what}: failed on {count} call(s); the pipeline passed those calls "
                     "through without it (lean() would too, with a warning).")
    if books.refused:
        notes.append(f"{len(books.refused)} call(s) were refused by a layer (lean() would "
                     f"raise the error to the app) and are booked unchanged; first: "
                     f"{books.refused[0]}")
    return notes


def audit_log(path: str | Path, *, options: AuditOptions | None = None,
              limit: int | None = None,
              progress: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Audit the JSONL log at ``path`` (see :mod:`tokenlean.audit._logs` for shapes)."""
    entries = read_log(path, limit=limit)
    return audit_entries(entries, options=options, progress=progress,
                         source={"path": str(path), "limit": limit})
