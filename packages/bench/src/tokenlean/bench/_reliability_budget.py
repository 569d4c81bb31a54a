"""Budget overspend scenarios: does ``spent <= limit + the largest single call`` hold?

Each scenario sends more concurrent calls than a ``"raise"`` dollar budget can
afford through a real :class:`~tokenlean.budget.BudgetLayer` on a real store
(a SQLite file, or a ``redis-server`` started here), to a scripted provider
that bills the way the real one does:

* ``n10``: ``params={"n": 10}``, ten completions billed per call;
* ``image``: a 1024x1024 PNG (``detail: "high"``, 765 tokens, OpenAI's worked
  example) and an image URL of the same size (the layer cannot see its size);
* ``ignores_max_tokens``: a provider that answers 300 tokens whatever the cap;
* ``tools``: three tool definitions on Claude, billed with Anthropic's
  346-token tool-use system prompt;
* ``cache_write``: a ``cache_control`` breakpoint on Claude, the prefix billed
  as a cache write (1.25x the input rate).

Runners: threads, asyncio and four real processes (``spawn``). A run reports
the limit, what the account really spent, the most one call cost, and whether
the invariant held. :func:`run_budget_scenarios` runs them all, bounded in time.
"""

from __future__ import annotations

import asyncio
import base64
import multiprocessing as mp
import queue
import struct
import tempfile
import threading
import time
import uuid
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Any

from tokenlean.bench._servers import redis_server
from tokenlean.budget import Budget, BudgetLayer, RedisBudgetStore, SQLiteBudgetStore
from tokenlean.core import (
    BudgetExceeded,
    FunctionProvider,
    Message,
    ModelPrice,
    Pipeline,
    PriceTable,
    Request,
    Response,
    Usage,
    count_messages,
)

__all__ = ["SCENARIOS", "run_budget_scenarios", "run_scenario"]

# list prices (USD per million tokens) of the two models the scenarios use
PRICES = PriceTable(overrides={
    "gpt-4o": ModelPrice(input_per_mtok=Decimal("2.50"), output_per_mtok=Decimal("10.00"),
                         cached_input_per_mtok=Decimal("1.25")),
    "claude-sonnet-4": ModelPrice(input_per_mtok=Decimal(3), output_per_mtok=Decimal(15),
                                  cached_input_per_mtok=Decimal("0.30"),
                                  cache_write_per_mtok=Decimal("3.75")),
})
IMAGE_1024_HIGH = 765  # OpenAI: a 1024x1024 image at detail "high" is 4 tiles: 85 + 4 * 170
ANTHROPIC_TOOL_PROMPT = 346  # Anthropic: tool-use system prompt, Claude Sonnet 4, tool_choice auto
IGNORED_CAP_ANSWER = 300  # what the cap-ignoring provider answers, whatever max_tokens says
CALL_DELAY_S = 0.2


