import asyncio

import pytest

from tokenlean.core import (
    ConfigError,
    FunctionProvider,
    LayerNote,
    Message,
    Pipeline,
    Request,
    Response,
    Usage,
)
from tokenlean.templates import TemplateRewriter, TemplatesLayer

SYSTEM = ("I want you to act as a travel guide. Please suggest places to visit in order to "
          "help me. Do not write explanations. Do not use emojis.")
USER = "Please, I want you to act as a pirate."


def _request() -> Request:
    return Request(messages=(Message(role="system", content=SYSTEM),
                             Message(role="user", content=USER)), model="gpt-4o")


def _echo(seen: list[Request]) -> FunctionProvider:
    def complete(request: Request) -> Response:
        seen.append(request)
        return Response(text="ok", model=request.model,
                        usage=Usage(input_tokens=50, output_tokens=2))

    return FunctionProvider(complete)


def test_layer_rewrites_system_only_and_notes_passes():
    layer = TemplatesLayer(scorer=None)
    out = layer.process(_request())
    assert out.messages[0].text.startswith("Act as a travel guide. Suggest places")
    assert "Don't write explanations or use emojis." in out.messages[0].text
    assert out.messages[1].text == USER  # what the user typed is left alone
    note = out.notes[-1]
    assert isinstance(note, LayerNote) and note.layer == "templates"
    assert note.detail["passes"]["filler"] > 0
    assert note.quality == {}  # no scorer: no similarity claimed


def test_layer_in_pipeline_measures_saving(minilm):
    seen: list[Request] = []
    layer = TemplatesLayer(rewriter=TemplateRewriter(scorer=minilm))
    pipeline = Pipeline(provider=_echo(seen), layers=[layer])
    result = pipeline.run(_request())
    report = next(r for r in result.record.layers if r.layer == "templates")
    assert report.saved_input_tokens > 5
    assert 0.85 <= report.quality["similarity"] <= 1.0
    assert seen[0].messages[0].text != SYSTEM
    # memoised: the second call reuses the first rewrite
    assert layer.rewriter.cached(SYSTEM) is not None
    again = asyncio.run(pipeline.arun(_request()))
    assert next(r for r in again.record.layers if r.layer == "templates").saved_input_tokens \
        == report.saved_input_tokens


def test_whitespace_mode_and_unchanged_request_passes_through():
    layer = TemplatesLayer(mode="whitespace", scorer=None)
    request = Request(messages=(Message(role="system", content="Be brief."),), model="gpt-4o")
    assert layer.process(request) is request
    spaced = Request(messages=(Message(role="system", content="Be   brief.  "),), model="gpt-4o")
    assert layer.process(spaced).messages[0].text == "Be brief."


def test_layer_config_errors():
    with pytest.raises(ConfigError):
        TemplatesLayer(roles="system")
    with pytest.raises(ConfigError):
        TemplatesLayer(rewriter="x")  # type: ignore[arg-type]


def test_the_layer_rewrites_a_long_system_message_in_full_once_it_repeats():
    from tokenlean.templates import FIRST_SIGHT_MAX_CHARS

    class Scorer:
        name = "same"

        def __init__(self) -> None:
            self.calls = 0

        def similarities(self, pairs):
            self.calls += 1
            return [1.0 for _ in pairs]

    scorer = Scorer()
    layer = TemplatesLayer(mode="safe", scorer=scorer)
    system = SYSTEM + " Keep the list short." * (FIRST_SIGHT_MAX_CHARS // 20)
    request = Request(messages=(Message(role="system", content=system),
                                Message(role="user", content=USER)), model="gpt-4o")
    assert layer.process(request).messages[0].text == system and scorer.calls == 0
    rewritten = layer.process(request)
    assert rewritten.messages[0].text != system and scorer.calls == 1
