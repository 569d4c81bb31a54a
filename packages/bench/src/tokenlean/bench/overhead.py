"""``tokenlean bench overhead``: what lean() adds to a model call that misses every cache."""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from collections.abc import Callable
from itertools import cycle
from pathlib import Path
from typing import Any

import typer

from tokenlean.core import read_prompts
from tokenlean.core._optional import require


def _prompts(path: Path | None, limit: int) -> list[str]:
    if path is None:
        base = "Summarise the following support ticket in two sentences: the customer reports "
        return [f"{base}that order #{i} arrived late and the box was damaged."
                for i in range(limit)]
    out: list[str] = []
    for _, messages in read_prompts(path):
        users = [m.text for m in messages if m.role == "user"]
        if users and users[-1]:
            out.append(users[-1])
        if len(out) >= limit:
            break
    if not out:
        raise typer.BadParameter(f"{path} has no rows of the prompts shape with a user message")
    return out


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _time_pairs(bare: Callable[[str], Any], wrapped: Callable[[str], Any], texts: list[str],
                n: int) -> list[float]:
    """Per call: wrapped time minus bare time (ms), on prompts never seen before."""
    for text in texts[:10]:  # warm imports, tokenizer and price caches
        bare(text + " warmup")
        wrapped(text + " warmup")
    diffs: list[float] = []
    for i in range(n):
        text = f"{texts[i % len(texts)]} (call {i})"  # unique: every call is a miss
        t0 = time.perf_counter()
        bare(text)
        t1 = time.perf_counter()
        wrapped(text)
        t2 = time.perf_counter()
        diffs.append(((t2 - t1) - (t1 - t0)) * 1000)
    return diffs


def overhead(
    prompts: Path | None = typer.Option(None, "--prompts", help="Prompts-shape JSONL (optional)."),
    n: int = typer.Option(300, "--n", help="Calls per arm."),
    preset: str = typer.Option("safe", "--preset", help="lean() preset to measure."),
    model: str = typer.Option("gpt-4o", "--model", help="Model name for counting and prices."),
    wrapper: str = typer.Option("lean", "--wrapper",
                                help="'lean' (lean(chat_model)) or 'middleware' "
                                     "(TokenleanMiddleware in a create_agent agent)."),
    as_json: bool = typer.Option(True, "--json/--no-json",
                                 help="Print JSON (the only output format; kept for scripts)."),
) -> None:
    """Per-call overhead of lean() on a cache miss, in ms over the bare model call."""
    require("langchain_tokenlean", extra="langchain", feature="tokenlean bench overhead")
    from langchain_core.language_models import GenericFakeChatModel
    from langchain_core.messages import AIMessage, HumanMessage

    from langchain_tokenlean import lean
    from tokenlean.core import SQLiteLedger

    if wrapper not in {"lean", "middleware"}:
        raise typer.BadParameter("--wrapper takes 'lean' or 'middleware'")
    answer = AIMessage(content="The parcel was late and arrived damaged; a refund was issued.",
                       usage_metadata={"input_tokens": 40, "output_tokens": 14,
                                       "total_tokens": 54})
    texts = _prompts(prompts, n)

    def fake() -> GenericFakeChatModel:
        return GenericFakeChatModel(messages=cycle([answer]))

    with tempfile.TemporaryDirectory() as tmp:
        ledger = SQLiteLedger(Path(tmp) / "ledger.sqlite")
        if wrapper == "lean":
            wrapped = lean(fake(), preset=preset, ledger=ledger, model=model)
            layers = [layer.name for layer in wrapped.layers]
            diffs = _time_pairs(fake().invoke, wrapped.invoke, texts, n)
        else:
            from langchain.agents import create_agent

            from langchain_tokenlean.middleware import TokenleanMiddleware

            middleware = TokenleanMiddleware(preset=preset, ledger=ledger, model=model)
            layers = [layer.name for layer in middleware.layers]
            bare_agent = create_agent(fake())
            lean_agent = create_agent(fake(), middleware=[middleware])
            diffs = _time_pairs(
                lambda t: bare_agent.invoke({"messages": [HumanMessage(t)]}),
                lambda t: lean_agent.invoke({"messages": [HumanMessage(t)]}), texts, n)
    typer.echo(json.dumps({
        "bench": "overhead", "wrapper": wrapper, "preset": preset, "layers": layers, "n": n,
        "overhead_ms_p50": round(statistics.median(diffs), 3),
        "overhead_ms_p99": round(_percentile(diffs, 0.99), 3),
        "prompts": str(prompts) if prompts else "built-in",
    }))
