from __future__ import annotations

import pytest

from tokenlean.compress import CompressLayer, HistoryCompressor
from tokenlean.core import (
    ConfigError,
    FunctionProvider,
    InvalidRequestError,
    Message,
    Pipeline,
    Request,
    Response,
    Usage,
    count_messages,
)

SYSTEM = Message(role="system", content="You are a helpful travel assistant.")


def _chat(context: str) -> list[Message]:
    """Ten old turns (the context's paragraphs, some repeated), then the question."""
    paragraphs = context.split("\n\n")
    chat = [SYSTEM]
    for k in range(10):
        chat.append(Message(role="user", content=f"Tell me something, part {k}."))
        chat.append(Message(role="assistant", content=paragraphs[k % len(paragraphs)]))
    chat.append(Message(role="user", content="Thanks. So where was Bach born?"))
    return chat


def _tokens(messages) -> int:
    return count_messages(messages, model="gpt-4o").tokens


def test_under_budget_nothing_changes(context: str) -> None:
    chat = _chat(context)
    result = HistoryCompressor(max_tokens=_tokens(chat) + 10).compress(chat)
    assert result.messages == tuple(chat)
    assert not result.changed and result.fits and result.retention == 1.0


def test_compresses_oldest_turns_first_and_keeps_the_recent_ones(context: str) -> None:
    chat = _chat(context)
    before = _tokens(chat)
    result = HistoryCompressor(max_tokens=int(before * 0.8), keep_last=3).compress(chat)
    assert result.fits and result.tokens_after <= result.budget < before
    assert result.tokens_after == _tokens(result.messages)
    assert not result.dropped
    # oldest first: the compressed ones are a prefix of the compressible older turns
    assistants = [i for i, m in enumerate(chat) if m.role == "assistant"]
    assert result.compressed == tuple(assistants[:len(result.compressed)])
    assert len(result.compressed) < len(assistants)
    assert result.messages[0] == SYSTEM
    assert result.messages[-3:] == tuple(chat[-3:])
    assert 0 < result.retention < 1


def test_question_aware_keeps_what_the_last_question_needs(context: str) -> None:
    chat = _chat(context)
    result = HistoryCompressor(max_tokens=int(_tokens(chat) * 0.55), keep_last=1,
                               ratio=3).compress(chat)
    assert result.fits
    kept = " ".join(m.text for m in result.messages[:-1])
    assert "Eisenach" in kept  # the Bach paragraphs keep the birthplace


def test_drops_whole_old_turns_when_compression_is_not_enough(context: str) -> None:
    chat = _chat(context)
    result = HistoryCompressor(max_tokens=120, keep_last=2).compress(chat)
    assert result.fits and result.dropped
    assert result.messages[0] == SYSTEM and result.messages[-2:] == tuple(chat[-2:])
    # turns go whole: after the system prompt, the conversation starts with a user turn
    assert result.messages[1].role == "user"
    assert set(result.dropped) == set(range(1, 1 + len(result.dropped)))  # the oldest ones
    assert result.source == tuple(k for k in range(len(chat)) if k not in result.dropped)
    assert result.retention < 1


def test_drop_false_only_compresses(context: str) -> None:
    chat = _chat(context)
    result = HistoryCompressor(max_tokens=120, keep_last=2, drop=False).compress(chat)
    assert not result.dropped and not result.fits
    assert len(result.messages) == len(chat)
    assert result.tokens_after < result.tokens_before


def test_tool_calls_and_results_are_never_compressed_and_go_together(context: str) -> None:
    call = {"id": "c1", "type": "function",
            "function": {"name": "search", "arguments": '{"q": "Bach"}'}}
    chat = [SYSTEM,
            Message(role="user", content="Look up Bach."),
            Message(role="assistant", content="", tool_calls=(call,)),
            Message(role="tool", content=context, tool_call_id="c1"),
            Message(role="assistant", content=context),
            Message(role="user", content="Where was Bach born?")]
    loose = HistoryCompressor(max_tokens=_tokens(chat) - 20, keep_last=1).compress(chat)
    assert loose.compressed == (4,) and not loose.dropped
    assert loose.messages[2:4] == tuple(chat[2:4])
    tight = HistoryCompressor(max_tokens=60, keep_last=1).compress(chat)
    assert set(tight.dropped) == {1, 2, 3, 4}  # one turn: the call and its result together
    assert [m.role for m in tight.messages] == ["system", "user"]


def test_pinned_messages_alone_over_budget_are_returned_with_fits_false(context: str) -> None:
    chat = [Message(role="system", content=context), Message(role="user", content="Hi?")]
    result = HistoryCompressor(max_tokens=20).compress(chat)
    assert not result.fits and result.messages == tuple(chat)


def test_accepts_openai_dicts(context: str) -> None:
    chat = [m.to_openai() for m in _chat(context)]
    result = HistoryCompressor(max_tokens=300).compress(chat)
    assert result.fits and all(isinstance(m, Message) for m in result.messages)


@pytest.mark.parametrize("kwargs", [
    {"max_tokens": 0}, {"max_tokens": None}, {"max_tokens": 100, "keep_last": 0},
    {"max_tokens": 100, "ratio": 1}, {"max_tokens": 100, "min_tokens": -1},
    {"max_tokens": 100, "compressor": "tokenlean"},
])
def test_bad_options_are_config_errors(kwargs) -> None:
    with pytest.raises(ConfigError):
        HistoryCompressor(**kwargs)


@pytest.mark.parametrize("messages", ["hello", [1, 2], {"role": "user", "content": "x"}])
def test_bad_messages_are_invalid_request_errors(messages) -> None:
    with pytest.raises(InvalidRequestError):
        HistoryCompressor(max_tokens=100).compress(messages)


async def test_layer_runs_history_first_and_notes_it(context: str) -> None:
    seen: list[int] = []

    def answer(request: Request) -> Response:
        prompt = count_messages(request.messages, model="gpt-4o").tokens
        seen.append(prompt)
        return Response(text="Eisenach.", model="gpt-4o",
                        usage=Usage(input_tokens=prompt, output_tokens=2))

    layer = CompressLayer(history=HistoryCompressor(max_tokens=250, keep_last=2))
    pipe = Pipeline(provider=FunctionProvider(answer), layers=[layer])
    request = Request(model="gpt-4o", messages=tuple(_chat(context)))
    for result in (pipe.run(request), await pipe.arun(request)):
        (report,) = result.record.layers
        assert report.layer == "compress"
        assert report.saved_input_tokens == _tokens(_chat(context)) - seen[-1] > 0
        assert 0 <= report.quality["history_retention"] < 1
        assert report.detail["history_fits"] is True
    assert seen[0] <= 250 and seen[0] == seen[1]
    with pytest.raises(ConfigError):
        CompressLayer(history="yes")  # type: ignore[arg-type]
