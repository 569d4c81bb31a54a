"""Deliverable 6 of issue 18: every layer of every preset does work linear in the
size of the prompt.

Work is counted, not timed: the number of Python lines a layer's ``process``
executes (``sys.settrace``), on a prompt and on one four times longer. Linear
work grows about fourfold; the quadratic span check the templates layer had
grew sixteenfold. Time per call is measured by ``tokenlean bench overhead``
(docs/benchmarks/integrations.md), not here.
"""

from __future__ import annotations

import random
import sys
from collections.abc import Callable
from typing import Any

import pytest

from tokenlean.core import Message, Request
from tokenlean.core.presets import PRESETS, build_layers

GROWTH = 4
# linear work grows by GROWTH; allow for fixed costs that do not grow and for the
# logarithmic factors of sorting; a quadratic step grows by GROWTH ** 2
LINEAR_LIMIT = GROWTH * 1.5


def numbered_sentences(chars: int) -> str:
    """A RAG context of numbered sentences full of numbers, dates and percentages."""
    rng, lines, i = random.Random(1), [], 0
    while sum(map(len, lines)) < chars:
        i += 1
        lines.append(f"{i}. In {rng.randint(1900, 2024)} site {rng.randint(1, 50)} measured "
                     f"{rng.randint(1, 999)}.{rng.randint(0, 99)} units, up {rng.randint(1, 90)}% "
                     f"since {rng.randint(1, 12)}/{rng.randint(1, 28)}.")
    return "\n".join(lines)


def csv_rows(chars: int) -> str:
    rng, rows, i = random.Random(2), ["id,date,region,units,price,discount,notes"], 0
    while sum(map(len, rows)) < chars:
        i += 1
        rows.append(f"{i},2024-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d},"
                    f"{rng.choice(['north', 'south', 'east', 'west'])},{rng.randint(1, 500)},"
                    f"{rng.randint(1, 9999) / 100},{rng.randint(0, 30)}%,"
                    f"\"batch {rng.randint(100, 999)}\"")
    return "\n".join(rows)


def code(chars: int) -> str:
    rng, parts, i = random.Random(3), [], 0
    while sum(map(len, parts)) < chars:
        i += 1
        parts.append(
            f"def handler_{i}(request, retries={rng.randint(1, 5)}):\n"
            f"    url = f\"https://api.example.com/v{rng.randint(1, 3)}/items/{{request.id}}\"\n"
            f"    data = {{'limit': {rng.randint(1, 100)}, 'page': request.page}}\n"
            f"    return client.get(url, params=data, timeout={rng.randint(1, 30)}.0)\n")
    return "```python\n" + "\n".join(parts) + "```"


def prose(chars: int) -> str:
    rng, words = random.Random(4), []
    vocabulary = ("the committee must review each proposal and never approve a budget "
                  "without a second reading please note that members should always "
                  "attend").split()
    while sum(map(len, words)) + len(words) < chars:
        words.append(rng.choice(vocabulary))
        if rng.random() < 0.08:
            words[-1] += "."
    return " ".join(words)


CONTEXTS: dict[str, Callable[[int], str]] = {
    "numbered": numbered_sentences, "csv": csv_rows, "code": code, "prose": prose}
BASE_CHARS = 3_000


def python_steps(call: Callable[[], Any]) -> int:
    """Python lines executed by ``call()`` (in every function it calls)."""
    steps = 0

    def trace(frame: Any, event: str, arg: Any) -> Any:
        nonlocal steps
        if event == "line":
            steps += 1
        return trace

    old = sys.gettrace()
    sys.settrace(trace)
    try:
        call()
    finally:
        sys.settrace(old)
    return steps


def request(context: str, placement: str) -> Request:
    question = "What changed, and by how much?"
    if placement == "system":
        messages = [Message(role="system", content="Answer from this context:\n" + context),
                    Message(role="user", content=question)]
    else:
        messages = [Message(role="user", content=f"{context}\n\n{question}")]
    return Request(messages=messages, model="gpt-4o", temperature=0)


LAYERS = sorted({(preset, name) for preset, layers in PRESETS.items()
                 for name, choice in layers.items() if choice})


@pytest.mark.parametrize("kind", sorted(CONTEXTS))
@pytest.mark.parametrize("placement", ["system", "user"])
@pytest.mark.parametrize(("preset", "layer_name"), LAYERS)
def test_each_layer_does_linear_work_in_the_prompt(preset: str, layer_name: str, kind: str,
                                                   placement: str) -> None:
    (layer,) = [layer for layer in build_layers(preset=preset) if layer.name == layer_name]
    small = request(CONTEXTS[kind](BASE_CHARS), placement)
    large = request(CONTEXTS[kind](BASE_CHARS * GROWTH), placement)
    layer.process(request(CONTEXTS[kind](200), placement))  # load models, fill caches
    steps_small = python_steps(lambda: layer.process(small))
    steps_large = python_steps(lambda: layer.process(large))
    growth = steps_large / max(steps_small, 1)
    assert growth < LINEAR_LIMIT, (
        f"{preset}/{layer_name} on {kind} ({placement}): {steps_small} Python steps at "
        f"{BASE_CHARS} chars, {steps_large} at {BASE_CHARS * GROWTH} (x{growth:.1f})")
