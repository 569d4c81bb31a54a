"""The real `openai` SDK against the real server over loopback HTTP."""

from __future__ import annotations

import httpx
import openai
import pytest

from tokenlean.server import ServerThread

MODEL = "tiny-llama"
MESSAGES = [{"role": "system", "content": "You are terse."},
            {"role": "user", "content": "Say hello."}]


@pytest.fixture
def client(server: ServerThread) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key="local", max_retries=0)


def test_chat_completion_with_usage(client: openai.OpenAI, server: ServerThread) -> None:
    out = client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=6,
                                         temperature=0)
    prompt = server.engine.encode_chat(MESSAGES)  # type: ignore[attr-defined]
    assert out.object == "chat.completion" and out.model == MODEL
    assert out.choices[0].message.role == "assistant"
    assert out.choices[0].finish_reason in ("length", "stop")
    assert out.usage is not None
    assert out.usage.prompt_tokens == len(prompt)
    assert 1 <= out.usage.completion_tokens <= 6
    assert out.usage.total_tokens == out.usage.prompt_tokens + out.usage.completion_tokens
    again = client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=6,
                                           temperature=0)
    assert again.choices[0].message.content == out.choices[0].message.content


def test_streaming_matches_non_streaming_and_reports_usage(client: openai.OpenAI) -> None:
    whole = client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=8,
                                           temperature=0)
    chunks = list(client.chat.completions.create(
        model=MODEL, messages=MESSAGES, max_tokens=8, temperature=0, stream=True,
        stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    assert chunks[0].choices[0].delta.role == "assistant"
    finish = [c.choices[0].finish_reason for c in chunks if c.choices and
              c.choices[0].finish_reason]
    assert finish == [whole.choices[0].finish_reason]
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert whole.usage is not None
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens
    assert chunks[-1].usage.prompt_tokens == whole.usage.prompt_tokens


def test_stop_and_seed(client: openai.OpenAI) -> None:
    full = client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=12,
                                          temperature=0).choices[0].message.content or ""
    stop = full[4:7]
    cut = client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=12,
                                         temperature=0, stop=[stop])
    assert cut.choices[0].message.content == full[:full.index(stop)]
    assert cut.choices[0].finish_reason == "stop"
    sampled = [client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=8,
                                              temperature=1.0, seed=42).choices[0].message.content
               for _ in range(2)]
    assert sampled[0] == sampled[1]


def test_completions_and_models(client: openai.OpenAI) -> None:
    out = client.completions.create(model=MODEL, prompt="The capital of France is",
                                    max_tokens=5, temperature=0)
    assert out.object == "text_completion" and out.usage is not None
    assert out.usage.completion_tokens == 5 and out.choices[0].finish_reason == "length"
    streamed = "".join(c.choices[0].text for c in client.completions.create(
        model=MODEL, prompt="The capital of France is", max_tokens=5, temperature=0, stream=True)
        if c.choices)
    assert streamed == out.choices[0].text
    ids = [m.id for m in client.models.list()]
    assert ids == [MODEL, "gpt-4o-mini"]
    assert client.models.retrieve(MODEL).id == MODEL
    # an alias is accepted as a model name
    assert client.completions.create(model="gpt-4o-mini", prompt="Hi", max_tokens=1).usage


async def test_async_client(server: ServerThread) -> None:
    client = openai.AsyncOpenAI(base_url=server.url + "/v1", api_key="local", max_retries=0)
    out = await client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=4,
                                               temperature=0)
    stream = await client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=4,
                                                  temperature=0, stream=True)
    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text == out.choices[0].message.content
    await client.close()


def test_errors_have_openai_shape_and_server_keeps_serving(client: openai.OpenAI,
                                                           server: ServerThread) -> None:
    with pytest.raises(openai.NotFoundError) as e:
        client.chat.completions.create(model="gpt-9", messages=MESSAGES)
    assert e.value.code == "model_not_found" and "tiny-llama" in e.value.message
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model=MODEL, messages=[
            {"role": "user", "content": "word " * 600}], max_tokens=4)
    assert e.value.code == "context_length_exceeded" and "512" in e.value.message
    with pytest.raises(openai.BadRequestError, match="temperature"):
        client.chat.completions.create(model=MODEL, messages=MESSAGES, temperature=5)
    with pytest.raises(openai.BadRequestError, match="max_tokens"):
        client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=-3)
    with pytest.raises(openai.BadRequestError, match="n must be 1"):
        client.chat.completions.create(model=MODEL, messages=MESSAGES, n=2)
    with pytest.raises(openai.BadRequestError, match="image_url"):
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "http://x/y.png"}}]}])
    with pytest.raises(openai.BadRequestError, match="tools"):
        client.chat.completions.create(model=MODEL, messages=MESSAGES, tools=[{
            "type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}])
    with pytest.raises(openai.BadRequestError, match="vocabulary"):
        client.completions.create(model=MODEL, prompt=[1, 2, 10**9], max_tokens=2)
    by_ids = client.completions.create(model=MODEL, prompt=[1, 2, 3], max_tokens=2)
    assert by_ids.usage is not None and by_ids.usage.prompt_tokens == 3
    raw = httpx.post(server.url + "/v1/chat/completions", content=b"{not json",
                     headers={"content-type": "application/json"})
    assert raw.status_code == 400
    assert raw.json()["error"]["type"] == "invalid_request_error"
    assert "not valid JSON" in raw.json()["error"]["message"]
    missing = httpx.get(server.url + "/v2/nothing")
    assert missing.status_code == 404 and "unknown path" in missing.json()["error"]["message"]
    ok = client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=2)
    assert ok.usage is not None and ok.usage.completion_tokens >= 1


def test_health_and_metrics(server: ServerThread, client: openai.OpenAI) -> None:
    client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=3)
    assert httpx.get(server.url + "/v2/random-xyz").status_code == 404
    health = httpx.get(server.url + "/health").json()
    assert health["status"] == "ok" and health["model"] == MODEL
    text = httpx.get(server.url + "/metrics").text
    for name in ("tokenlean_server_completion_tokens_total", "tokenlean_server_queue_depth",
                 "tokenlean_server_prefix_cache_hits_total",
                 'tokenlean_server_requests_total{endpoint="/v1/chat/completions",status="200"}'):
        assert name in text
    assert 'endpoint="other",status="404"' in text and "random-xyz" not in text
    completion = [line for line in text.splitlines()
                  if line.startswith("tokenlean_server_completion_tokens_total")]
    assert float(completion[0].split()[-1]) >= 3
