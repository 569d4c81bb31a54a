"""Invariant 3(b) of issue 18: a sampled call is never answered from the cache
unless the user opts in with ``cache_sampled=True``.

A call is *sampled* when its temperature is above 0 or unknown (``None``: the
provider's default, 1.0 for OpenAI and Anthropic) and it has no seed. Checked for
every preset through :func:`tokenlean.core.presets.build_layers` (what every
``lean()`` builds its layers with); for every adapter (LangChain ``lean``, its
agent middleware, LlamaIndex ``lean``) in ``tests/conformance/test_sampled_calls.py``.
"""

from __future__ import annotations

from typing import Any

import pytest

from tokenlean.core import ConfigError, FunctionProvider, Pipeline, Request, Response, Usage
from tokenlean.core.presets import PRESETS, build_layers

CACHED_PRESETS = sorted(p for p, layers in PRESETS.items() if layers["cache"])


class Counting:
    """A model that answers every call differently (as sampling does) and counts calls."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, request: Request) -> Response:
        self.calls += 1
        return Response(text=f"joke number {self.calls}", model=request.model,
                        usage=Usage(input_tokens=20, output_tokens=5))


def ask(text: str, **settings: Any) -> Request:
    return Request(messages=[{"role": "user", "content": text}], model="gpt-4o-mini",
                   **settings)


def run_three(preset: str, requests: list[Request], **options: Any) -> tuple[Counting, list]:
    model = Counting()
    pipe = Pipeline(provider=FunctionProvider(model, name="counting"),
                    layers=build_layers(preset=preset, **options))
    return model, [pipe.run(r) for r in requests]


@pytest.mark.parametrize("preset", sorted(PRESETS))
@pytest.mark.parametrize("settings", [{"temperature": 1.2}, {}, {"temperature": 0.3, "top_p": 0.9}],
                         ids=["temperature-1.2", "temperature-unknown", "temperature-0.3"])
def test_a_sampled_call_is_never_served_from_the_cache(preset: str, settings: dict) -> None:
    """Repeats and a paraphrase (a semantic candidate under max-savings) all reach the model."""
    texts = ["Tell me a joke.", "Tell me a joke.", "tell me a joke"]
    model, results = run_three(preset, [ask(text, **settings) for text in texts])
    assert [r.response.cached for r in results] == [False, False, False]
    assert model.calls == 3
    assert len({r.response.text for r in results}) == 3  # three jokes, not one joke thrice


@pytest.mark.parametrize("preset", CACHED_PRESETS)
def test_an_unsampled_call_is_still_served(preset: str) -> None:
    """The control: temperature 0, or a seed, is a repeatable call the cache answers."""
    for settings in ({"temperature": 0.0}, {"temperature": 1.0, "seed": 7}):
        model, results = run_three(preset, [ask("Tell me a joke.", **settings)] * 3)
        assert [r.response.cached for r in results] == [False, True, True], settings
        assert model.calls == 1


@pytest.mark.parametrize("preset", CACHED_PRESETS)
def test_cache_sampled_opts_in(preset: str) -> None:
    model, results = run_three(preset, [ask("Tell me a joke.", temperature=1.2)] * 3,
                               cache_sampled=True)
    assert [r.response.cached for r in results] == [False, True, True]
    assert model.calls == 1


def test_cache_sampled_without_a_cache_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="cache_sampled=True needs a cache"):
        build_layers(preset="off", cache_sampled=True)
    with pytest.raises(ConfigError, match="cache_sampled=True needs a cache"):
        build_layers(cache=False, cache_sampled=True)


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_the_record_says_why_a_sampled_answer_was_not_cached(preset: str) -> None:
    _, results = run_three(preset, [ask("Tell me a joke.", temperature=1.2)])
    reports = {r.layer: r for r in results[0].record.layers}
    if PRESETS[preset]["cache"]:
        assert reports["cache"].detail["not_cached"] == "sampled"
    else:
        assert "cache" not in reports
