"""``tokenlean templates lint FILE``: each template's savings and diff."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from ._rewrite import TemplateRewriter

app = typer.Typer(no_args_is_help=True, help="Prompt-template rewriting (layer 2).")


@app.callback()
def _group() -> None:
    """Prompt-template rewriting (layer 2)."""


def _templates(path: Path) -> list[tuple[str, str]]:
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".jsonl":
        out = []
        for n, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise typer.BadParameter(f"{path}:{n} is not JSON: {exc}") from None
                if not isinstance(row, dict) or not isinstance(row.get("template"), str):
                    raise typer.BadParameter(f"{path}:{n} has no string 'template'")
                out.append((str(row.get("id", n)), row["template"]))
        return out
    return [(path.name, text)]


@app.command("lint")
def lint(
    file: Path = typer.Argument(..., exists=True, dir_okay=False,
                                help="A template text file, or JSONL rows with 'template'."),
    mode: str = typer.Option("safe", "--mode", help="safe | whitespace"),
    limit: int | None = typer.Option(None, "--limit", min=1, help="First N templates only."),
    no_similarity: bool = typer.Option(False, "--no-similarity", help="Skip the MiniLM check."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per template."),
    write: Path | None = typer.Option(None, "--write", dir_okay=False,
                                      help="Write the rewrite of a single text template here."),
) -> None:
    """Show what the rewrite saves on each template, with a word diff."""
    if mode not in ("safe", "whitespace"):
        raise typer.BadParameter("--mode must be safe or whitespace")
    rows = _templates(file)[:limit]
    rewriter = TemplateRewriter(mode=mode,  # type: ignore[arg-type]
                                scorer=None if no_similarity else "minilm")
    results = rewriter.rewrite_many([t for _, t in rows])
    for (name, _), r in zip(rows, results):
        if as_json:
            typer.echo(json.dumps({
                "id": name, "tokens_before": r.tokens_before, "tokens_after": r.tokens_after,
                "saved_ratio": round(r.saved_ratio, 4), "similarity": r.similarity,
                "passes": {p.name: p.saved_tokens for p in r.passes if p.saved_tokens},
                "skipped": {p.name: p.skipped for p in r.passes if p.skipped},
                "diff": r.diff(),
            }))
            continue
        sim = "-" if r.similarity is None else f"{r.similarity:.3f}"
        typer.echo(f"== {name}: {r.tokens_before} -> {r.tokens_after} tokens "
                   f"({r.saved_ratio:.1%} saved, similarity {sim})")
        for p in r.passes:
            if p.saved_tokens or p.skipped:
                typer.echo(f"   {p.name}: -{p.saved_tokens}" + (f" (skipped: {p.skipped})"
                                                                if p.skipped else ""))
        if r.changed:
            typer.echo(r.diff())
    if write is not None:
        if len(results) != 1:
            raise typer.BadParameter("--write needs a single template file")
        write.write_text(results[0].text, encoding="utf-8")
