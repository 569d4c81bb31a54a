"""``tokenlean templates lint FILE``: each template's savings and diff (needs
tokenlean-templates)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from tokenlean.core import read_jsonl
from tokenlean.core._optional import require

app = typer.Typer(no_args_is_help=True, help="Prompt-template rewriting (layer 2).")


@app.callback()
def _group() -> None:
    """Prompt-template rewriting (layer 2)."""


def _templates(path: Path) -> list[tuple[str, str]]:
    if path.suffix == ".jsonl":
        rows = read_jsonl(path, "templates")
        return [(str(row.get("id", n)), row["template"]) for n, row in rows]
    return [(path.name, path.read_text(encoding="utf-8"))]


def _object_templates(target: str, framework: str) -> list[tuple[str, str]]:
    """Templates of ``module:attr`` (a prompt, or an object with ``get_prompts()``), or of
    every prompt the framework ships (``installed``)."""
    import importlib

    from tokenlean.templates._frameworks import (
        langchain_corpus,
        langchain_texts,
        llamaindex_corpus,
        llamaindex_texts,
    )

    if target == "installed":
        rows = langchain_corpus() if framework == "langchain" else llamaindex_corpus()
        return [(r["id"], r["template"]) for r in rows]
    module_name, _, attr = target.partition(":")
    if not module_name or not attr:
        raise typer.BadParameter(f"--from-{framework} takes module:attr or 'installed'")
    try:
        obj = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise typer.BadParameter(f"cannot load {target}: {exc}") from None
    prompts = obj.get_prompts() if hasattr(obj, "get_prompts") else {attr: obj}
    out: list[tuple[str, str]] = []
    for key, prompt in prompts.items():
        if framework == "llamaindex":
            out.extend((f"{target}:{key}", t) for t in llamaindex_texts(prompt))
        else:
            out.extend((r["id"], r["template"]) for r in langchain_texts(f"{target}:{key}", prompt))
    return out


@app.command("lint")
def lint(
    file: Path | None = typer.Argument(None, exists=True, dir_okay=False,
                                       help="A template text file, or JSONL rows with "
                                            "'template'."),
    from_langchain: str | None = typer.Option(
        None, "--from-langchain", help="module:attr of a LangChain prompt, or 'installed' "
                                       "(every prompt the installed LangChain ships)."),
    from_llamaindex: str | None = typer.Option(
        None, "--from-llamaindex", help="module:attr of a LlamaIndex prompt or of an object "
                                        "with get_prompts(), or 'installed'."),
    mode: str = typer.Option("safe", "--mode", "--passes", help="safe | all | whitespace"),
    limit: int | None = typer.Option(None, "--limit", min=1, help="First N templates only."),
    no_similarity: bool = typer.Option(False, "--no-similarity", help="Skip the MiniLM check."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per template."),
    write: Path | None = typer.Option(None, "--write", dir_okay=False,
                                      help="Write the rewrite of a single text template here."),
) -> None:
    """Show what the rewrite saves on each template, with a word diff."""
    if mode not in ("safe", "whitespace", "all"):
        raise typer.BadParameter("--passes must be safe, all or whitespace")
    if sum(x is not None for x in (file, from_langchain, from_llamaindex)) != 1:
        raise typer.BadParameter("give one of FILE, --from-langchain, --from-llamaindex")
    templates = require("tokenlean.templates", extra="templates",
                        feature="tokenlean templates lint")
    if from_langchain is not None:
        rows = _object_templates(from_langchain, "langchain")[:limit]
    elif from_llamaindex is not None:
        rows = _object_templates(from_llamaindex, "llamaindex")[:limit]
    else:
        rows = _templates(file)[:limit]  # type: ignore[arg-type]  # checked: exactly one given
    rewriter = templates.TemplateRewriter(mode=mode, scorer=None if no_similarity else "minilm")
    results = rewriter.rewrite_many([t for _, t in rows])
    for (name, _), r in zip(rows, results, strict=True):
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
