from __future__ import annotations

import pytest

from tokenlean.core import InvalidRequestError, Message, count_messages, count_tokens, get_tokenizer
from tokenlean.core.tokens import HFTokenizer, encoding_for_model, register_tokenizer

# OpenAI cookbook "How to count tokens with tiktoken": the API billed 129 prompt
# tokens for this chat on gpt-3.5-turbo / gpt-4 (cl100k) and 124 on gpt-4o (o200k).
COOKBOOK_EXAMPLE = [
    {"role": "system", "content": "You are a helpful, pattern-following assistant that "
                                  "translates corporate jargon into plain English."},
    {"role": "system", "name": "example_user",
     "content": "New synergies will help drive top-line growth."},
    {"role": "system", "name": "example_assistant",
     "content": "Things working well together will increase revenue."},
    {"role": "system", "name": "example_user",
     "content": "Let's circle back when we have more bandwidth to touch base on opportunities "
                "for increased leverage."},
    {"role": "system", "name": "example_assistant",
     "content": "Let's talk later when we're less busy about how to do better."},
    {"role": "user", "content": "This late pivot means we don't have time to boil the ocean for "
                                "the client deliverable."},
]


@pytest.mark.parametrize("model", ["gpt-4o", "gpt-4", "gpt-4.1-mini", "o3", "gpt-5"])
def test_hello_world_is_two_tokens(model: str) -> None:
    counted = count_tokens("hello world", model=model)
    assert counted.tokens == 2
    assert counted.exact


@pytest.mark.parametrize(("model", "encoding"), [
    ("gpt-4o", "o200k_base"), ("gpt-4o-mini-2024-07-18", "o200k_base"),
    ("openai/gpt-4.1", "o200k_base"), ("o1-preview", "o200k_base"), ("gpt-5-nano", "o200k_base"),
    ("gpt-4", "cl100k_base"), ("gpt-4-turbo", "cl100k_base"), ("gpt-3.5-turbo", "cl100k_base"),
])
def test_encoding_per_family(model: str, encoding: str) -> None:
    assert encoding_for_model(model) == (encoding, True)


def test_encodings_differ_where_they_should() -> None:
    text = "Привет, как дела? 東京は晴れです。"
    assert count_tokens(text, model="gpt-4o").tokens < count_tokens(text, model="gpt-4").tokens


@pytest.mark.parametrize(("model", "billed"), [("gpt-4", 129), ("gpt-3.5-turbo", 129),
                                               ("gpt-4o", 124), ("gpt-4o-mini", 124)])
def test_chat_counted_as_openai_bills_it(model: str, billed: int) -> None:
    counted = count_messages(COOKBOOK_EXAMPLE, model=model)
    assert counted.tokens == billed
    assert counted.exact


def test_three_message_chat_formula() -> None:
    chat = [Message(role="system", content="Be brief."), Message(role="user", content="Hi"),
            Message(role="assistant", content="Hello!")]
    enc = get_tokenizer("gpt-4o")
    expected = sum(3 + len(enc.encode(m.role)) + len(enc.encode(m.text)) for m in chat) + 3
    assert count_messages(chat, model="gpt-4o").tokens == expected


def test_unknown_and_anthropic_models_are_flagged_approximate() -> None:
    for model in ("claude-sonnet-4-5", "my-private-model"):
        counted = count_tokens("hello world", model=model)
        assert counted.tokens > 0
        assert not counted.exact
        assert counted.method.startswith("approx:")


def test_images_and_tools_make_counts_approximate() -> None:
    parts = [{"type": "text", "text": "What is this?"},
             {"type": "image_url", "image_url": {"url": "https://example.com/x.png"}}]
    assert not count_messages([Message(role="user", content=parts)], model="gpt-4o").exact
    tools = [{"type": "function", "function": {"name": "f", "parameters": {}}}]
    plain = count_messages([{"role": "user", "content": "x"}], model="gpt-4o")
    with_tools = count_messages([{"role": "user", "content": "x"}], model="gpt-4o", tools=tools)
    assert with_tools.tokens > plain.tokens and not with_tools.exact


def test_special_token_text_is_counted_as_text() -> None:
    assert count_tokens("<|endoftext|>", model="gpt-4o").tokens > 1


def test_bad_input() -> None:
    with pytest.raises(InvalidRequestError):
        count_tokens(b"bytes", model="gpt-4o")  # type: ignore[arg-type]
    with pytest.raises(InvalidRequestError):
        count_messages([], model="gpt-4o")
    with pytest.raises(InvalidRequestError):
        count_tokens("x", model="")


def test_registered_hf_tokenizer_wins() -> None:
    class Chars:
        name, exact = "chars", True

        def encode(self, text: str) -> list[int]:
            return [ord(c) for c in text]

        def decode(self, ids: list[int]) -> str:
            return "".join(map(chr, ids))

    register_tokenizer("local/char-model", Chars())
    assert count_tokens("hello", model="local/char-model").tokens == 5
    assert HFTokenizer.__init__ is not None
