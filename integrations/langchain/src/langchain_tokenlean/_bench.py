"""``tokenlean bench overhead``: what lean() adds to a model call that misses every cache."""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from itertools import cycle
from pathlib import Path

import typer


def _prompts(path: Path | None, limit: int) -> list[str]:
    if path is None:
        base = "Summarise the following support ticket in two sentences: the customer reports "
        return [f"{base}that order #{i} arrived late and the box was damaged." for i in range(limit)]
    out: list[str] = []
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            row = json.loads(line)
            users = [m["content"] for m in row.get("messages", []) if m.get("role") == "user"]
            if users and isinstance(users[-1], str):
                out.append(users[-1])
            if len(out) >= limit:
                break
    if not out:
        raise typer.BadParameter(f"{path} has no rows of the prompts shape with a user message")
    return out


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def overhead(
    prompts: Path | None = typer.Option(None, "--prompts", help="Prompts-shape JSONL (optional)."),
    n: int = typer.Option(300, "--n", help="Calls per arm."),
    preset: str = typer.Option("safe", "--preset", help="lean() preset to measure."),
    model: str = typer.Option("gpt-4o", "--model", help="Model name for counting and prices."),
) -> None:
    """Per-call overhead of lean() on a cache miss, in ms over the bare model call."""
    from langchain_core.language_models import GenericFakeChatModel
    from langchain_core.messages import AIMessage

    from tokenlean.core import SQLiteLedger

    from .chat_models import lean

    answer = AIMessage(content="The parcel was late and arrived damaged; a refund was issued.",
                       usage_metadata={"input_tokens": 40, "output_tokens": 14,
                                       "total_tokens": 54})
    texts = _prompts(prompts, n)
    bare = GenericFakeChatModel(messages=cycle([answer]))
    with tempfile.TemporaryDirectory() as tmp:
        wrapped = lean(GenericFakeChatModel(messages=cycle([answer])), preset=preset,
                       ledger=SQLiteLedger(Path(tmp) / "ledger.sqlite"), model=model)
        for text in texts[:10]:  # warm imports, tokenizer and price caches
            bare.invoke(text + " warmup")
            wrapped.invoke(text + " warmup")
        diffs: list[float] = []
        for i in range(n):
            text = f"{texts[i % len(texts)]} (call {i})"  # unique: every call is a miss
            t0 = time.perf_counter()
            bare.invoke(text)
            t1 = time.perf_counter()
            wrapped.invoke(text)
            t2 = time.perf_counter()
            diffs.append(((t2 - t1) - (t1 - t0)) * 1000)
        layers = [layer.name for layer in wrapped.layers]
    typer.echo(json.dumps({
        "bench": "overhead", "preset": preset, "layers": layers, "n": n,
        "overhead_ms_p50": round(statistics.median(diffs), 3),
        "overhead_ms_p99": round(_percentile(diffs, 0.99), 3),
        "prompts": str(prompts) if prompts else "built-in",
    }))
