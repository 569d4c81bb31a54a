"""``tokenlean bench compress``: answer retention at a compression ratio."""

from __future__ import annotations

import json
import math
import re
import time
from pathlib import Path
from typing import Any

import typer

from tokenlean.compress import Compressor
from tokenlean.compress._compressor import METHODS
from tokenlean.compress._text import STOPWORDS, stem, words
from tokenlean.core import InvalidRequestError, read_jsonl

__all__ = ["bench", "normalise", "run_bench", "summary_overlap"]


def normalise(text: str) -> str:
    """Lower-case, whitespace collapsed: how answers are matched."""
    return re.sub(r"\s+", " ", text).strip().lower()


def _content_stems(text: str) -> set[str]:
    return {stem(w) for w in words(text) if w not in STOPWORDS and len(w) > 2}


def summary_overlap(reference: str, text: str) -> float:
    """Share of the reference's content words (stemmed, stopwords out) found in
    ``text``: ROUGE-1 recall without duplicates. For QMSum-style rows, whose
    answers are summaries that never appear verbatim."""
    ref = _content_stems(reference)
    return len(ref & _content_stems(text)) / len(ref) if ref else 0.0


def _rows(path: Path, limit: int | None, holdout: bool) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for number, row in read_jsonl(path, "qa"):
        if holdout and (number - 1) % 5:
            continue
        rows.append(row)
        if limit is not None and len(rows) >= limit:
            break
    if not rows:
        raise InvalidRequestError(f"{path} has no qa rows")
    return rows


def _tiktoken_cache() -> Path:
    """llama-index-core ships tiktoken's cl100k cache files: llmlingua's own
    constructor needs one and would otherwise download it."""
    import llama_index.core

    return Path(llama_index.core.__file__).parent / "_static" / "tiktoken_cache"


def run_direct(path: Path, *, ratio: float, method: str, limit: int | None = None,
               holdout: bool = False, model: str = "gpt-4o") -> dict[str, Any]:
    """The same rows through llmlingua's own ``PromptCompressor`` (see
    :class:`DirectLingua`), scored the same way, next to tokenlean's path."""
    from tokenlean.compress._lingua import DirectLingua
    from tokenlean.core import get_tokenizer

    if method not in ("llmlingua", "longllmlingua"):
        raise InvalidRequestError("--direct compares the LLMLingua methods only: "
                                  "--method llmlingua or longllmlingua")
    from tokenlean.core._optional import require

    loading = require("tokenlean.backend.loading", extra="backend",
                      feature="the --direct llmlingua comparison (an HF folder of SmolLM2)")
    folder = loading.default_model_path()
    rows = _rows(path, limit, holdout)
    ours = run_bench(path, ratio=ratio, method=method, limit=limit, holdout=holdout, model=model,
                     model_path=str(folder))
    direct = DirectLingua(long=method == "longllmlingua", model_folder=folder,
                          tiktoken_cache=_tiktoken_cache())
    tokenizer = get_tokenizer(model)
    kept = before = after = 0
    seconds = 0.0
    for row in rows:
        question = row.get("question") if isinstance(row.get("question"), str) else None
        n = len(tokenizer.encode(row["context"]))
        budget = max(1, math.floor(n / ratio))  # as Compressor budgets a ratio
        started = time.perf_counter()
        text = direct.compress([row["context"]], question, budget)
        seconds += time.perf_counter() - started
        kept += any(normalise(a) in normalise(text) for a in row["answers"]
                    if isinstance(a, str) and a)
        before += n
        after += len(tokenizer.encode(text))
    reference = {"answer_retention": round(kept / len(rows), 4),
                 "ratio_achieved": round(before / after, 3) if after else math.inf,
                 "tokens_per_s": round(before / seconds) if seconds else None,
                 "seconds": round(seconds, 2)}
    return {**ours, "direct": reference,
            "retention_delta": round(ours["answer_retention"] - reference["answer_retention"], 4),
            "speed_vs_direct": round(ours["tokens_per_s"] / reference["tokens_per_s"], 3)
            if ours["tokens_per_s"] and reference["tokens_per_s"] else None}


