"""`tokenlean bench backend` / `tokenlean bench prune`: evaluate pruned models, print JSON."""

from __future__ import annotations

import typer


def bench_backend(
    data: str = typer.Argument(..., help="prompts JSONL (evaluation text)."),
) -> None:
    """Evaluate a (pruned) model against the dense one; prints one JSON object."""
    typer.echo("not implemented yet", err=True)
    raise typer.Exit(code=2)


def bench_prune(
    data: str = typer.Argument(..., help="prompts JSONL (evaluation text)."),
) -> None:
    """Prune, optionally recover, evaluate; prints one JSON object."""
    typer.echo("not implemented yet", err=True)
    raise typer.Exit(code=2)
