"""Our server under 16 concurrent streaming clients that randomly hang up.

A bounded soak over real HTTP (server in this process, tiny model): clients
stream chat completions with random lengths, tenants and temperatures; about a
third of them disconnect mid-stream (or right after the headers). Checked:

* every stream a client read to the end is well formed: role chunk, content,
  one finish chunk, a usage chunk whose ``completion_tokens`` fits the request,
  ``[DONE]``; no error event, no non-200 status;
* the server cancels the abandoned sequences and drains (queue and active
  sequences back to 0);
* no leaks: open file descriptors (``/proc/self/fd``), threads and RSS measured
  at two quiet points -- after a warm-up round and after the soak -- grow by at
  most a small bound (counts and bytes, never timings).

The default run soaks ~30 s; ``-m soak`` selects the 5-minute variant.
"""

from __future__ import annotations

import gc
import json
import os
import random
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

CLIENTS = 16
MODEL = "gpt-4o-mini"  # an alias of the tiny model


@dataclass
class Tally:
    completed: int = 0
    disconnected: int = 0
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, kind: str, detail: str = "") -> None:
        with self.lock:
            if kind == "error":
                self.errors.append(detail)
            elif kind == "completed":
                self.completed += 1
            else:
                self.disconnected += 1


def _check_stream(lines: list[str], max_tokens: int) -> str:
    """'' when the SSE stream read to its end is well formed, else what is wrong."""
    events = [line[6:] for line in lines if line.startswith("data: ")]
    if not events or events[-1] != "[DONE]":
        return f"stream did not end with [DONE]: {events[-2:]!r}"
    chunks = [json.loads(e) for e in events[:-1]]
    if any("error" in c for c in chunks):
        return f"error event: {chunks!r}"
    finishes = [c["choices"][0]["finish_reason"] for c in chunks
                if c.get("choices") and c["choices"][0].get("finish_reason")]
    usage = [c["usage"] for c in chunks if c.get("usage") and not c.get("choices")]
    if len(finishes) != 1 or finishes[0] not in ("stop", "length") or len(usage) != 1:
        return f"finish {finishes!r}, usage {usage!r}"
    if not 0 < usage[0]["completion_tokens"] <= max_tokens:
        return f"completion_tokens {usage[0]['completion_tokens']} for max_tokens {max_tokens}"
    return ""


def _client(url: str, seed: int, stop_at: float, tally: Tally) -> None:
    rng = random.Random(seed)
    with httpx.Client(base_url=url, timeout=60) as http:
        while time.monotonic() < stop_at:
            max_tokens = rng.randint(2, 40)
            body = {"model": MODEL, "max_tokens": max_tokens, "stream": True,
                    "stream_options": {"include_usage": True},
                    "temperature": rng.choice([0, 0.7, 1.0]),
                    "messages": [{"role": "user",
                                  "content": f"question {rng.randint(0, 50)}: tell me a story"}]}
            hang_up = rng.random() < 0.33
            hang_after = rng.randint(0, 6)  # lines read before hanging up (0: after headers)
            try:
                with http.stream("POST", "/v1/chat/completions", json=body,
                                 headers={"x-tokenlean-tenant": f"t{rng.randint(0, 3)}"}) as r:
                    if r.status_code != 200:
                        tally.add("error", f"HTTP {r.status_code}: {r.read()[:200]!r}")
                        continue
                    lines: list[str] = []
                    for line in r.iter_lines():
                        if hang_up and len(lines) >= hang_after:
                            break  # leaving the block closes the connection mid-stream
                        if line:
                            lines.append(line)
                    if hang_up and len(lines) >= hang_after:
                        tally.add("disconnected")
                        continue
                problem = _check_stream(lines, max_tokens)
                tally.add("error" if problem else "completed", problem)
            except httpx.HTTPError as exc:
                tally.add("error", f"{type(exc).__name__}: {exc}")


def _round(url: str, seconds: float, seed: int) -> Tally:
    tally = Tally()
    stop_at = time.monotonic() + seconds
    threads = [threading.Thread(target=_client, args=(url, seed * 100 + i, stop_at, tally))
               for i in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(seconds + 120)
    assert not any(t.is_alive() for t in threads), "a client hung"
    return tally


def _metric(url: str, name: str) -> float:
    text = httpx.get(url + "/metrics").text
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
    return float(match.group(1)) if match else 0.0


def _drained(url: str) -> None:
    deadline = time.monotonic() + 60
    while (_metric(url, "tokenlean_server_queue_depth")
           or _metric(url, "tokenlean_server_active_sequences")):
        assert time.monotonic() < deadline, "the server did not drain after the clients left"
        time.sleep(0.1)


def _resources() -> dict[str, int]:
    gc.collect()
    with open("/proc/self/statm") as f:
        rss_pages = int(f.read().split()[1])
    return {"fds": len(os.listdir("/proc/self/fd")), "threads": threading.active_count(),
            "native_threads": len(os.listdir("/proc/self/task")),
            "rss_mb": rss_pages * os.sysconf("SC_PAGE_SIZE") // 2**20}


@pytest.fixture(scope="module")
def soak_server(tiny_model: tuple[Any, Any]) -> Any:
    from tokenlean.server import Engine, PrefixCache, ServerThread, create_app

    model, tokenizer = tiny_model
    engine = Engine(model, tokenizer, max_batch=8, max_queue=32,
                    prefix_cache=PrefixCache(capacity_tokens=4096))
    app = create_app(engine, model_name="tiny-llama", aliases=[MODEL], default_max_tokens=16)
    with ServerThread(app) as server:
        yield server


@pytest.mark.server
@pytest.mark.parametrize("seconds", [30, pytest.param(300, marks=pytest.mark.soak)])
def test_streaming_clients_with_disconnects(soak_server: Any, seconds: int,
                                           request: pytest.FixtureRequest) -> None:
    if seconds > 30 and "soak" not in (request.config.getoption("markexpr") or ""):
        pytest.skip("the long soak runs only when selected: pytest -m soak")
    url = soak_server.url
    cancelled = 'tokenlean_server_finished_total{reason="cancelled"}'
    warm = _round(url, max(6, seconds // 5), seed=1)  # warm-up: pools, caches, allocator
    _drained(url)
    before, cancelled_before = _resources(), _metric(url, cancelled)
    tally = _round(url, seconds, seed=2)
    _drained(url)
    after = _resources()

    print(json.dumps({"seconds": seconds, "completed": tally.completed,  # shown with -s
                      "disconnected": tally.disconnected, "before": before, "after": after}))
    assert warm.errors == [] and tally.errors == [], (warm.errors + tally.errors)[:5]
    assert tally.completed >= CLIENTS and tally.disconnected >= CLIENTS // 2, tally
    # hang-ups after the first chunk cancel their sequence on the server
    assert _metric(url, cancelled) > cancelled_before
    # quiet point to quiet point: nothing left open, no thread or memory creep
    assert after["fds"] <= before["fds"] + 4, (before, after)
    assert after["threads"] <= before["threads"] + 2, (before, after)
    assert after["native_threads"] <= before["native_threads"] + 4, (before, after)
    assert after["rss_mb"] <= before["rss_mb"] + max(48, before["rss_mb"] // 10), (before, after)
