"""``tokenlean bench overhead``: what ``lean()`` adds to a model call that misses every
cache, per preset, on short, long, number-heavy and code-heavy prompts.

Each call is timed twice: the bare model, then the same model through
``lean(model, preset=...)`` (LangChain's ``GenericFakeChatModel``, which answers
at once, so the difference is tokenlean's own work: the layers, the token counts,
pricing, the ledger row). Every call's messages are new (so no cache answers and
no memoised rewrite is reused). Each layer's own ``process`` time is reported
beside the total, so model-based work (the MiniLM meaning check of
``templates="safe"``, a model compressor) is seen apart from the rest.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from collections.abc import Callable
from itertools import cycle
from pathlib import Path
from typing import Any

import typer

from tokenlean.core import Message, count_messages
from tokenlean.core._optional import require
from tokenlean.core.presets import PRESETS, build_layers

from ._prompt_sets import Prompt, builtin_prompts, file_prompts, long_prompts

# the targets of issue 18 (docs/benchmarks/integrations.md)
SAFE_P50_MS, SAFE_P99_MS, SAFE_UP_TO_TOKENS = 5.0, 50.0, 100_000
MAX_SAVINGS_P99_MS_PER_10K_TOKENS = 100.0


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _summary(values: list[float]) -> dict[str, float]:
    return {"p50": round(statistics.median(values), 3), "p99": round(_percentile(values, 0.99), 3),
            "max": round(max(values), 3)}


class _Timed:
    """A layer that records how long each of its ``process`` calls took (ms)."""

    def __init__(self, layer: Any) -> None:
        self._layer = layer
        self.name = layer.name
        self.last_ms = 0.0

    def process(self, request: Any) -> Any:
        started = time.perf_counter()
        try:
            return self._layer.process(request)
        finally:
            self.last_ms = (time.perf_counter() - started) * 1000

    async def aprocess(self, request: Any) -> Any:
        started = time.perf_counter()
        try:
            return await self._layer.aprocess(request)
        finally:
            self.last_ms = (time.perf_counter() - started) * 1000

    def __getattr__(self, attribute: str) -> Any:  # hooks, time_budget_s
        return getattr(self._layer, attribute)


def _lc_messages(messages: tuple[Message, ...]) -> list[Any]:
    from langchain_core.messages import AIMessage, HumanMessage, SystemMessage

    kinds = {"system": SystemMessage, "developer": SystemMessage, "assistant": AIMessage}
    return [kinds.get(m.role, HumanMessage)(m.text) for m in messages]


def _measure(bare: Callable[[list[Any]], Any], wrapped: Callable[[list[Any]], Any],
             prompts: list[Prompt], n: int, timed: list[_Timed],
             tokens: dict[int, int]) -> list[dict[str, Any]]:
    """Per call: the prompt's kind and size, tokenlean's overhead (ms) and each layer's."""
    for i, prompt in enumerate(prompts[:5]):  # imports, models, tokenizers, price tables
        bare(_lc_messages(prompt.unique(-1 - i)))
        wrapped(_lc_messages(prompt.unique(-1 - i)))
    rows = []
    for call, prompt in zip(range(n), cycle(prompts), strict=False):
        messages = _lc_messages(prompt.unique(call))
        t0 = time.perf_counter()
        bare(messages)
        t1 = time.perf_counter()
        wrapped(messages)
        t2 = time.perf_counter()
        rows.append({"kind": prompt.kind, "chars": prompt.chars, "tokens": tokens[id(prompt)],
                     "overhead_ms": ((t2 - t1) - (t1 - t0)) * 1000,
                     "layers_ms": {t.name: t.last_ms for t in timed}})
    return rows


def _report(rows: list[dict[str, Any]]) -> dict[str, Any]:
    overhead = [r["overhead_ms"] for r in rows]
    per_10k = [r["overhead_ms"] / max(r["tokens"] / 10_000, 1.0) for r in rows]
    out: dict[str, Any] = {
        "n": len(rows),
        "overhead_ms_p50": round(statistics.median(overhead), 3),
        "overhead_ms_p99": round(_percentile(overhead, 0.99), 3),
        "overhead_ms_per_10k_tokens_p99": round(_percentile(per_10k, 0.99), 3),
        "layers_ms": {name: _summary([r["layers_ms"][name] for r in rows])
                      for name in rows[0]["layers_ms"]} if rows else {},
        "by_kind": {},
    }
    for kind in dict.fromkeys(r["kind"] for r in rows):
        group = [r for r in rows if r["kind"] == kind]
        ms = [r["overhead_ms"] for r in group]
        out["by_kind"][kind] = {
            "n": len(group), "chars_max": max(r["chars"] for r in group),
            "tokens_max": max(r["tokens"] for r in group),
            "overhead_ms_p50": round(statistics.median(ms), 3),
            "overhead_ms_p99": round(_percentile(ms, 0.99), 3),
            "layers_ms_p99": {name: round(_percentile([r["layers_ms"][name] for r in group],
                                                      0.99), 3)
                              for name in group[0]["layers_ms"]},
        }
    return out


