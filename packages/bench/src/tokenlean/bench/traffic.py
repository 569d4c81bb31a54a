"""``tokenlean bench traffic --data-dir DIR``: what ``lean()`` saves on five app shapes.

For each shape (:mod:`tokenlean.bench.traffic_gen`) it generates a seeded log
from the files of ``DIR`` and replays it with the audit
(:func:`tokenlean.audit.audit_entries`): the layers ``lean(model,
preset="max-savings")`` builds, in ``lean()``'s order, through the real
``Pipeline``, each call answered with its logged answer. One replay per
``--price-as`` model (default gpt-4o and claude-sonnet-4-5: each replay counts
tokens with that model's tokenizer). It prints one JSON object::

    {"shapes": {NAME: {"requests", "cost_per_mtok_before", "cost_per_mtok_after",
                       "saved_ratio", "per_layer", "quality"}},
     "blended": {"after_over_before": {MODEL: mean of the shapes' after/before}}, ...}

Money figures are per ``price_as`` model and bill the provider's prompt (prefix)
cache on both sides (the audit's ``prefix_cache``: OpenAI's automatic rule,
Anthropic's breakpoints), unless ``--no-prefix-cache``; ``list_price`` has the
same figures at the full input rate. ``quality`` holds the per-layer quality
proxies the replay reports (from the first ``--price-as`` replay) and, for
``support``, what the cache served measured against the generator's labels.
``quality["live"]`` is null unless ``--live`` asks for the live run of every shape
that ran (:mod:`tokenlean.bench.traffic_live`): the first ``--live-limit`` calls
asked of the local model (SmolLM2-135M-Instruct) raw and through ``lean()``, with
input and output tokens and the shape's quality figure (rag: answer containment
and token F1; support: what the cache served against the labels; the others: the
lean answer's similarity to the raw one).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence, Set
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from .traffic_gen import SHAPES, TrafficParams, generate, iter_shapes, write_log
from .traffic_live import DEFAULT_LIVE_LIMIT, containment

if TYPE_CHECKING:
    from tokenlean.audit import OutputRatios

__all__ = ["PRESET", "bench", "run_traffic", "served_cache_quality", "support_cache_quality"]

#: the preset lean() uses for the most savings: what the suite replays
PRESET = "max-savings"
DEFAULT_PRICE_AS = ("gpt-4o", "claude-sonnet-4-5")


def support_cache_quality(entries: Sequence[Mapping[str, Any]],
                          report: Mapping[str, Any]) -> dict[str, Any]:
    """What the cache served on a ``support`` log, against the generator's labels: which
    repeats it answered and how many of its answers were to a question that was not a
    repeat (a false hit). Read from the report's cache examples (every hit is one when
    ``max_examples`` is at least the log's length)."""
    examples = (report.get("cache") or {}).get("examples") or []
    return served_cache_quality(entries, {int(ex["line"]) for ex in examples})


def served_cache_quality(entries: Sequence[Mapping[str, Any]],
                         served: Set[int]) -> dict[str, Any]:
    """:func:`support_cache_quality` from the line numbers (1-based, in ``entries``) the
    cache served: the replay's and the live run's (:mod:`tokenlean.bench.traffic_live`)."""
    meta = {n: e.get("metadata") or {} for n, e in enumerate(entries, 1)}
    repeats = [n for n, m in meta.items() if m.get("should_hit")]
    false_hits = [n for n in served if not meta.get(n, {}).get("should_hit")]
    by_kind: dict[str, dict[str, int]] = {}
    for n, m in meta.items():
        row = by_kind.setdefault(str(m.get("kind")), {"queries": 0, "served": 0})
        row["queries"] += 1
        row["served"] += n in served
    return {
        "queries": len(entries),
        "repeats": len(repeats),
        "repeat_rate": round(len(repeats) / len(entries), 4) if entries else 0.0,
        "served": len(served),
        "repeats_served_share": round(sum(n in served for n in repeats) / len(repeats), 4)
        if repeats else None,
        "false_hits": len(false_hits),
        "false_hit_rate": round(len(false_hits) / len(served), 4) if served else 0.0,
        "by_kind": dict(sorted(by_kind.items())),
    }


