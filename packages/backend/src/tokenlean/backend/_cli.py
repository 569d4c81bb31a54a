"""`tokenlean prune`: structured pruning of a local model to a standard architecture."""

from __future__ import annotations

import typer


def prune(
    model: str | None = typer.Option(None, "--model", "-m", help="HF folder or .gguf; default SmolLM2-135M."),
    target: float = typer.Option(0.3, "--target", help="Fraction of parameters to remove."),
    out: str = typer.Option(..., "--out", "-o", help="Folder to write the pruned model to."),
) -> None:
    """Prune a model structurally (heads, MLP channels, layers) and save a standard HF folder."""
    typer.echo("tokenlean prune: not implemented yet", err=True)
    raise typer.Exit(code=2)
