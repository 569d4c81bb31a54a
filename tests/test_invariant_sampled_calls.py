"""Invariant 3(b) of issue 18: a sampled call is never answered from the cache
unless the user opts in with ``cache_sampled=True``.

A call is *sampled* when its temperature is above 0 or unknown (``None``: the
provider's default, 1.0 for OpenAI and Anthropic) and it has no seed. Checked for
every preset through :func:`tokenlean.core.presets.build_layers` (what every
``lean()`` builds its layers with), and for the LangChain and LlamaIndex
``lean()`` in front of a real OpenAI-compatible HTTP server.
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


# ---- the adapters, in front of a real OpenAI-compatible server -------------------------


def numbered_answers_app() -> Any:
    """A scripted OpenAI-compatible chat endpoint: every call gets a new answer."""
    from fastapi import FastAPI

    app = FastAPI()
    calls = [0]

    @app.post("/v1/chat/completions")
    async def complete(body: dict[str, Any]) -> dict[str, Any]:
        calls[0] += 1
        return {"id": f"chatcmpl-{calls[0]}", "object": "chat.completion", "created": 0,
                "model": body["model"],
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant",
                                         "content": f"joke number {calls[0]}"}}],
                "usage": {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15}}

    return app


@pytest.fixture(scope="module")
def chat_server() -> Any:
    from tokenlean.server import ServerThread

    with ServerThread(numbered_answers_app()) as server:
        yield server


def _langchain(server: Any, **lean_kwargs: Any) -> Any:
    from langchain_openai import ChatOpenAI

    from langchain_tokenlean import lean

    model = ChatOpenAI(model="gpt-4o-mini", base_url=server.url + "/v1", api_key="test",
                       temperature=1.2, max_retries=0)
    return lean(model, ledger=False, **lean_kwargs)


def _langchain_answers(lean_model: Any) -> list[tuple[str, bool, str | None]]:
    out = []
    for _ in range(3):
        message = lean_model.invoke("Tell me a joke.")
        meta = message.response_metadata["tokenlean"]
        out.append((message.text, meta["cached"], meta.get("not_cached")))
    return out


def _llamaindex(server: Any, **lean_kwargs: Any) -> Any:
    from llama_index.llms.openai_like import OpenAILike

    from llama_index.llms.tokenlean import lean

    model = OpenAILike(model="gpt-4o-mini", api_base=server.url + "/v1", api_key="test",
                       temperature=1.2, is_chat_model=True, max_retries=0)
    return lean(model, ledger=False, **lean_kwargs)


def _llamaindex_answers(lean_model: Any) -> list[tuple[str, bool, str | None]]:
    from llama_index.core.base.llms.types import ChatMessage

    out = []
    for _ in range(3):
        response = lean_model.chat([ChatMessage(role="user", content="Tell me a joke.")])
        meta = response.additional_kwargs["tokenlean"]
        out.append((response.message.content, meta["cached"], meta.get("not_cached")))
    return out


ADAPTERS = {"langchain": (_langchain, _langchain_answers),
            "llamaindex": (_llamaindex, _llamaindex_answers)}


@pytest.mark.parametrize("preset", sorted(PRESETS))
@pytest.mark.parametrize("adapter", sorted(ADAPTERS))
def test_lean_with_a_sampling_model_asks_the_model_every_time(chat_server: Any, adapter: str,
                                                              preset: str) -> None:
    build, answers = ADAPTERS[adapter]
    got = answers(build(chat_server, preset=preset))
    assert [cached for _, cached, _ in got] == [False, False, False]
    assert len({text for text, _, _ in got}) == 3
    # the answer's metadata says why it was not cached (where a cache ran)
    expected = "sampled" if PRESETS[preset]["cache"] else None
    assert [why for _, _, why in got] == [expected] * 3


@pytest.mark.parametrize("preset", CACHED_PRESETS)
@pytest.mark.parametrize("adapter", sorted(ADAPTERS))
def test_lean_cache_sampled_opts_in(chat_server: Any, adapter: str, preset: str) -> None:
    build, answers = ADAPTERS[adapter]
    got = answers(build(chat_server, preset=preset, cache_sampled=True))
    assert [cached for _, cached, _ in got] == [False, True, True]
    assert len({text for text, _, _ in got}) == 1
    assert got[0][2] is None  # stored
