"""The real `anthropic` SDK against the real server over loopback HTTP."""

from __future__ import annotations

import anthropic
import httpx
import pytest

from tokenlean.server import ServerThread

MODEL = "tiny-llama"
MESSAGES = [{"role": "user", "content": "Say hello."}]


@pytest.fixture
def client(server: ServerThread) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=server.url, api_key="local", max_retries=0)


def test_message_with_usage(client: anthropic.Anthropic, server: ServerThread) -> None:
    out = client.messages.create(model=MODEL, max_tokens=6, messages=MESSAGES,
                                 extra_body={"temperature": 0},
                                 system="You are terse.")
    prompt = server.engine.encode_chat(  # type: ignore[attr-defined]
        [{"role": "system", "content": "You are terse."}, *MESSAGES])
    assert out.type == "message" and out.role == "assistant" and out.model == MODEL
    assert out.content[0].type == "text"
    assert out.stop_reason in ("max_tokens", "end_turn")
    cached = out.usage.cache_read_input_tokens or 0
    assert out.usage.input_tokens + cached == len(prompt)
    assert 1 <= out.usage.output_tokens <= 6
    counted = client.messages.count_tokens(model=MODEL, messages=MESSAGES,
                                           system="You are terse.")
    assert counted.input_tokens == len(prompt)


def test_streaming_events_and_usage(client: anthropic.Anthropic) -> None:
    whole = client.messages.create(model=MODEL, max_tokens=8, messages=MESSAGES,
                                   extra_body={"temperature": 0})
    with client.messages.stream(model=MODEL, max_tokens=8, messages=MESSAGES,
                                extra_body={"temperature": 0}) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == whole.content[0].text  # type: ignore[union-attr]
    assert final.usage.output_tokens == whole.usage.output_tokens
    assert final.stop_reason == whole.stop_reason
    kinds = [e.type for e in client.messages.create(model=MODEL, max_tokens=3,
                                                    messages=MESSAGES, stream=True)]
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    assert "content_block_delta" in kinds and "message_delta" in kinds


def test_stop_sequences(client: anthropic.Anthropic) -> None:
    full = client.messages.create(model=MODEL, max_tokens=12, messages=MESSAGES,
                                  extra_body={"temperature": 0}
                                  ).content[0].text  # type: ignore[union-attr]
    stop = full[4:7]
    cut = client.messages.create(model=MODEL, max_tokens=12, messages=MESSAGES,
                                 extra_body={"temperature": 0},
                                 stop_sequences=[stop])
    assert cut.content[0].text == full[:full.index(stop)]  # type: ignore[union-attr]
    assert cut.stop_reason == "stop_sequence" and cut.stop_sequence == stop


async def test_async_client(server: ServerThread) -> None:
    client = anthropic.AsyncAnthropic(base_url=server.url, api_key="local", max_retries=0)
    out = await client.messages.create(model=MODEL, max_tokens=4, messages=MESSAGES,
                                       extra_body={"temperature": 0})
    assert out.usage.output_tokens >= 1
    await client.close()


def test_errors_have_anthropic_shape(client: anthropic.Anthropic, server: ServerThread) -> None:
    with pytest.raises(anthropic.NotFoundError) as e:
        client.messages.create(model="claude-9", max_tokens=4, messages=MESSAGES)
    assert e.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]
    with pytest.raises(anthropic.BadRequestError, match="between|in \\["):
        client.messages.create(model=MODEL, max_tokens=4, messages=MESSAGES,
                               extra_body={"temperature": 1.5})
    with pytest.raises(anthropic.BadRequestError, match="context"):
        client.messages.create(model=MODEL, max_tokens=4,
                               messages=[{"role": "user", "content": "word " * 600}])
    raw = httpx.post(server.url + "/v1/messages", content=b"[1, 2",
                     headers={"content-type": "application/json"})
    assert raw.status_code == 400
    assert raw.json()["type"] == "error"
    assert raw.json()["error"]["type"] == "invalid_request_error"
    no_max = httpx.post(server.url + "/v1/messages", json={"model": MODEL, "messages": MESSAGES})
    assert no_max.status_code == 400 and "max_tokens" in no_max.json()["error"]["message"]
    assert client.messages.create(model=MODEL, max_tokens=2, messages=MESSAGES).usage
