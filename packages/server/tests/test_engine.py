"""The engine decodes batched exactly as one by one, and a prefix hit changes nothing."""

from __future__ import annotations

import queue
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import torch

from tokenlean.core import ConfigError, InvalidRequestError
from tokenlean.server import (
    Delta,
    Engine,
    Finished,
    PrefixCache,
    QueueFull,
    SamplingParams,
    Started,
)

GREEDY = SamplingParams(max_tokens=10, temperature=0)
TEXTS = ["Hello there, how are you doing today?", "The quick brown fox", "a",
         "Once upon a time in a land far, far away, there lived a"]


def reference(model: Any, prompt: list[int], n: int, stop_ids: frozenset[int]) -> list[int]:
    """Greedy decoding without any cache: the ground truth."""
    ids, out = list(prompt), []
    with torch.no_grad():
        for _ in range(n):
            token = int(model(torch.tensor([ids])).logits[0, -1].argmax())
            out.append(token)
            if token in stop_ids:
                break
            ids.append(token)
    return out


def test_batched_equals_one_by_one_equals_reference(tiny: tuple[Any, Any]) -> None:
    model, tokenizer = tiny
    prompts = [tokenizer(t).input_ids for t in TEXTS] * 2
    with Engine(model, tokenizer, max_batch=8, prefix_cache=PrefixCache(capacity_tokens=0)) as e:
        alone = [e.generate(p, GREEDY) for p in prompts]
        with ThreadPoolExecutor(len(prompts)) as pool:
            together = list(pool.map(lambda p: e.generate(p, GREEDY), prompts))
        batched_steps = e.metrics.batch_size.collect()[0].samples
    for prompt, a, b in zip(prompts, alone, together, strict=True):
        ids = [t for t in reference(model, prompt, 10, e.stop_ids) if t not in e.stop_ids]
        assert a.text == b.text == tokenizer.decode(ids, skip_special_tokens=True)
        assert a.finish == b.finish
        assert a.finish.completion_tokens == 10 and a.finish.reason == "length"
    # some decode steps really ran more than one row
    total = {s.labels.get("le"): s.value for s in batched_steps if s.name.endswith("_bucket")}
    assert total["+Inf"] > total["1.0"]


def test_late_joiners_decode_like_alone(tiny: tuple[Any, Any]) -> None:
    """Rows that join a running batch (shorter and longer prompts) are padded correctly."""
    model, tokenizer = tiny
    long_params = SamplingParams(max_tokens=30, temperature=0)
    first = tokenizer(TEXTS[1]).input_ids
    others = [tokenizer(t).input_ids for t in (TEXTS[2], TEXTS[3], TEXTS[0])]
    with Engine(model, tokenizer, max_batch=4, prefix_cache=PrefixCache(capacity_tokens=0)) as e:
        expected_first = e.generate(first, long_params).text
        expected = [e.generate(p, GREEDY).text for p in others]
        events: queue.Queue = queue.Queue()
        e.submit(first, long_params, sink=events.put)
        while not isinstance(events.get(timeout=30), Delta):  # the first row is decoding
            pass
        results: list[Any] = [None] * len(others)

        def run(i: int) -> None:
            results[i] = e.generate(others[i], GREEDY)

        threads = [threading.Thread(target=run, args=(i,)) for i in range(len(others))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        parts = []
        while not isinstance(event := events.get(timeout=60), Finished):
            if isinstance(event, Delta):
                parts.append(event.text)
    assert [r.text for r in results] == expected
    assert expected_first.endswith("".join(parts))


def test_prefix_hit_gives_the_same_tokens(tiny: tuple[Any, Any]) -> None:
    model, tokenizer = tiny
    system = "You are a careful assistant. " * 12
    prompts = [tokenizer(system + q).input_ids for q in ("What is 2+2?", "Name a colour.")]
    with Engine(model, tokenizer, prefix_cache=PrefixCache(capacity_tokens=0)) as cold:
        expected = [cold.generate(p, GREEDY) for p in prompts]
    cache = PrefixCache(capacity_tokens=1024, block_size=16)
    with Engine(model, tokenizer, prefix_cache=cache) as warm:
        got = [warm.generate(p, GREEDY) for p in prompts]
        again = warm.generate(prompts[0], GREEDY)
    assert [g.text for g in got] == [x.text for x in expected]
    assert again.text == expected[0].text
    assert got[0].finish.cached_tokens == 0
    assert got[1].finish.cached_tokens >= 64  # the shared system prompt, block-aligned
    assert again.finish.cached_tokens >= len(prompts[0]) - 16
    assert cache.stats().hits == 2


def test_stop_sequence_cuts_the_text(tiny: tuple[Any, Any]) -> None:
    model, tokenizer = tiny
    prompt = tokenizer(TEXTS[0]).input_ids
    with Engine(model, tokenizer) as e:
        full = e.generate(prompt, SamplingParams(max_tokens=12, temperature=0)).text
        stop = full[len(full) // 2:len(full) // 2 + 3]
        cut = e.generate(prompt, SamplingParams(max_tokens=12, temperature=0, stop=(stop,)))
    assert stop and cut.text == full[:full.index(stop)]
    assert cut.finish.reason == "stop" and cut.finish.stop_sequence == stop


def test_seeded_sampling_repeats(tiny: tuple[Any, Any]) -> None:
    model, tokenizer = tiny
    prompt = tokenizer(TEXTS[3]).input_ids
    with Engine(model, tokenizer) as e:
        runs = [e.generate(prompt, SamplingParams(max_tokens=8, temperature=1.0, seed=s)).text
                for s in (7, 7, 8)]
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]


def test_queue_bound_and_cancel(tiny: tuple[Any, Any]) -> None:
    model, tokenizer = tiny
    prompt = tokenizer(TEXTS[0]).input_ids
    params = SamplingParams(max_tokens=400, temperature=0)
    engine = Engine(model, tokenizer, max_batch=1, max_queue=1)
    with engine:
        running: queue.Queue = queue.Queue()
        first = engine.submit(prompt, params, sink=running.put)
        assert isinstance(running.get(timeout=30), Started)  # occupies the only slot
        waiting: queue.Queue = queue.Queue()
        second = engine.submit(prompt, params, sink=waiting.put)  # waits in the queue
        with pytest.raises(QueueFull, match="busy"):
            engine.submit(prompt, params, sink=lambda e: None)
        second.cancel()
        first.cancel()
        while not isinstance(event := running.get(timeout=30), Finished):
            pass
        assert event.reason == "cancelled" and event.completion_tokens < 400
        assert isinstance(waiting.get(timeout=30), Finished)


def test_context_limit_and_bad_input(tiny: tuple[Any, Any]) -> None:
    model, tokenizer = tiny
    with Engine(model, tokenizer) as e:
        with pytest.raises(InvalidRequestError, match="context is 512 tokens"):
            e.submit([1] * 500, SamplingParams(max_tokens=20), sink=lambda ev: None)
        with pytest.raises(InvalidRequestError, match="empty"):
            e.submit([], SamplingParams(max_tokens=2), sink=lambda ev: None)
    with pytest.raises(InvalidRequestError):
        SamplingParams(max_tokens=0)
    with pytest.raises(ConfigError):
        Engine(model, tokenizer, max_batch=0)
