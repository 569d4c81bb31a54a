"""A miss is the call the app would have made: with no layer that rewrites the call
(``preset="off"``, or the default ``"safe"`` on prompts without extra whitespace) the
provider receives, byte for byte, the body it receives from the app without tokenlean,
and the app gets the same answer. Checked for every adapter, plain calls, tool calls
and structured output (the agent's tool and provider strategies; LlamaIndex's
``structured_predict``, which the wrapped OpenAI answers with a JSON-schema response
format)."""

from __future__ import annotations

from typing import Any

import pytest

KINDS = ("plain", "tools", "structured", "structured-provider")


@pytest.mark.parametrize("preset", ["off", "safe"])
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("mode", ["invoke", "stream"])
def test_a_miss_is_the_call_the_app_would_have_made(adapter: Any, kind: str, preset: str,
                                                    mode: str, scripted_openai: Any) -> None:
    if kind == "structured-provider" and adapter.name != "langchain-middleware":
        pytest.skip("the provider strategy is the agent's")
    if kind == "structured" and adapter.name == "langchain-lean":
        pytest.skip("lean().with_structured_output binds the schema as a forced tool "
                    "(LangChain's generic way); ChatOpenAI's own uses response_format")
    (bare,) = adapter(scripted_openai.url).run(mode=mode, kind=kind, raw=True)
    bare_bodies = list(scripted_openai.bodies)
    scripted_openai.bodies.clear()
    (leaned,) = adapter(scripted_openai.url).run(mode=mode, kind=kind, preset=preset,
                                                 ledger=False)
    assert scripted_openai.bodies == bare_bodies
    assert repr(leaned) == repr(bare)
