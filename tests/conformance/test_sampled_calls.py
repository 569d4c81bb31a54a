"""Invariant 3(b) for every adapter and preset: a call that samples (temperature above
0, no seed) is never answered from the cache unless the app opts in with
``cache_sampled=True``; the answer's metadata says why it was not cached.

The issue's case: ``lean(ChatOpenAI(temperature=1.2))`` on the default preset
returned the same joke three times. Here the model samples at 1.2 with no seed and
is asked three times: all three calls must reach the provider.
"""

from __future__ import annotations

from typing import Any

import pytest

from tokenlean.core.presets import PRESETS

MODES = ("invoke", "ainvoke", "stream", "astream")
SAMPLED = {"temperature": 1.2, "seed": None}
CACHED_PRESETS = sorted(p for p, layers in PRESETS.items() if layers["cache"])


@pytest.mark.parametrize("preset", sorted(PRESETS))
@pytest.mark.parametrize("mode", MODES)
def test_a_sampling_model_is_asked_every_time(adapter: Any, preset: str, mode: str,
                                              scripted_openai: Any) -> None:
    adapter(scripted_openai.url).run(mode=mode, kind="plain", settings=SAMPLED, times=3,
                                     preset=preset, ledger=False)
    assert len(scripted_openai.bodies) == 3


@pytest.mark.parametrize("preset", CACHED_PRESETS)
def test_cache_sampled_lets_the_cache_answer_them(adapter: Any, preset: str,
                                                  scripted_openai: Any) -> None:
    adapter(scripted_openai.url).run(mode="invoke", kind="plain", settings=SAMPLED, times=3,
                                     preset=preset, cache_sampled=True, ledger=False)
    assert len(scripted_openai.bodies) == 1


def _langchain_reason(spec: Any, url: str, **lean_kwargs: Any) -> list[Any]:
    from langchain_tokenlean import lean

    chat = lean(spec.LangChainLean(url).chat("model", None, {**spec.SETTINGS, **SAMPLED}),
                ledger=False, **lean_kwargs)
    return [chat.invoke(spec.QUESTION).response_metadata["tokenlean"]["not_cached"]
            for _ in range(2)]


def _llamaindex_reason(spec: Any, url: str, **lean_kwargs: Any) -> list[Any]:
    from llama_index.core.base.llms.types import ChatMessage

    from llama_index.llms.tokenlean import lean

    llm = lean(spec.LlamaIndexLean(url).llm("model", None, {**spec.SETTINGS, **SAMPLED}),
               ledger=False, **lean_kwargs)
    return [llm.chat([ChatMessage(role="user", content=spec.QUESTION)])
            .additional_kwargs["tokenlean"]["not_cached"] for _ in range(2)]


@pytest.mark.parametrize("reason", [_langchain_reason, _llamaindex_reason],
                         ids=["langchain-lean", "llamaindex-lean"])
def test_the_answers_metadata_says_why_it_was_not_cached(reason: Any, spec: Any,
                                                         scripted_openai: Any) -> None:
    assert reason(spec, scripted_openai.url) == ["sampled", "sampled"]
    assert reason(spec, scripted_openai.url, cache_sampled=True)[0] is None  # stored
    assert reason(spec, scripted_openai.url, preset="off") == [None, None]  # no cache ran
