"""The real default model (SmolLM2-135M-Instruct via tokenlean.backend) behind the server."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tokenlean.server import (
    DEFAULT_MODEL_NAME,
    Engine,
    ServerThread,
    create_app,
    load_model,
    served_name,
)


@pytest.fixture(scope="module")
def smollm2(pytestconfig: pytest.Config) -> Iterator[tuple[Any, Any]]:
    """Converted from the GGUF once per checkout into pytest's cache (not the user's home)."""
    import torch

    torch.set_num_threads(1)
    home = pytestconfig.cache.mkdir("tokenlean-server-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TOKENLEAN_HOME", str(home))
        yield load_model()


@pytest.mark.slow
def test_smollm2_answers_over_openai_and_anthropic(smollm2: tuple[Any, Any]) -> None:
    import anthropic
    import openai

    model, tokenizer = smollm2
    assert served_name(None) == DEFAULT_MODEL_NAME
    app = create_app(Engine(model, tokenizer), model_name=DEFAULT_MODEL_NAME)
    question = [{"role": "user", "content": "What is the capital of France?"}]
    with ServerThread(app) as server:
        gpt = openai.OpenAI(base_url=server.url + "/v1", api_key="local", max_retries=0)
        out = gpt.chat.completions.create(model=DEFAULT_MODEL_NAME, messages=question,
                                          max_tokens=8, temperature=0)
        claude = anthropic.Anthropic(base_url=server.url, api_key="local", max_retries=0)
        msg = claude.messages.create(model=DEFAULT_MODEL_NAME, max_tokens=8, messages=question,
                                     extra_body={"temperature": 0})
    assert "Paris" in (out.choices[0].message.content or "")
    assert out.usage is not None and out.usage.completion_tokens <= 8
    assert msg.content[0].text == out.choices[0].message.content  # type: ignore[union-attr]
