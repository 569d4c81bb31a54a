"""``tokenlean bench templates FILE``: tokens saved by the safe passes, measured."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

import typer

from ._protect import check_invariants, find_variables
from ._rewrite import DEFAULT_SIMILARITY_FLOOR, TemplateRewriter


def _load(path: Path) -> list[dict[str, Any]]:
    rows = []
    with path.open(encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise typer.BadParameter(f"{path}:{n} is not JSON: {exc}") from None
            if not isinstance(row, dict) or not isinstance(row.get("template"), str):
                raise typer.BadParameter(f"{path}:{n} has no string 'template' (templates shape: "
                                         '{"id", "name", "template", "type"})')
            rows.append(row)
    return rows


def llamaindex_corpus() -> list[dict[str, Any]]:
    """Every default prompt llama-index-core ships (``default_prompts``, ``chat_prompts``)."""
    import importlib

    rows: list[dict[str, Any]] = []
    for module_name in ("llama_index.core.prompts.default_prompts",
                        "llama_index.core.prompts.chat_prompts"):
        module = importlib.import_module(module_name)
        for name in sorted(vars(module)):
            value = getattr(module, name)
            if name.startswith("_"):
                continue
            if isinstance(getattr(value, "template", None), str):
                rows.append({"id": f"{module_name}.{name}", "template": value.template})
            for i, message in enumerate(getattr(value, "message_templates", None) or []):
                content = getattr(message, "content", None)
                if isinstance(content, str) and content.strip():
                    rows.append({"id": f"{module_name}.{name}[{i}]", "template": content})
    seen: set[str] = set()
    return [r for r in rows if not (r["template"] in seen or seen.add(r["template"]))]


def run_bench(rows: list[dict[str, Any]], *, mode: str = "safe", model: str = "gpt-4o",
              similarity: bool = True, floor: float = DEFAULT_SIMILARITY_FLOOR,
              batch: int = 64) -> dict[str, Any]:
    """The benchmark's numbers for ``rows`` (templates shape)."""
    rewriter = TemplateRewriter(mode=mode, model=model,  # type: ignore[arg-type]
                                similarity_floor=floor, scorer="minilm" if similarity else None)
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
    by_type: dict[str, dict[str, Any]] = {}
    for row, r in zip(rows, results):
        entry = by_type.setdefault(str(row.get("type", "-")),
                                   {"templates": 0, "tokens_before": 0, "tokens_after": 0})
        entry["templates"] += 1
        entry["tokens_before"] += r.tokens_before
        entry["tokens_after"] += r.tokens_after
    for entry in by_type.values():
        entry["saved_ratio"] = round(1 - entry["tokens_after"] / entry["tokens_before"], 4) \
            if entry["tokens_before"] else 0.0
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
        "similarity_min": round(min(sims), 4) if sims else None,
        "similarity_mean": round(statistics.mean(sims), 4) if sims else None,
        "backed_off": sum(any("backed off" in n for n in r.notes) for r in results),
        "per_pass": per_pass,
        "by_type": by_type,
    }


def bench(
    file: str = typer.Argument(..., help="JSONL of templates {id, name, template, type}, "
                                         "or 'llamaindex' (llama-index-core's default prompts)."),
    mode: str = typer.Option("safe", "--mode", help="safe | whitespace"),
    limit: int | None = typer.Option(None, "--limit", min=1, help="Use the first N rows."),
    split: str = typer.Option("all", "--split",
                              help="all | tune (index % 5 != 4) | holdout (index % 5 == 4)"),
    model: str = typer.Option("gpt-4o", "--model", help="Tokenizer to count with."),
    no_similarity: bool = typer.Option(False, "--no-similarity",
                                       help="Skip the MiniLM meaning check (faster)."),
    floor: float = typer.Option(DEFAULT_SIMILARITY_FLOOR, "--floor", min=0.0, max=1.0,
                                help="Similarity floor."),
) -> None:
    """Templates layer: tokens saved by the safe rewrite, invariants, MiniLM similarity."""
    if mode not in ("safe", "whitespace"):
        raise typer.BadParameter("--mode must be safe or whitespace")
    if split not in ("all", "tune", "holdout"):
        raise typer.BadParameter("--split must be all, tune or holdout")
    if file == "llamaindex":
        rows = llamaindex_corpus()
    else:
        path = Path(file)
        if not path.is_file():
            raise typer.BadParameter(f"{file} is not a file (or 'llamaindex')")
        rows = _load(path)
    if split != "all":
        rows = [r for i, r in enumerate(rows) if (i % 5 == 4) == (split == "holdout")]
    if limit is not None:
        rows = rows[:limit]
    out = run_bench(rows, mode=mode, model=model, similarity=not no_similarity, floor=floor)
    out = {"data": file, "split": split, "limit": limit, **out}
    typer.echo(json.dumps(out))
