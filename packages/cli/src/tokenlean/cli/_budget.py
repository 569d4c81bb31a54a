"""``tokenlean budget show|reset``: inspect and top up budget accounts (needs tokenlean-budget)."""

from __future__ import annotations

import json
from typing import Any

import typer

from tokenlean.core._optional import require

from ._commands import fail

budget = typer.Typer(no_args_is_help=True, help="Budget accounts (spent and reserved).")


def _store(db: str | None) -> Any:
    layer = require("tokenlean.budget", extra="budget", feature="tokenlean budget")
    return layer.SQLiteBudgetStore(db)


@budget.command("show")
def show(
    db: str = typer.Option(None, "--db", help="Budget SQLite file (default: the ledger's)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """List every budget account: spent and reserved dollars and tokens."""
    store = _store(db)
    try:
        rows = [{"key": a.key, "spent_usd": a.spent_usd, "spent_tokens": a.spent_tokens,
                 "reserved_usd": a.reserved_usd, "reserved_tokens": a.reserved_tokens}
                for a in store.all_accounts()]
    finally:
        store.close()
    if as_json:
        typer.echo(json.dumps(rows))
        return
    for row in rows:
        typer.echo(f"{row['key']}  spent ${row['spent_usd']:.6f} / {row['spent_tokens']} tok  "
                   f"reserved ${row['reserved_usd']:.6f} / {row['reserved_tokens']} tok")


@budget.command("reset")
def reset(
    key: str = typer.Argument(..., help="Account key as `show` prints it."),
    db: str = typer.Option(None, "--db", help="Budget SQLite file (default: the ledger's)."),
) -> None:
    """Zero an account's spend (a top-up); in-flight reservations stay."""
    store = _store(db)
    try:
        if key not in {a.key for a in store.all_accounts()}:
            raise fail(f"no budget account {key!r}; see `tokenlean budget show`")
        store.reset(key)
    finally:
        store.close()
    typer.echo(f"reset {key}")
