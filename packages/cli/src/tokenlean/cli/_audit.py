"""``tokenlean audit`` (needs tokenlean-audit) and ``tokenlean demo`` (see :mod:`._demo`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from tokenlean.core import InvalidRequestError
from tokenlean.core._optional import require

__all__ = ["audit", "demo"]

_err = Console(stderr=True)


def _progress(console: Console) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), console=console, transient=True)


def _count_lines(path: Path, limit: int | None) -> int | None:
    try:
        with path.open("rb") as handle:
            n = sum(1 for line in handle if line.strip())
    except OSError:
        return None
    return n if limit is None else min(n, limit)


def layer_table(report: dict[str, Any], *, title: str) -> Table:
    table = Table(title=title)
    for column in ("layer", "status", "input tok saved", "output tok saved", "$ saved",
                   "share of spend", "requests changed", "quality proxy"):
        table.add_column(column, justify="left" if column in ("layer", "status",
                                                              "quality proxy") else "right")
    for layer in report["layers"]:
        quality = ", ".join(f"{k}={v:.3g}" if isinstance(v, (int, float)) else f"{k}={v}"
                            for k, v in (layer.get("quality") or {}).items() if v is not None)
        status = layer["status"] if layer["status"] == "ran" else f"[dim]{layer['status']}[/]"
        table.add_row(layer["layer"], status, f"{layer['saved_input_tokens']:,}",
                      f"{layer['saved_output_tokens']:,}", f"{layer['saved_usd']:.4f}",
                      f"{layer.get('saved_share', 0) * 100:.1f}%",
                      str(layer["requests_changed"]), quality or "-")
    return table


def _choice(value: str | None) -> bool | str | None:
    """A layer option as ``lean()`` takes it: on / off, or the option string."""
    if value is None:
        return None
    lowered = value.strip().lower()
    if lowered in {"on", "true", "yes"}:
        return True
    if lowered in {"off", "false", "no"}:
        return False
    return value.strip()


def _layer_option(name: str, values: str) -> Any:
    return typer.Option(None, f"--{name}", help=f"lean()'s {name}= for the replay: on, off or "
                        f"{values} (default: what --preset turns on).")


def audit(
    log: Path = typer.Argument(..., help="JSONL traffic log: OpenAI request/response pairs, "
                               "the prompts shape, or a tokenlean ledger export."),
    preset: str = typer.Option("safe", "--preset", help="The lean() preset to replay: safe "
                               "(lean()'s default), max-savings or off."),
    cache: str | None = _layer_option("cache", "exact / semantic"),
    templates: str | None = _layer_option("templates", "whitespace / safe"),
    compress: str | None = _layer_option("compress", "a method name"),
    budget: str | None = _layer_option("budget", "predict / concise"),
    cache_sampled: bool = typer.Option(False, "--cache-sampled", help="lean()'s "
                                       "cache_sampled=True: sampled calls (temperature above 0 "
                                       "or unset, no seed) may be answered from the cache."),
    max_false_hit_rate: float | None = typer.Option(
        None, "--max-false-hit-rate", help="lean()'s max_false_hit_rate=: the semantic "
        "cache's false-hit bound (default: the cache's, 0.05; needs a semantic cache, "
        "e.g. --preset max-savings)."),
    price_as: str = typer.Option("gpt-4o", "--price-as", help="Price every call as this model."),
    html: Path | None = typer.Option(None, "--html", help="Write the HTML report here."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON on stdout."),
    limit: int | None = typer.Option(None, "--limit", min=1, help="Only the first N calls."),
    output_ratios: Path | None = typer.Option(
        None, "--output-ratios", help="The JSON `tokenlean bench output` printed: estimate "
        "the output concise mode would save, per task type, from its measured ratios."),
    prefix_cache: bool = typer.Option(
        False, "--prefix-cache", help="Also bill the provider's prompt (prefix) cache, "
        "before and after (OpenAI's automatic rule, or Anthropic's breakpoints for a "
        "claude model): what the layers save once the provider discounts repeated prefixes."),
) -> None:
    """Replay a traffic log offline through the layers lean() would run; show what each saves."""
    replay = require("tokenlean.audit", extra="audit", feature="tokenlean audit")
    if not log.exists():
        raise InvalidRequestError(f"no such file: {log}")
    choices = {name: choice for name, value in (("cache", cache), ("templates", templates),
                                                ("compress", compress), ("budget", budget))
               if (choice := _choice(value)) is not None}
    ratios = None if output_ratios is None else replay.load_output_ratios(output_ratios)
    options = replay.AuditOptions(price_as=price_as, preset=preset, choices=choices,
                                  cache_sampled=cache_sampled,
                                  max_false_hit_rate=max_false_hit_rate, output_ratios=ratios,
                                  prefix_cache=prefix_cache)
    total = _count_lines(log, limit)
    with _progress(_err) as bar:
        task = bar.add_task("replaying", total=total)
        report = replay.audit_log(log, options=options, limit=limit,
                                  progress=lambda n: bar.update(task, completed=n))
    if html is not None:
        replay.write_html(report, html)
        _err.print(f"report written to [bold]{html}[/]")
    if as_json:
        typer.echo(json.dumps(report))
        return
    out = Console()
    replayed = f"preset {report['preset']!r}" + "".join(
        f", {name}={'on' if value is True else 'off' if value is False else value}"
        for name, value in report["choices"].items()) + (
        ", cache_sampled" if report["cache_sampled"] else "")
    out.print(layer_table(report, title=f"tokenlean audit of {log} ({report['requests']} calls, "
                                        f"{replayed}, priced as {price_as})"))
    out.print(f"$ per 1M tokens: {report['cost_per_mtok_before']:.3f} -> "
              f"{report['cost_per_mtok_after']:.3f}  (saved {report['saved_ratio'] * 100:.1f}%)")
    prefix = report.get("prefix_cache")
    if prefix:
        out.print(f"with the provider's prompt cache billed: {prefix['cost_per_mtok_before']:.3f}"
                  f" -> {prefix['cost_per_mtok_after']:.3f}  (saved "
                  f"{prefix['saved_ratio'] * 100:.1f}%; {prefix['rules']})")
    for layer in report["layers"]:
        if layer["status"] == "skipped":
            out.print(f"[dim]{layer['layer']}: {layer['note']}[/]")
    estimate = report.get("output_estimate")
    if estimate:
        out.print(f"output, concise mode (an estimate, not in the totals above): "
                  f"{estimate['est_saved_output_tokens']:,} output tokens, "
                  f"${estimate['est_saved_usd']:.4f} "
                  f"({estimate['est_saved_share'] * 100:.1f}% of spend)")
        for task, row in estimate["by_task_type"].items():
            ratio = row["measured_ratio"]
            out.print(f"  {task}: {row['calls']} calls, {row['output_tokens']:,} output tokens, "
                      f"ratio {'-' if ratio is None else f'{ratio:.2f}'} -> "
                      f"{row['est_saved_output_tokens']:,} saved ({row['why']})")
        out.print(f"[dim]source: {estimate['source']}[/]")


def demo(
    price_as: str = typer.Option("gpt-4o", "--price-as", help="Price every call as this model."),
    html: Path = typer.Option(Path("tokenlean-demo.html"), "--html",
                              help="Where to write the HTML report."),
    questions: int | None = typer.Option(None, "--questions", min=1,
                                         help="Run only the first N questions of the session."),
    max_tokens: int | None = typer.Option(None, "--max-tokens", min=1, help="Answer length cap "
                                          "for the local model (default 96; with --shape, the "
                                          "shape's app cap)."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON on stdout."),
    shape: str | None = typer.Option(None, "--shape", help="Instead: run one shape of the "
                                     "traffic suite live (rag, support, multi-turn, agent, "
                                     "chat; needs tokenlean[bench]) and say which one ran."),
    data_dir: Path | None = typer.Option(None, "--data-dir", help="With --shape: a folder with "
                                         "the files of ../shared/data (default: "
                                         "$TOKENLEAN_DATA_DIR, else ../shared/data)."),
    calls: int = typer.Option(8, "--calls", min=1, help="With --shape: how many of the "
                              "shape's calls to ask (each raw and through lean())."),
) -> None:
    """Run a small LangChain RAG app raw and through lean() on a local model; show the savings.
    With --shape NAME: one app shape of the traffic suite, live, instead."""
    if shape is None:
        from ._demo import run_demo

        run_demo(price_as=price_as, html=html, questions=questions,
                 max_tokens=96 if max_tokens is None else max_tokens, as_json=as_json)
        return
    from tokenlean.core import ConfigError, MissingExtraError

    from ._demo import default_data_dir, run_shape_demo, shape_entries

    folder = default_data_dir() if data_dir is None else data_dir
    try:  # the arguments, before anything loads: a bad one is named, no traceback
        entries = shape_entries(shape, folder, calls)
    except MissingExtraError:
        raise
    except ConfigError as exc:
        raise typer.BadParameter(str(exc)) from None
    run_shape_demo(shape, data_dir=folder, calls=calls, price_as=price_as,
                   max_tokens=max_tokens, as_json=as_json, entries=entries)
