from __future__ import annotations

import hashlib
import re

import numpy as np
import pytest

from tokenlean.core import FunctionProvider, Request, Response, Usage


class CountingModel:
    """A provider that answers with a numbered reply and counts its calls."""

    def __init__(self, finish_reason: str = "stop") -> None:
        self.calls = 0
        self.finish_reason = finish_reason

    def __call__(self, request: Request) -> Response:
        self.calls += 1
        text = f"answer {self.calls} for tenant={request.tenant!r} to {request.last_user_text}"
        return Response(text=text,
                        finish_reason=self.finish_reason, model=request.model,
                        usage=Usage(input_tokens=30, output_tokens=12))

    def provider(self) -> FunctionProvider:
        return FunctionProvider(self, name="counting")


def bag_of_words(texts: list[str]) -> np.ndarray:
    """A tiny deterministic embedder (hashed bag of words) for store tests."""
    out = np.zeros((len(texts), 64), dtype=np.float32)
    for i, text in enumerate(texts):
        for word in re.findall(r"\w+", text.lower()):
            out[i, int(hashlib.md5(word.encode()).hexdigest(), 16) % 64] += 1.0
    return out


@pytest.fixture
def model() -> CountingModel:
    return CountingModel()


def _ask(text: str, *, tenant: str = "default", system: str | None = None, **kw) -> Request:
    messages = ([{"role": "system", "content": system}] if system else []) + [
        {"role": "user", "content": text}]
    kw.setdefault("temperature", 0.0)  # a repeatable call: sampled ones are never cached
    return Request(messages=messages, model=kw.pop("model", "gpt-4o-mini"), tenant=tenant, **kw)


@pytest.fixture
def ask():
    """Build a one-turn request: ask("text", tenant=..., system=..., temperature=...);
    temperature 0 unless given."""
    return _ask


@pytest.fixture
def bow():
    return bag_of_words
