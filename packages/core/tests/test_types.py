from __future__ import annotations

import math

import pytest

from tokenlean.core import InvalidRequestError, Message, Request, Usage


def test_request_round_trips_openai_body() -> None:
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}],
            "max_tokens": 10, "temperature": 0.2, "stop": "END", "seed": 1, "logprobs": True}
    request = Request.from_openai(body)
    assert request.stop == ("END",)
    assert request.params == {"logprobs": True}
    again = request.to_openai()
    assert again["stop"] == ["END"] and again["logprobs"] is True and again["max_tokens"] == 10


@pytest.mark.parametrize("kwargs", [
    {"max_tokens": 0}, {"max_tokens": -5}, {"max_tokens": True}, {"temperature": math.nan},
    {"temperature": 3.0}, {"top_p": -0.1}, {"stop": [""]}, {"model": ""}, {"tenant": ""},
    {"seed": 1.5},
])
def test_bad_params_are_clear_errors(kwargs: dict) -> None:
    base = {"model": "gpt-4o", "messages": [Message(role="user", content="x")]}
    with pytest.raises(InvalidRequestError):
        Request(**{**base, **kwargs})


@pytest.mark.parametrize("message", [
    {"role": "wizard", "content": "x"}, {"content": "no role"}, {"role": "user", "content": 5},
    {"role": "user", "content": [{"text": "no type"}]}, {"role": "user", "content": "\ud800"},
])
def test_bad_messages(message: dict) -> None:
    with pytest.raises(InvalidRequestError):
        Message.from_openai(message)


def test_empty_messages_rejected() -> None:
    with pytest.raises(InvalidRequestError):
        Request(model="gpt-4o", messages=())


def test_content_parts_text_and_with_text() -> None:
    parts = [{"type": "text", "text": "a"}, {"type": "image_url", "image_url": {"url": "u"}}]
    message = Message(role="user", content=parts)
    assert message.text == "a"
    shorter = message.with_text("b")
    assert shorter.text == "b" and len(shorter.content) == 2


def test_usage_conventions() -> None:
    anthropic = Usage.from_anthropic({"input_tokens": 10, "cache_read_input_tokens": 90,
                                      "cache_creation_input_tokens": 5, "output_tokens": 7})
    assert anthropic.input_tokens == 105 and anthropic.cache_read_tokens == 90
    openai = Usage.from_openai({"prompt_tokens": 100, "completion_tokens": 20,
                                "prompt_tokens_details": {"cached_tokens": 64},
                                "completion_tokens_details": {"reasoning_tokens": 12}})
    assert (openai.cache_read_tokens, openai.reasoning_tokens) == (64, 12)
    assert (anthropic + openai).input_tokens == 205
    with pytest.raises(InvalidRequestError):
        Usage(input_tokens=1, cache_read_tokens=2)
    with pytest.raises(InvalidRequestError):
        Usage(output_tokens=-1)
