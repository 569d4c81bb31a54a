"""OpenAICompatibleProvider against tokenlean's own server over real HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from tokenlean.core import (
    BackendError,
    Message,
    OpenAICompatibleProvider,
    Pipeline,
    Request,
    SQLiteLedger,
)

pytestmark = pytest.mark.server


@pytest.fixture(scope="module")
def server_url() -> Iterator[str]:
    from tokenlean.server import DEFAULT_MODEL_NAME, Engine, ServerThread, create_app, load_model

    model, tokenizer = load_model()
    app = create_app(Engine(model, tokenizer), model_name=DEFAULT_MODEL_NAME)
    with ServerThread(app) as server:
        yield f"{server.url}/v1"


def req(text: str = "Name one primary colour.", model: str = "SmolLM2-135M-Instruct") -> Request:
    return Request(model=model, messages=[Message(role="user", content=text)], max_tokens=8,
                   temperature=0)


def test_complete_and_stream_agree_with_real_usage(server_url: str, tmp_path) -> None:
    provider = OpenAICompatibleProvider(base_url=server_url, name="local")
    whole = provider.complete(req())
    assert whole.text and whole.usage.input_tokens > 0
    assert 0 < whole.usage.output_tokens <= 8
    chunks = list(provider.stream(req()))
    assert chunks[-1].response is not None
    assert "".join(c.text for c in chunks) == chunks[-1].response.text == whole.text
    streamed = chunks[-1].response.usage
    assert (streamed.input_tokens, streamed.output_tokens) == (whole.usage.input_tokens,
                                                               whole.usage.output_tokens)
    # the repeat of the same prompt reuses the server's prefix KV cache, and says so
    assert streamed.cache_read_tokens > 0

    import warnings

    from tokenlean.core import TokenleanWarning

    ledger = SQLiteLedger(tmp_path / "l.sqlite")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TokenleanWarning)  # a local model has no public price
        result = Pipeline(provider=provider, ledger=ledger).run(req())
    assert result.response.text == whole.text
    booked = next(iter(ledger.records())).usage
    assert (booked.input_tokens, booked.output_tokens) == (whole.usage.input_tokens,
                                                           whole.usage.output_tokens)
    assert booked.cache_read_tokens > 0


def test_async_twins(server_url: str) -> None:
    provider = OpenAICompatibleProvider(base_url=server_url, name="local")

    async def go() -> tuple[str, str]:
        one = await provider.acomplete(req())
        text = ""
        async for chunk in provider.astream(req()):
            text += chunk.text
        return one.text, text

    one, streamed = asyncio.run(go())
    assert one == streamed != ""


def test_errors_name_the_backend(server_url: str) -> None:
    provider = OpenAICompatibleProvider(base_url=server_url, name="local")
    with pytest.raises(BackendError, match=r"\[local\] HTTP 404") as info:
        provider.complete(req(model="no-such-model"))
    assert info.value.status == 404 and info.value.backend == "local"
    closed = OpenAICompatibleProvider(base_url="http://127.0.0.1:9/v1", name="closed")
    with pytest.raises(BackendError, match="closed"):
        closed.complete(req())
    with pytest.raises(BackendError):
        list(closed.stream(req()))
