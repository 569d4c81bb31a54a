"""Built-in commands that need only tokenlean-core: count, ledger; the error and version
helpers every command shares."""

from __future__ import annotations

import json
import sys
from decimal import Decimal
from importlib.metadata import distributions
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from tokenlean.core import (
    Message,
    Usage,
    count_messages,
    count_tokens,
    default_ledger_path,
    open_ledger,
    price,
)

_out = Console()
_err = Console(stderr=True)


def fail(message: str) -> typer.Exit:
    """Print ``error: message`` on stderr; raise what this returns to exit with status 2."""
    _err.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True)
    return typer.Exit(code=2)


def _is_tokenlean(distribution: str) -> bool:
    """tokenlean-* and the framework integrations (langchain-tokenlean, llama-index-*-tokenlean)."""
    name = distribution.lower().replace("_", "-")
    return name.startswith("tokenlean") or name.endswith("-tokenlean")


def version_callback(value: bool) -> None:
    if not value:
        return
    names = sorted({(d.metadata["Name"], d.version) for d in distributions()
                    if _is_tokenlean(d.metadata["Name"] or "")})
    for name, ver in names:
        typer.echo(f"{name} {ver}")
    raise typer.Exit()


def _read_input(file: str | None, text: str | None) -> str:
    if text is not None:
        return text
    try:
        if file is None or file == "-":
            data = sys.stdin.read()
        else:
            data = Path(file).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise fail(f"cannot read {file or 'standard input'}: {exc}") from None
    # `echo` and editors end input with one newline that nobody means to send.
    return data[:-1] if data.endswith("\n") else data


def _as_chat(data: str) -> list[Any] | None:
    """The messages if ``data`` is a chat JSON (a list of messages or {"messages": [...]})."""
    stripped = data.lstrip()
    if not stripped.startswith(("[", "{")):
        return None
    try:
        parsed = json.loads(stripped)
    except json.JSONDecodeError:
        return None
    if isinstance(parsed, dict) and isinstance(parsed.get("messages"), list):
        return parsed["messages"]
    if isinstance(parsed, list) and parsed and all(isinstance(m, dict) and "role" in m
                                                   for m in parsed):
        return parsed
    return None


def count(
    file: str | None = typer.Argument(None, help="Text or chat-JSON file; '-' or nothing: stdin."),
    model: str = typer.Option(..., "--model", "-m", help="Model whose tokenizer and price apply."),
    text: str | None = typer.Option(None, "--text", help="Count this text instead of a file."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Count tokens (and their input price) of a text or an OpenAI-style chat JSON."""
    data = _read_input(file, text)
    chat = _as_chat(data)
    counted = (count_messages([Message.from_openai(m) for m in chat], model=model)
               if chat is not None else count_tokens(data, model=model))
    cost = price(Usage(input_tokens=counted.tokens), model=model)
    result = {
        "model": model,
        "kind": "chat" if chat is not None else "text",
        "tokens": counted.tokens,
        "exact": counted.exact,
        "tokenizer": counted.method,
        "cost_usd": None if cost is None else float(cost.input_usd),
        "price_source": None if cost is None else cost.source,
    }
    if as_json:
        typer.echo(json.dumps(result))
        return
    table = Table(title=f"{model}: {result['kind']}")
    for key in ("tokens", "exact", "tokenizer", "cost_usd", "price_source"):
        table.add_row(key, str(result[key]))
    _out.print(table)


def ledger(
    path: str | None = typer.Option(
        None, "--path", help="Ledger: a .sqlite or .jsonl file, or a postgresql:// URL."),
    by: str = typer.Option("model", "--by", help="Group by model, tenant, layer or day."),
    tenant: str | None = typer.Option(None, "--tenant", help="Only this tenant's calls."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Totals from the cost ledger: calls, tokens (the reasoning share of the output
    apart), $ spent and $ saved (an unknown cost is "unknown", null in JSON, never $0)."""
    store = open_ledger(path)
    # --by is the CLI's string; totals() checks it (ConfigError, printed as an error)
    rows = store.totals(by=by, tenant=tenant)  # type: ignore[arg-type]
    store.close()
    if as_json:
        typer.echo(json.dumps([{
            "key": r.key, "calls": r.calls, "input_tokens": r.input_tokens,
            "output_tokens": r.output_tokens, "reasoning_tokens": r.reasoning_tokens,
            "cost_usd": _float(r.cost_usd),
            "priced_cost_usd": float(r.priced_cost_usd), "unpriced_calls": r.unpriced_calls,
            "saved_tokens": r.saved_tokens, "saved_usd": _float(r.saved_usd),
            "priced_saved_usd": float(r.priced_saved_usd),
            "unpriced_savings": r.unpriced_savings, "cached_calls": r.cached_calls,
        } for r in rows]))
        return
    where = path if path is not None else str(default_ledger_path())
    table = Table(title=f"ledger {escape(where.split('@')[-1])} by {by}")
    for column in (by, "calls", "input tok", "output tok", "of it reasoning", "cost $",
                   "unpriced", "saved tok", "saved $", "cached"):
        table.add_column(column, justify="left" if column == by else "right")
    layers = by == "layer"  # a layer has savings, not spend
    for r in rows:
        table.add_row(escape(r.key), str(r.calls), "-" if layers else f"{r.input_tokens:,}",
                      "-" if layers else f"{r.output_tokens:,}",
                      "-" if layers else f"{r.reasoning_tokens:,}",
                      "-" if layers else _usd(r.cost_usd, r.priced_cost_usd),
                      "-" if layers else str(r.unpriced_calls), f"{r.saved_tokens:,}",
                      _usd(r.saved_usd, r.priced_saved_usd), str(r.cached_calls))
    _out.print(table)


def _float(value: Decimal | None) -> float | None:
    return None if value is None else float(value)


def _usd(total: Decimal | None, priced: Decimal) -> str:
    """A dollar cell: the sum, or "unknown" (with what the priced part came to)."""
    return f"{total:.6f}" if total is not None else f"unknown (priced: {priced:.6f})"
