"""Invariant: a call is never answered from the cache entry of a call whose settings
differ in anything that changes the answer.

Two apps wrap models that differ in one setting (on the model, or on the call where
the framework takes per-call arguments) and share one exact cache; both ask the same
question. Each must reach the provider: its request carries the setting, so its
cache key differs. Seeds keep these calls deterministic, so the cache may serve
each of them again.
"""

from __future__ import annotations

from typing import Any

import pytest

from tokenlean.cache import ResponseCache

CHANGES = {"temperature": {"temperature": 1.5}, "top_p": {"top_p": 0.5},
           "stop": {"stop": ["STOP"]}, "seed": {"seed": 8}, "max_tokens": {"max_tokens": 40}}


@pytest.mark.parametrize("change", sorted(CHANGES))
def test_models_that_differ_in_one_setting_never_share_an_answer(
        adapter: Any, change: str, scripted_openai: Any) -> None:
    cache = ResponseCache(semantic=False)
    first = adapter(scripted_openai.url)
    first.run(mode="invoke", kind="plain", layers=[cache], ledger=False, times=2)
    assert len(scripted_openai.bodies) == 1  # the repeat was served from the cache
    first.run(mode="invoke", kind="plain", layers=[cache], ledger=False,
              settings=CHANGES[change])
    assert len(scripted_openai.bodies) == 2, f"a model with another {change} got its answer " \
        "from the cache"


def test_calls_that_differ_in_temperature_never_share_an_answer(adapter: Any,
                                                                  scripted_openai: Any) -> None:
    """The issue's case: ``chat(temperature=0)`` then ``chat(temperature=1.5)``."""
    if adapter.name == "langchain-middleware":
        pytest.skip("an agent's model call takes no per-call arguments")
    cache = ResponseCache(semantic=False)
    for temperature in (0.0, 1.5):
        adapter(scripted_openai.url).run(mode="invoke", kind="plain", layers=[cache],
                                         ledger=False, call={"temperature": temperature})
    assert [b["temperature"] for b in scripted_openai.bodies] == [0.0, 1.5]
