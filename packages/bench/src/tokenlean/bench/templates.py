"""``tokenlean bench templates FILE``: tokens saved by the safe passes, measured."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

import typer

from tokenlean.core import read_jsonl
from tokenlean.templates import TemplateRewriter, check_invariants, find_variables
from tokenlean.templates._frameworks import langchain_corpus, llamaindex_corpus
from tokenlean.templates._rewrite import DEFAULT_MAX_CHARS

_MODES = ("safe", "whitespace", "all")


def run_bench(rows: list[dict[str, Any]], *, mode: str = "safe", model: str = "gpt-4o",
              similarity: bool = True, floor: float | None = None,
              max_chars: int | None = DEFAULT_MAX_CHARS, batch: int = 64) -> dict[str, Any]:
    """The benchmark's numbers for ``rows`` (templates shape)."""
    rewriter = TemplateRewriter(mode=mode, model=model,  # type: ignore[arg-type]
                                similarity_floor=floor, scorer="minilm" if similarity else None,
                                max_chars=max_chars)
    templates = [r["template"] for r in rows]
    results = []
    for i in range(0, len(templates), batch):
        results.extend(rewriter.rewrite_many(templates[i:i + batch]))
    before = sum(r.tokens_before for r in results)
    after = sum(r.tokens_after for r in results)
    per_pass: dict[str, dict[str, int]] = {}
    for r in results:
        for p in r.passes:
            entry = per_pass.setdefault(p.name, {"saved_tokens": 0, "applied": 0, "skipped": 0,
                                                 "partial": 0})
            entry["saved_tokens"] += p.saved_tokens
            entry["applied"] += int(p.applied)
            entry["skipped"] += int(p.skipped is not None)
            entry["partial"] += int(p.partial and p.applied)
    # invariants re-checked here, independently of the rewriter's own bookkeeping
    violations = sum(len(check_invariants(r.original, r.text)) for r in results)
    variables_lost = sum(len(set(find_variables(r.original)) - set(find_variables(r.text)))
                         for r in results)
    sims = [r.similarity for r in results if r.similarity is not None and r.changed]
    floor = rewriter.similarity_floor
    by_type: dict[str, dict[str, Any]] = {}
    for row, r in zip(rows, results, strict=True):
        entry = by_type.setdefault(str(row.get("type", "-")),
                                   {"templates": 0, "tokens_before": 0, "tokens_after": 0})
        entry["templates"] += 1
        entry["tokens_before"] += r.tokens_before
        entry["tokens_after"] += r.tokens_after
    for group in by_type.values():
        group["saved_ratio"] = round(1 - group["tokens_after"] / group["tokens_before"], 4) \
            if group["tokens_before"] else 0.0
    ratios = [r.saved_ratio for r in results]
    return {
        "templates": len(results),
        "changed": sum(r.changed for r in results),
        "mode": mode,
        "model_tokenizer": model,
        "tokens_before": before,
        "tokens_after": after,
        "saved_tokens": before - after,
        "saved_ratio": round((before - after) / before, 4) if before else 0.0,
        "mean_saved_ratio_per_template": round(statistics.mean(ratios), 4) if ratios else 0.0,
        "median_saved_ratio_per_template": round(statistics.median(ratios), 4) if ratios else 0.0,
        "invariant_violations": violations,
        "variables_lost": variables_lost,
        "similarity_floor": floor if similarity else None,
        "min_similarity": round(min(sims), 4) if sims else None,
        "similarity_min": round(min(sims), 4) if sims else None,
        "similarity_mean": round(statistics.mean(sims), 4) if sims else None,
        "similarity_p05": round(sorted(sims)[len(sims) // 20], 4) if sims else None,
        "backed_off": sum(any("backed off" in n for n in r.notes) for r in results),
        "per_pass": per_pass,
        "by_type": by_type,
    }


def bench(
    file: str = typer.Argument(None, help="JSONL of templates {id, name, template, type}, "
                                          "'llamaindex' or 'langchain' (the frameworks' own "
                                          "prompts); or give it as --corpus."),
    corpus: str | None = typer.Option(None, "--corpus", help="Same as FILE."),
    passes: str | None = typer.Option(None, "--passes",
                                      help="safe | all (safe + structural) | whitespace"),
    mode: str = typer.Option("safe", "--mode", help="Older name of --passes."),
    limit: int | None = typer.Option(None, "--limit", min=1, help="Use the first N rows."),
    split: str = typer.Option("all", "--split",
                              help="all | tune (index % 5 != 4) | holdout (index % 5 == 4) | "
                                   "even | odd (index % 2)"),
    model: str = typer.Option("gpt-4o", "--model", help="Tokenizer to count with."),
    no_similarity: bool = typer.Option(False, "--no-similarity",
                                       help="Skip the MiniLM meaning check (faster)."),
    floor: float | None = typer.Option(None, "--floor", min=0.0, max=1.0,
                                       help="Similarity floor (default: the mode's floor)."),
    max_chars: int = typer.Option(DEFAULT_MAX_CHARS, "--max-chars", min=0,
                                  help="Templates longer than this get the lossless passes "
                                       "only, as in the layer (0: no limit)."),
    as_json: bool = typer.Option(True, "--json/--no-json",
                                 help="Print JSON (always; kept for the documented command)."),
) -> None:
    """Templates layer: tokens saved by the rewrite passes, invariants, MiniLM similarity."""
    del as_json  # the output is always one JSON object
    mode = passes or mode
    source = corpus or file
    if source is None:
        raise typer.BadParameter("give the templates file (or llamaindex / langchain)")
    if mode not in _MODES:
        raise typer.BadParameter("--passes must be safe, all or whitespace")
    if split not in ("all", "tune", "holdout", "even", "odd"):
        raise typer.BadParameter("--split must be all, tune, holdout, even or odd")
    if source == "llamaindex":
        rows = llamaindex_corpus()
    elif source == "langchain":
        rows = langchain_corpus()
    else:
        path = Path(source)
        if not path.is_file():
            raise typer.BadParameter(f"{source} is not a file (or 'llamaindex' / 'langchain')")
        rows = [row for _, row in read_jsonl(path, "templates")]
    if split in ("tune", "holdout"):
        rows = [r for i, r in enumerate(rows) if (i % 5 == 4) == (split == "holdout")]
    elif split in ("even", "odd"):
        rows = [r for i, r in enumerate(rows) if i % 2 == (split == "odd")]
    if limit is not None:
        rows = rows[:limit]
    out = run_bench(rows, mode=mode, model=model, similarity=not no_similarity, floor=floor,
                    max_chars=max_chars or None)
    out = {"data": source, "split": split, "limit": limit, "max_chars": max_chars or None, **out}
    typer.echo(json.dumps(out))