def png(width: int, height: int) -> bytes:
    """A valid all-black greyscale PNG of the given size."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    rows = b"".join(b"\x00" + bytes(width) for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows, 9))
            + chunk(b"IEND", b""))


@lru_cache(maxsize=1)
def _png_url() -> str:
    return "data:image/png;base64," + base64.b64encode(png(1024, 1024)).decode()


def _tools() -> tuple[dict[str, Any], ...]:
    def tool(name: str, what: str, fields: dict[str, str]) -> dict[str, Any]:
        props = {k: {"type": "string", "description": v} for k, v in fields.items()}
        return {"type": "function", "function": {
            "name": name, "description": what,
            "parameters": {"type": "object", "properties": props, "required": list(fields)}}}

    return (tool("get_weather", "Current weather for a city", {"city": "City name"}),
            tool("get_time", "Local time in a time zone", {"tz": "IANA time zone name"}),
            tool("search_flights", "Flights between two airports on a day",
                 {"origin": "IATA code", "destination": "IATA code", "date": "YYYY-MM-DD"}))


_POLICY = " ".join(f"Rule {i}: answer politely, cite the handbook section, never guess."
                   for i in range(120))


def _n10(i: int) -> Request:
    return Request(messages=(Message(role="user", content=f"Question {i}: name a colour."),),
                   model="gpt-4o", max_tokens=60, params={"n": 10}, tenant="bench")


def _image(i: int) -> Request:
    parts = ({"type": "text", "text": f"Question {i}: what is in these pictures?"},
             {"type": "image_url", "image_url": {"url": _png_url(), "detail": "high"}},
             {"type": "image_url", "image_url": {"url": "https://example.com/cat-1024.png"}})
    return Request(messages=(Message(role="user", content=parts),), model="gpt-4o",
                   max_tokens=20, tenant="bench")


def _ignores(i: int) -> Request:
    return Request(messages=(Message(role="user", content=f"Question {i}: tell me a story."),),
                   model="gpt-4o", max_tokens=100, tenant="bench")


def _tools_request(i: int) -> Request:
    return Request(messages=(Message(role="user", content=f"Question {i}: weather in Oslo?"),),
                   model="claude-sonnet-4", provider="anthropic", max_tokens=40,
                   tools=_tools(), tenant="bench")


def _cache_write(i: int) -> Request:
    system = Message(role="system", content=({"type": "text", "text": _POLICY,
                                              "cache_control": {"type": "ephemeral"}},))
    return Request(messages=(system, Message(role="user", content=f"Question {i}: refunds?")),
                   model="claude-sonnet-4", provider="anthropic", max_tokens=20, tenant="bench")


def _text_prompt(request: Request) -> int:
    return count_messages(request.messages, model=request.model, tools=request.tools).tokens


def _bill(scenario: str, request: Request) -> Usage:
    """What the scripted provider bills for ``request`` (as sent, after the layer)."""
    cap = request.output_cap or 4096
    prompt = _text_prompt(request)
    if scenario == "n10":
        return Usage(input_tokens=prompt, output_tokens=min(cap, 200) * int(request.params["n"]))
    if scenario == "image":  # both images are 1024x1024: the provider sees their size
        return Usage(input_tokens=prompt + 2 * IMAGE_1024_HIGH, output_tokens=min(cap, 200))
    if scenario == "ignores_max_tokens":
        return Usage(input_tokens=prompt, output_tokens=IGNORED_CAP_ANSWER)
    if scenario == "tools":
        return Usage(input_tokens=prompt + ANTHROPIC_TOOL_PROMPT, output_tokens=min(cap, 200))
    if scenario == "cache_write":
        prefix = count_messages(request.messages[:1], model=request.model).tokens
        return Usage(input_tokens=prompt, cache_write_tokens=prefix, output_tokens=min(cap, 200))
    raise ValueError(f"unknown scenario {scenario!r}")


SCENARIOS: dict[str, Callable[[int], Request]] = {
    "n10": _n10, "image": _image, "ignores_max_tokens": _ignores, "tools": _tools_request,
    "cache_write": _cache_write}


def _cost_nano(request: Request, usage: Usage) -> int:
    cost = PRICES.price(usage, model=request.model, provider=request.provider)
    assert cost is not None  # both models are in PRICES
    return int(cost.total_usd * 1_000_000_000)


def _provider(scenario: str) -> FunctionProvider:
    def answer(request: Request) -> Response:
        usage = _bill(scenario, request)
        return Response(text="ok " * 5, usage=usage, model=request.model)

    def complete(request: Request) -> Response:
        time.sleep(CALL_DELAY_S)
        return answer(request)

    async def acomplete(request: Request) -> Response:
        await asyncio.sleep(CALL_DELAY_S)
        return answer(request)

    return FunctionProvider(complete, afunc=acomplete, name=f"scripted-{scenario}")


@dataclass(frozen=True, slots=True)
class StoreSpec:
    """Where the budget lives: ``("sqlite", path)`` or ``("redis", url)``, and a fresh prefix."""

    kind: str
    where: str
    prefix: str

    def open(self) -> Any:
        if self.kind == "sqlite":
            return SQLiteBudgetStore(self.where)
        return RedisBudgetStore(url=self.where, prefix=self.prefix)


def _budget(limit_nano: int) -> Budget:
    return Budget(name="pool", max_usd=Decimal(limit_nano) / 1_000_000_000, scope="global",
                  period="total")


def _pipeline(scenario: str, store: Any, limit_nano: int) -> Pipeline:
    layer = BudgetLayer(budgets=[_budget(limit_nano)], store=store, prices=PRICES)
    return Pipeline(provider=_provider(scenario), layers=[layer], prices=PRICES,
                    layer_time_budget_s=None)


def _one(pipe: Pipeline, request: Request) -> int | None:
    """One call: its billed cost in nano-dollars, None when the budget refused it."""
    try:
        result = pipe.run(request)
    except BudgetExceeded:
        return None
    return _cost_nano(result.request, result.response.usage)


async def _aone(pipe: Pipeline, request: Request) -> int | None:
    try:
        result = await pipe.arun(request)
    except BudgetExceeded:
        return None
    return _cost_nano(result.request, result.response.usage)


def _threads(pipe: Pipeline, requests: list[Request]) -> list[int | None]:
    out: list[int | None] = [None] * len(requests)
    barrier = threading.Barrier(len(requests))

    def work(index: int) -> None:
        barrier.wait()
        out[index] = _one(pipe, requests[index])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(requests))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


async def _gather(pipe: Pipeline, requests: list[Request]) -> list[int | None]:
    return list(await asyncio.gather(*(_aone(pipe, r) for r in requests)))


def _process_main(scenario: str, spec: StoreSpec, limit_nano: int, first: int, count: int,
                  barrier: Any, results: Any) -> None:
    store = spec.open()
    try:
        pipe = _pipeline(scenario, store, limit_nano)
        requests = [SCENARIOS[scenario](first + i) for i in range(count)]
        barrier.wait()
        results.put(_threads(pipe, requests))
    finally:
        store.close()


def _processes(scenario: str, spec: StoreSpec, limit_nano: int, calls: int,
               processes: int = 4) -> list[int | None]:
    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(processes), ctx.Queue()
    share = calls // processes
    procs = [ctx.Process(target=_process_main, args=(scenario, spec, limit_nano, p * share,
                                                     share, barrier, results))
             for p in range(processes)]
    for proc in procs:
        proc.start()
    out: list[int | None] = []
    deadline, got = time.monotonic() + 120, 0
    try:
        while got < processes and time.monotonic() < deadline:
            try:
                out.extend(results.get(timeout=0.5))
                got += 1
            except queue.Empty:
                if not any(proc.is_alive() for proc in procs):
                    break
    finally:
        for proc in procs:
            proc.join(timeout=30)
            if proc.is_alive():
                proc.kill()
    if got < processes or any(proc.exitcode != 0 for proc in procs):
        raise RuntimeError(f"a budget scenario process failed: {[p.exitcode for p in procs]}")
    return out


def run_scenario(scenario: str, runner: str, spec: StoreSpec, *, calls: int = 24,
                 affordable: int = 12) -> dict[str, Any]:
    """Run ``calls`` concurrent calls of ``scenario`` against a budget that affords
    ``affordable`` of them (at what the provider bills), with ``runner`` ("threads",
    "asyncio" or "processes"); report spend against the limit."""
    if scenario not in SCENARIOS or runner not in ("threads", "asyncio", "processes"):
        raise ValueError(f"unknown scenario or runner: {scenario!r}, {runner!r}")
    probe = SCENARIOS[scenario](0)
    limit_nano = affordable * _cost_nano(probe, _bill(scenario, probe))
    started = time.perf_counter()
    if runner == "processes":
        costs = _processes(scenario, spec, limit_nano, calls)
    else:
        store = spec.open()
        try:
            pipe = _pipeline(scenario, store, limit_nano)
            requests = [SCENARIOS[scenario](i) for i in range(calls)]
            costs = _threads(pipe, requests) if runner == "threads" else \
                asyncio.run(_gather(pipe, requests))
        finally:
            store.close()
    store = spec.open()
    try:
        key = _budget(limit_nano).key(probe)
        assert key is not None
        account = store.accounts([key])[key]
    finally:
        store.close()
    done = [c for c in costs if c is not None]
    largest = max(done, default=0)
    return {
        "scenario": scenario, "runner": runner, "store": spec.kind,
        "limit_usd": limit_nano / 1e9, "spent_usd": account.spent_nano / 1e9,
        "largest_call_usd": largest / 1e9, "ratio": round(account.spent_nano / limit_nano, 3),
        "holds": account.spent_nano <= limit_nano + largest,
        "reserved_left_usd": account.reserved_nano / 1e9,
        "calls_ok": len(done), "calls_refused": len(costs) - len(done),
        "seconds": round(time.perf_counter() - started, 2),
    }


def _plan(quick: bool) -> list[tuple[str, str]]:
    runners = ("threads", "asyncio", "processes")
    if quick:  # every scenario once, the runners taking turns
        return [(s, runners[i % 3]) for i, s in enumerate(SCENARIOS)]
    return [(s, r) for s in SCENARIOS for r in runners]


def run_budget_scenarios(quick: bool) -> dict[str, Any]:
    """Every scenario on the SQLite store and, when ``redis-server`` is on PATH, on the
    Redis store. ``quick``: each scenario with one runner (under 30 s); else every
    runner (under 3 minutes)."""
    runs: list[dict[str, Any]] = []
    skipped: dict[str, str] = {}
    calls = 16 if quick else 24
    with tempfile.TemporaryDirectory(prefix="tokenlean-budget-bench-") as tmp:
        for scenario, runner in _plan(quick):
            spec = StoreSpec("sqlite", str(Path(tmp) / f"{uuid.uuid4().hex}.sqlite"), "")
            runs.append(run_scenario(scenario, runner, spec, calls=calls))
    with redis_server() as redis:
        if redis is None:
            skipped["redis"] = "redis-server is not on PATH"
        else:
            for scenario, runner in _plan(quick):
                spec = StoreSpec("redis", redis.url, f"bench:{uuid.uuid4().hex}:")
                runs.append(run_scenario(scenario, runner, spec, calls=calls))
    return {
        "budget_overspend_max_ratio": max(r["ratio"] for r in runs),
        "budget_invariant_holds": all(r["holds"] for r in runs),
        "scenarios": runs,
        "skipped": skipped,
    }