def _targets(preset: str, rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    if preset == "safe":
        within = [r["overhead_ms"] for r in rows if r["tokens"] <= SAFE_UP_TO_TOKENS]
        if not within:
            return None
        p50, p99 = statistics.median(within), _percentile(within, 0.99)
        return {"up_to_tokens": SAFE_UP_TO_TOKENS, "p50_ms": round(p50, 3),
                "p99_ms": round(p99, 3), "target_p50_ms": SAFE_P50_MS,
                "target_p99_ms": SAFE_P99_MS, "met": p50 <= SAFE_P50_MS and p99 <= SAFE_P99_MS}
    if preset == "max-savings":
        per_10k = [r["overhead_ms"] / max(r["tokens"] / 10_000, 1.0) for r in rows]
        p99 = _percentile(per_10k, 0.99)
        return {"p99_ms_per_10k_tokens": round(p99, 3),
                "target_p99_ms_per_10k_tokens": MAX_SAVINGS_P99_MS_PER_10K_TOKENS,
                "met": p99 <= MAX_SAVINGS_P99_MS_PER_10K_TOKENS}
    return None


def overhead(
    prompts: list[Path] = typer.Option(
        [], "--prompts", help="A JSONL file of the prompts shape (its messages) or the qa "
                             "shape (context + question); may be given more than once."),
    long: bool = typer.Option(False, "--long/--no-long",
                              help="Add generated long contexts: numbered sentences (36k, "
                                   "147k, 300k characters), a 2,000-row CSV, a 300k-character "
                                   "CSV, 100k characters of code."),
    n: int = typer.Option(0, "--n", help="Calls per preset (default: every prompt once, at "
                                         "least 300 for the built-in short prompts)."),
    preset: list[str] = typer.Option(
        [], "--preset", help="A preset to measure; may be given more than once (default: all)."),
    compress: str | None = typer.Option(None, "--compress",
                                        help="Override the compress layer (e.g. 'llmlingua' "
                                             "to measure model-based compression apart)."),
    model: str = typer.Option("gpt-4o", "--model", help="Model name for counting and prices."),
    wrapper: str = typer.Option("lean", "--wrapper",
                                help="'lean' (lean(chat_model)) or 'middleware' "
                                     "(TokenleanMiddleware in a create_agent agent)."),
    as_json: bool = typer.Option(True, "--json/--no-json",
                                 help="Print JSON (the only output format; kept for scripts)."),
) -> None:
    """Per-call overhead of lean() on a cache miss, in ms over the bare model call."""
    require("langchain_tokenlean", extra="langchain", feature="tokenlean bench overhead")
    if wrapper not in {"lean", "middleware"}:
        raise typer.BadParameter("--wrapper takes 'lean' or 'middleware'")
    presets = preset or list(PRESETS)
    unknown = [p for p in presets if p not in PRESETS]
    if unknown:
        raise typer.BadParameter(f"unknown preset(s) {unknown}; choose from {sorted(PRESETS)}")
    chosen: list[Prompt] = [p for path in prompts for p in file_prompts(path)]
    if long:
        chosen += long_prompts()
    if not chosen:
        chosen = builtin_prompts(max(n, 300))
    calls = n or (len(chosen) if prompts or long else 300)
    tokens = {id(p): count_messages(p.messages, model=model).tokens for p in chosen}
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in presets:
            label = name if compress is None else f"{name}+compress={compress}"
            layers, rows = _run_preset(name, compress, wrapper, chosen, calls, tokens, model,
                                       Path(tmp) / f"{name}.sqlite")
            results[label] = {"layers": layers, **_report(rows)}
            target = _targets(name, rows) if compress is None else None
            if target is not None:
                results[label]["target"] = target
    sizes: dict[str, dict[str, int]] = {}
    for p in chosen:
        entry = sizes.setdefault(p.kind, {"prompts": 0, "chars_max": 0, "tokens_max": 0})
        entry["prompts"] += 1
        entry["chars_max"] = max(entry["chars_max"], p.chars)
        entry["tokens_max"] = max(entry["tokens_max"], tokens[id(p)])
    typer.echo(json.dumps({
        "bench": "overhead", "wrapper": wrapper, "model": model, "calls_per_preset": calls,
        "prompts": [str(p) for p in prompts] + (["generated long contexts"] if long else [])
                   or ["built-in"],
        "prompt_sizes": sizes, "presets": results,
    }))


def _run_preset(name: str, compress: str | None, wrapper: str, prompts: list[Prompt],
                calls: int, tokens: dict[int, int], model: str,
                ledger_path: Path) -> tuple[list[str], list[dict[str, Any]]]:
    from langchain_core.language_models import GenericFakeChatModel
    from langchain_core.messages import AIMessage

    from langchain_tokenlean import lean
    from tokenlean.core import SQLiteLedger

    answer = AIMessage(content="The parcel was late and arrived damaged; a refund was issued.",
                       usage_metadata={"input_tokens": 40, "output_tokens": 14,
                                       "total_tokens": 54})

    def fake() -> GenericFakeChatModel:
        return GenericFakeChatModel(messages=cycle([answer]))

    options: dict[str, Any] = {} if compress is None else {"compress": compress}
    timed = [_Timed(layer) for layer in build_layers(preset=name, **options)]
    ledger = SQLiteLedger(ledger_path)
    if wrapper == "lean":
        wrapped = lean(fake(), layers=timed, ledger=ledger, model=model)
        rows = _measure(fake().invoke, wrapped.invoke, prompts, calls, timed, tokens)
        return [t.name for t in timed], rows
    from langchain.agents import create_agent

    from langchain_tokenlean.middleware import TokenleanMiddleware

    middleware = TokenleanMiddleware(layers=timed, ledger=ledger, model=model)
    bare_agent = create_agent(fake())
    lean_agent = create_agent(fake(), middleware=[middleware])
    rows = _measure(lambda m: bare_agent.invoke({"messages": m}),
                    lambda m: lean_agent.invoke({"messages": m}), prompts, calls, timed, tokens)
    return [t.name for t in timed], rows
