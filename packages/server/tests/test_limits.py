"""Body-size and prompt-token limits, and an event loop that a big request cannot stall."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import openai
import pytest

from tokenlean.bench._reliability_server import Connection, body_bytes, valid_body
from tokenlean.server import DEFAULT_MAX_BODY_BYTES, ServerThread

MODEL = "tiny-llama"
CHAT = "/v1/chat/completions"


@pytest.fixture(scope="module")
def small(make_server: Any) -> Iterator[ServerThread]:
    with make_server(app_options={"max_body_bytes": 2000, "max_prompt_tokens": 40}) as running:
        yield running


def padded(path: str, size: int) -> bytes:
    body = valid_body(path, MODEL)
    body["metadata_padding"] = "x" * size
    return body_bytes(body)


@pytest.mark.parametrize(("path", "kind"), [(CHAT, "invalid_request_error"),
                                            ("/v1/messages", "request_too_large")])
def test_a_declared_length_over_the_limit_is_refused_unread(small: ServerThread, path: str,
                                                            kind: str) -> None:
    # 100 MB announced, nothing sent: the 413 must come without waiting for the body
    with socket.create_connection((small.host, small.port), timeout=10) as sock:
        sock.sendall(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\ncontent-type: "
                     f"application/json\r\ncontent-length: 100000000\r\n\r\n{{".encode())
        head = b""
        while chunk := sock.recv(65536):  # the server closes the connection after the 413
            head += chunk
        text = head.decode("latin-1")
    assert text.startswith("HTTP/1.1 413") and "connection: close" in text.lower()
    assert kind in text and "2000 bytes" in text


def test_a_streamed_body_is_cut_at_the_limit(small: ServerThread) -> None:
    sent: list[int] = []

    # chunked: no content-length to check up front. 100 MB offered: far more than the
    # loopback socket buffers (a few MB) can take in before the server answers, so
    # the body stops early only if the server refuses it while it streams
    def chunks() -> Iterator[bytes]:
        for _ in range(20_000):
            sent.append(1)
            yield b" " * 5_000

    reply = httpx.post(small.url + CHAT, content=chunks(),
                       headers={"content-type": "application/json"})
    assert reply.status_code == 413 and reply.json()["error"]["code"] == "request_too_large"
    assert len(sent) < 20_000  # refused while streaming, not after reading 100 MB
    ok = httpx.post(small.url + CHAT, json=valid_body(CHAT, MODEL))
    assert ok.status_code == 200


def test_the_default_body_limit(server: ServerThread) -> None:
    reply = httpx.post(server.url + CHAT, content=padded(CHAT, DEFAULT_MAX_BODY_BYTES),
                       headers={"content-type": "application/json"})
    assert reply.status_code == 413
    with Connection(server.host, server.port) as conn:  # just under it: read and answered
        under = conn.request("POST", CHAT, padded(CHAT, DEFAULT_MAX_BODY_BYTES - 1000),
                             [("content-type", "application/json")])
        assert under.status == 200 and conn.open


def test_prompt_token_limit_in_each_api(small: ServerThread) -> None:
    long = "word " * 60
    client = openai.OpenAI(base_url=small.url + "/v1", api_key="x", max_retries=0)
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model=MODEL, max_tokens=1,
                                       messages=[{"role": "user", "content": long}])
    assert e.value.code == "context_length_exceeded" and "at most 40" in e.value.message
    with pytest.raises(openai.BadRequestError, match="at most 40"):
        client.completions.create(model=MODEL, prompt=long, max_tokens=1)
    with pytest.raises(openai.BadRequestError, match="at most 40"):
        client.completions.create(model=MODEL, prompt=[5] * 41, max_tokens=1)
    claude = anthropic.Anthropic(base_url=small.url, api_key="x", max_retries=0)
    with pytest.raises(anthropic.BadRequestError, match="at most 40"):
        claude.messages.count_tokens(model=MODEL, messages=[{"role": "user", "content": long}])
    with pytest.raises(anthropic.BadRequestError, match="at most 40"):
        claude.messages.create(model=MODEL, max_tokens=1, system=long,
                               messages=[{"role": "user", "content": "Hi"}])
    assert client.completions.create(model=MODEL, prompt=[5] * 40, max_tokens=1).usage


def test_health_answers_while_a_request_is_being_tokenized(make_server: Any) -> None:
    """Tokenizing runs off the event loop: held mid-tokenization, a request must not
    stop /health (or a small request) from being answered. Before the worker pool the
    loop itself was blocked here and both timed out."""
    server = make_server()
    engine = server.engine
    entered, release = threading.Event(), threading.Event()
    real = engine.encode_chat

    def held(messages: Any, **options: Any) -> list[int]:
        if messages[-1]["content"] == "hold":
            entered.set()
            release.wait(30)
        return real(messages, **options)

    engine.encode_chat = held  # this engine only
    with server:
        outcome: list[int] = []
        body = valid_body(CHAT, MODEL)
        body["messages"] = [{"role": "user", "content": "hold"}]
        worker = threading.Thread(target=lambda: outcome.append(
            httpx.post(server.url + CHAT, json=body, timeout=60).status_code))
        worker.start()
        try:
            assert entered.wait(30)
            assert httpx.get(server.url + "/health", timeout=5).status_code == 200
            counted = httpx.post(server.url + "/v1/messages/count_tokens", timeout=5,
                                 json=valid_body("/v1/messages/count_tokens", MODEL))
            assert counted.status_code == 200
        finally:
            release.set()
            worker.join(60)
        assert outcome == [200]