def run_bench(path: Path, *, ratio: float, method: str = "tokenlean", limit: int | None = None,
              holdout: bool = False, model: str = "gpt-4o",
              model_path: str | None = None) -> dict[str, Any]:
    """Compress each row's context to 1/``ratio`` and check the gold answers."""
    rows = _rows(path, limit, holdout)
    compressor = Compressor(method=method, ratio=ratio, model=model,  # type: ignore[arg-type]
                            model_path=model_path)
    compressor.compress("Warm-up sentence one. Warm-up two.", "warm up", max_tokens=3)
    kept = before = after = 0
    seconds = cpu = overlap = overlap_full = 0.0
    ratios: list[float] = []
    for row in rows:
        question = row.get("question") if isinstance(row.get("question"), str) else None
        started, started_cpu = time.perf_counter(), time.process_time()
        result = compressor.compress(row["context"], question)
        seconds += time.perf_counter() - started
        cpu += time.process_time() - started_cpu
        text = normalise(result.text)
        answers = [a for a in row["answers"] if isinstance(a, str) and a]
        kept += any(normalise(a) in text for a in answers)
        if answers:
            overlap += max(summary_overlap(a, result.text) for a in answers)
            overlap_full += max(summary_overlap(a, row["context"]) for a in answers)
        before += result.tokens_before
        after += result.tokens_after
        ratios.append(result.ratio)
    return {
        "answer_retention": round(kept / len(rows), 4),
        "ratio_achieved": round(before / after, 3) if after else math.inf,
        "ratio_min_row": round(min(ratios), 3),
        "tokens_per_s": round(before / seconds) if seconds else None,
        # CPU time of this process (all its threads): the rate on an idle machine
        "tokens_per_cpu_s": round(before / cpu) if cpu else None,
        # answers that are summaries (QMSum): content-word recall, compressed vs full
        "summary_overlap": round(overlap / len(rows), 4),
        "summary_overlap_full": round(overlap_full / len(rows), 4),
        "summary_overlap_kept": round(overlap / overlap_full, 4) if overlap_full else None,
        "n": len(rows),
        "method": method,
        "ratio": ratio,
        "data": path.name,
        "holdout_only": holdout,
        "tokens_before": before,
        "tokens_after": after,
        "seconds": round(seconds, 2),
    }


def bench(
    data: Path | None = typer.Argument(None, help="QA JSONL file (same as --qa)."),
    qa: Path | None = typer.Option(None, "--qa", help='QA JSONL: {"id","context","question",'
                                   '"answers"} per line.'),
    ratio: float = typer.Option(5.0, "--ratio", "-r", help="Target compression ratio (> 1)."),
    method: str = typer.Option("tokenlean", "--method", help=f"One of {', '.join(METHODS)}."),
    limit: int | None = typer.Option(None, "--limit", "-n", help="Use the first N rows."),
    holdout: bool = typer.Option(False, "--holdout", help="Only rows whose index is a multiple "
                                 "of 5 (held out when the default ranker was trained)."),
    model: str = typer.Option("gpt-4o", "--model", help="Tokenizer for counting (o200k)."),
    json_out: bool = typer.Option(True, "--json/--no-json", help="Print JSON (always on)."),
    direct: bool = typer.Option(False, "--direct", help="LLMLingua methods: also run "
                                "llmlingua's own PromptCompressor on the same rows and report "
                                "both (the 'within 10%' check)."),
) -> None:
    """Answer retention of a compression method at a ratio; prints one JSON object."""
    path = qa or data
    if path is None:
        typer.echo("error: give the QA file as an argument or with --qa", err=True)
        raise typer.Exit(code=2)
    run = run_direct if direct else run_bench
    out = run(path, ratio=ratio, method=method, limit=limit, holdout=holdout, model=model)
    typer.echo(json.dumps(out))
