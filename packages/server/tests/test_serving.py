"""Batching, queue bound, disconnects and the prefix cache, observed over real HTTP."""

from __future__ import annotations

import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import openai

from tokenlean.server import ServerThread

MODEL = "tiny-llama"


def metric(server: ServerThread, name: str) -> float:
    text = httpx.get(server.url + "/metrics").text
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
    return float(match.group(1)) if match else 0.0


def wait_for(predicate: Any, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.05)


def test_concurrent_requests_match_sequential(server: ServerThread) -> None:
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="local", max_retries=0)
    questions = [f"Question {i}: what is {i} plus {i}?" for i in range(8)]

    def ask(q: str) -> str:
        out = client.chat.completions.create(model=MODEL, max_tokens=8, temperature=0,
                                             messages=[{"role": "user", "content": q}])
        return out.choices[0].message.content or ""

    one_by_one = [ask(q) for q in questions]
    with ThreadPoolExecutor(8) as pool:
        together = list(pool.map(ask, questions))
    assert together == one_by_one


def test_full_queue_answers_429_and_disconnect_cancels(make_server: Any, tiny: Any) -> None:
    # Each model step takes >= 10 ms, so the 400-token stream holds the only slot for
    # seconds whatever the machine: without it a fast CPU finishes the stream inside the
    # queued request's 0.5 s timeout and the test measures the machine, not the queue.
    slow = tiny[0].register_forward_pre_hook(lambda *_: time.sleep(0.01))
    with slow, make_server(max_batch=1, max_queue=1) as server:
        client = openai.OpenAI(base_url=server.url + "/v1", api_key="local", max_retries=0)
        messages = [{"role": "user", "content": "Tell me a long story."}]
        long = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=400,
                                              temperature=0, stream=True)
        next(iter(long))  # the first chunk: this request holds the only batch slot
        cancelled = 'tokenlean_server_finished_total{reason="cancelled"}'
        before = metric(server, cancelled)
        # a queued non-streaming request whose client gives up is dropped from the queue
        with httpx.Client(timeout=0.5) as raw:
            try:
                raw.post(server.url + "/v1/chat/completions", json={
                    "model": MODEL, "messages": messages, "max_tokens": 3})
                raise AssertionError("the slot is taken: this request cannot finish")
            except httpx.TimeoutException:
                pass
        wait_for(lambda: metric(server, cancelled) == before + 1)
        waiting: list[Any] = []
        waiter = threading.Thread(target=lambda: waiting.append(client.chat.completions.create(
            model=MODEL, messages=messages, max_tokens=3, temperature=0)))
        waiter.start()
        wait_for(lambda: metric(server, "tokenlean_server_queue_depth") == 1)
        try:
            client.chat.completions.create(model=MODEL, messages=messages, max_tokens=3)
            raise AssertionError("a third request must be refused")
        except openai.RateLimitError as exc:
            assert "busy" in exc.message
        long.close()  # the streaming client goes away mid-stream
        wait_for(lambda: metric(server, cancelled) == before + 2)
        waiter.join(60)
        assert waiting and waiting[0].usage.completion_tokens == 3
        assert metric(server, "tokenlean_server_completion_tokens_total") < 400
        wait_for(lambda: httpx.get(server.url + "/health").json()["active_sequences"] == 0)