def rag_answer_retention(entries: Sequence[Mapping[str, Any]],
                         choices: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """How often a gold answer survives the rewriting layers ``lean()`` builds (templates,
    compress): each ``rag`` call's messages go through them as the pipeline runs them,
    and the result is checked for a gold answer (SQuAD's normalisation), next to the
    same check on the prompt as sent. ``retention`` is kept / present."""
    from tokenlean.core import Request
    from tokenlean.core.presets import close_layers, resolve_lean

    # only the layers that rewrite the prompt: the cache and the budget would load models
    # and stores this check never uses
    rewriting, _ = resolve_lean(preset=PRESET, ledger=False,
                                **{**dict(choices or {}), "cache": False, "budget": False})
    present = kept = 0
    try:
        for entry in entries:
            golds = (entry.get("metadata") or {}).get("answers") or []
            request = Request(model=entry["request"]["model"],
                              messages=entry["request"]["messages"])
            if not containment(" ".join(m.text for m in request.messages), golds):
                continue
            present += 1
            for layer in rewriting:
                rewritten = layer.process(request)
                if isinstance(rewritten, Request):  # a rewriting layer never answers
                    request = rewritten
            kept += containment(" ".join(m.text for m in request.messages), golds)
    finally:
        close_layers(rewriting)
    return {"calls": len(entries), "gold_in_prompt": present, "gold_kept": kept,
            "retention": round(kept / present, 4) if present else None,
            "layers": [layer.name for layer in rewriting]}


def _shape_result(shape: str, entries: Sequence[Mapping[str, Any]],
                  reports: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    first = next(iter(reports.values()))
    per_layer: dict[str, Any] = {}
    for row in first["layers"]:
        name = row["layer"]
        per_layer[name] = {
            "status": row["status"], "note": row["note"],
            "saved_share": {m: next(r["saved_share"] for r in rep["layers"]
                                    if r["layer"] == name) for m, rep in reports.items()},
            "saved_input_tokens": row["saved_input_tokens"],
            "saved_output_tokens": row["saved_output_tokens"],
            "requests_changed": row["requests_changed"],
        }
    quality: dict[str, Any] = {
        "layers": {row["layer"]: row["quality"] for row in first["layers"]
                   if row["status"] == "ran"},
        "from_price_as": first["price_as"],
        "live": None,
    }
    if shape == "support":
        quality["support_cache"] = support_cache_quality(entries, first)
    # the headline bills the provider's prompt cache where the replay simulated it
    billed = {m: r.get("prefix_cache") or r for m, r in reports.items()}
    estimate = {m: {"est_saved_output_tokens": r["output_estimate"]["est_saved_output_tokens"],
                    "est_saved_usd": r["output_estimate"]["est_saved_usd"],
                    "after_over_before_with_estimate": round(
                        (billed[m]["cost_usd_after"] - r["output_estimate"]["est_saved_usd"])
                        / billed[m]["cost_usd_before"], 4) if billed[m]["cost_usd_before"]
                    else None,
                    "source": r["output_estimate"]["source"]}
                for m, r in reports.items() if r.get("output_estimate")}
    return {
        "requests": first["requests"],
        "cost_per_mtok_before": {m: b["cost_per_mtok_before"] for m, b in billed.items()},
        "cost_per_mtok_after": {m: b["cost_per_mtok_after"] for m, b in billed.items()},
        "saved_ratio": {m: b["saved_ratio"] for m, b in billed.items()},
        "after_over_before": {m: round(1 - b["saved_ratio"], 4) for m, b in billed.items()},
        "prefix_cache": {m: {k: r["prefix_cache"][k] for k in ("rules", "before", "after")}
                         for m, r in reports.items() if r.get("prefix_cache")} or None,
        "list_price": {
            "cost_per_mtok_before": {m: r["cost_per_mtok_before"] for m, r in reports.items()},
            "cost_per_mtok_after": {m: r["cost_per_mtok_after"] for m, r in reports.items()},
            "after_over_before": {m: round(1 - r["saved_ratio"], 4)
                                  for m, r in reports.items()}},
        "tokens_before": {m: r["tokens_before"] for m, r in reports.items()},
        "tokens_after": {m: r["tokens_after"] for m, r in reports.items()},
        "per_layer": per_layer,
        "concise_estimate": estimate or None,
        "quality": quality,
        "layer_order": first["layer_order"],
        "elapsed_s": round(sum(r["elapsed_s"] for r in reports.values()), 2),
    }


def _replay_shape(data_dir: str | Path, shape: str, params: TrafficParams,
                  price_as: Sequence[str], choices: Mapping[str, Any] | None,
                  prefix_cache: bool, output_ratios: OutputRatios | None = None,
                  ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Generate one shape's log and replay it once per ``price_as`` model: the log and
    the shape's result."""
    from tokenlean.audit import AuditOptions, audit_entries
    from tokenlean.audit._logs import parse_line

    entries = generate(data_dir, shape, params)
    parsed = [parse_line(e, n) for n, e in enumerate(entries, 1)]
    retention = rag_answer_retention(entries, choices) if shape == "rag" else None
    reports = {}
    for model in price_as:
        options = AuditOptions(price_as=model, preset=PRESET, choices=dict(choices or {}),
                               max_examples=len(parsed), prefix_cache=prefix_cache,
                               output_ratios=output_ratios)
        reports[model] = audit_entries(parsed, options=options,
                                       source={"path": f"generated:{shape}"})
    result = _shape_result(shape, entries, reports)
    if retention is not None:
        result["quality"]["answer_retention"] = retention
    return entries, result


def _check_rates(rates: Sequence[float]) -> list[float]:
    for rate in rates:
        if not 0 <= rate < 1:
            raise ValueError(f"a repeat rate is a share in [0, 1), got {rate}")
    return list(rates)


def support_curve(data_dir: str | Path, rates: Sequence[float], *, params: TrafficParams,
                  price_as: Sequence[str], choices: Mapping[str, Any] | None = None,
                  prefix_cache: bool = True) -> list[dict[str, Any]]:
    """The ``support`` shape replayed at each repeat rate: cost after / before and what the
    cache served against the labels, one row per rate."""
    rows = []
    for rate in rates:
        _, result = _replay_shape(data_dir, "support", replace(params, repeat_rate=rate),
                                  price_as, choices, prefix_cache)
        served = result["quality"]["support_cache"]
        rows.append({"repeat_rate": rate, "requests": result["requests"],
                     "after_over_before": result["after_over_before"],
                     "cache_saved_share": result["per_layer"].get("cache", {}).get(
                         "saved_share"),
                     **{k: served[k] for k in ("repeats", "served", "repeats_served_share",
                                               "false_hits", "false_hit_rate")}})
    return rows


def run_traffic(data_dir: str | Path, *, shapes: Sequence[str] = SHAPES,
                params: TrafficParams | None = None,
                price_as: Sequence[str] = DEFAULT_PRICE_AS,
                choices: Mapping[str, Any] | None = None,
                out: str | Path | None = None, live: bool = False,
                live_limit: int = DEFAULT_LIVE_LIMIT,
                prefix_cache: bool = True,
                support_rates: Sequence[float] = (),
                output_ratios: OutputRatios | None = None) -> dict[str, Any]:
    """Generate and replay each shape; the benchmark's JSON object (see the module doc).
    ``choices`` are ``lean()``'s layer keywords on top of the preset (the tests use them
    to keep the replay light); ``out`` keeps the generated logs there as SHAPE.jsonl.
    ``prefix_cache`` bills the provider's prompt cache on both sides (the audit's
    ``AuditOptions.prefix_cache``): the headline figures; ``list_price`` has them without.
    ``live`` also runs each shape's live run (its first ``live_limit`` calls) on the
    local model: that shape's ``quality["live"]``. ``support_rates`` adds
    ``support_curve``: the ``support`` shape replayed at each of those repeat rates.
    ``output_ratios`` (``tokenlean bench output``'s measured concise ratios) adds each
    shape's ``concise_estimate``: the audit's estimate of the output concise mode would
    save, kept out of the headline (a replay answers with the logged answers)."""
    params = params or TrafficParams()
    if not price_as:
        raise ValueError("price_as needs at least one model")
    if live and live_limit < 1:
        raise ValueError("live_limit must be at least 1")
    results: dict[str, Any] = {}
    _check_rates(support_rates)
    server = None  # the live runs share one local server (the model loads once)
    try:
        for shape in shapes:
            entries, results[shape] = _replay_shape(data_dir, shape, params, price_as,
                                                    choices, prefix_cache, output_ratios)
            if out is not None:
                write_log(entries, Path(out) / f"{shape}.jsonl")
            if live:
                from . import traffic_live

                server = server or traffic_live.start_live_server()
                results[shape]["quality"]["live"] = traffic_live.run_live(
                    entries, limit=live_limit, shape=shape, price_as=price_as[0],
                    choices=choices, server=server)
            print(f"traffic: {shape}: {len(entries)} calls, saved "
                  f"{results[shape]['saved_ratio']}", file=sys.stderr)
    finally:
        if server is not None:
            server[0].stop()
    blended = {m: round(sum(r["after_over_before"][m] for r in results.values())
                        / len(results), 4) for m in price_as} if results else {}
    return {
        "benchmark": "traffic",
        "preset": PRESET,
        "choices": {k: v for k, v in (choices or {}).items()},
        "price_as": list(price_as),
        "params": {k: getattr(params, k) for k in params.__dataclass_fields__},
        "shapes": results,
        "blended": {"after_over_before": blended, "shapes": list(results),
                    "how": "plain mean of the shapes' after/before cost ratios"},
        "live": {"shapes": list(results), "at": "shapes.NAME.quality.live",
                 "limit": live_limit} if live and results else None,
        "support_curve": support_curve(data_dir, support_rates, params=params,
                                       price_as=price_as, choices=choices,
                                       prefix_cache=prefix_cache) if support_rates else None,
        "notes": [
            "replay: logged answers through the pipeline lean(preset='max-savings') builds; "
            "the live run (--live) asks the local SmolLM2-135M-Instruct raw and "
            "through lean(): its answers' quality, not a commercial model's",
            "the provider's prompt (prefix) cache is billed before and after (OpenAI's "
            "automatic rule; Anthropic's breakpoints at the end of the system prompt and, in "
            "a conversation, of the prompt), assuming every earlier prompt is still cached; "
            "list_price has the figures at the full input rate, and per_layer's shares are "
            "at the list rate" if prefix_cache else
            "provider prefix-cache prices are not applied (--no-prefix-cache): every input "
            "token is priced at the full input rate",
        ],
    }


def _layer_option(name: str, values: str) -> Any:
    return typer.Option(None, f"--{name}", help=f"lean()'s {name}= on top of the preset: on, "
                        f"off or {values} (default: what max-savings turns on).")


def bench(
    data_dir: Path = typer.Option(..., "--data-dir", help="A folder with the files of "
                                  "../shared/data (same names and shapes)."),
    shape: str = typer.Option("all", "--shape", help=f"One of {', '.join(SHAPES)}, or all."),
    limit: int = typer.Option(50, "--limit", help="Calls per shape."),
    seed: int = typer.Option(0, "--seed", help="The generator's seed."),
    repeat_rate: float = typer.Option(0.30, "--repeat-rate",
                                      help="support: share of repeated queries."),
    price_as: list[str] = typer.Option(list(DEFAULT_PRICE_AS), "--price-as",
                                       help="Price as this model (repeat for several)."),
    out: Path = typer.Option(None, "--out", help="Also write the generated logs here "
                                                 "(SHAPE.jsonl); keep it out of the repo."),
    cache: str | None = _layer_option("cache", "exact / semantic"),
    templates: str | None = _layer_option("templates", "whitespace / safe"),
    compress: str | None = _layer_option("compress", "a method name"),
    budget: str | None = _layer_option("budget", "predict / concise"),
    live: bool = typer.Option(False, "--live", help="Also ask the local model "
                              "(SmolLM2-135M-Instruct via tokenlean.server) each shape's calls "
                              "raw and through lean(): tokens in and out, the shape's quality "
                              "figure (needs tokenlean[demo])."),
    live_limit: int = typer.Option(DEFAULT_LIVE_LIMIT, "--live-limit",
                                   help="Calls per shape the live run asks (the first N)."),
    prefix_cache: bool = typer.Option(True, "--prefix-cache/--no-prefix-cache",
                                      help="Bill the provider's prompt cache before and after "
                                      "(the headline; list_price has the figures without)."),
    output_ratios: Path | None = typer.Option(
        None, "--output-ratios", help="The JSON `tokenlean bench output` printed: add each "
        "shape's concise_estimate (output concise mode would save; not in the headline)."),
    curve: str | None = typer.Option(None, "--support-curve", help="Also replay the support "
                                     "shape at these repeat rates, comma-separated (e.g. "
                                     "0.1,0.3,0.5,0.7): support_curve in the JSON."),
) -> None:
    """Replay seeded traffic of five app shapes through lean()'s max-savings pipeline
    (prints JSON)."""
    try:
        shapes = list(iter_shapes(shape))
        params = TrafficParams(seed=seed, limit=limit, repeat_rate=repeat_rate)
        rates = _check_rates([float(r) for r in curve.split(",") if r.strip()] if curve else [])
        if live and live_limit < 1:
            raise ValueError("--live-limit must be at least 1")
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    # the layer options as `tokenlean audit` reads them (imported here: the CLI package
    # loads the benches when it starts)
    from tokenlean.audit import load_output_ratios
    from tokenlean.cli._audit import _choice
    from tokenlean.cli._demo import _quiet

    if live:  # this command's terminal (run_traffic leaves a caller's loggers alone)
        _quiet()

    ratios = None if output_ratios is None else load_output_ratios(output_ratios)

    choices = {name: choice for name, value in (("cache", cache), ("templates", templates),
                                                ("compress", compress), ("budget", budget))
               if (choice := _choice(value)) is not None}
    result = run_traffic(data_dir, shapes=shapes, params=params, price_as=price_as,
                         choices=choices, out=out, live=live, live_limit=live_limit,
                         prefix_cache=prefix_cache, support_rates=rates,
                         output_ratios=ratios)
    typer.echo(json.dumps(result, indent=2))
