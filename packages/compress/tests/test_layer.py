from __future__ import annotations

import pytest

from tokenlean.compress import CompressLayer, Compressor
from tokenlean.core import (
    ConfigError,
    FunctionProvider,
    JSONLLedger,
    Message,
    Pipeline,
    Request,
    Response,
    Usage,
    count_messages,
)


def _echo(request: Request) -> Response:
    prompt = count_messages(request.messages, model="gpt-4o").tokens
    return Response(text="ok", usage=Usage(input_tokens=prompt, output_tokens=1), model="gpt-4o")


def _request(context: str) -> Request:
    return Request(model="gpt-4o", messages=(
        Message(role="system", content="You answer from the context."),
        Message(role="user", content=f"Context:\n{context}\n\nWhere did Bach die?"),
    ))


def test_layer_compresses_context_and_keeps_the_question(context: str) -> None:
    layer = CompressLayer(ratio=4, min_tokens=50)
    out = layer.process(_request(context))
    user = out.messages[1].text
    assert user.endswith("\n\nWhere did Bach die?")
    assert "Leipzig" in user
    assert len(user) < len(context) / 2
    assert out.messages[0] == _request(context).messages[0]  # short: untouched
    (note,) = out.notes
    assert note.layer == "compress" and 0 < note.quality["retention"] <= 1
    assert note.detail["tokens_after"] < note.detail["tokens_before"]


async def test_async_twin_gives_the_same_request(context: str) -> None:
    layer = CompressLayer(ratio=4, min_tokens=50)
    req = _request(context)
    assert (await layer.aprocess(req)).messages == layer.process(req).messages


def test_short_messages_pass_through() -> None:
    req = Request(model="gpt-4o", messages=(Message(role="user", content="Hi there"),))
    assert CompressLayer(ratio=4).process(req) is req


def test_pipeline_records_saved_tokens_and_retention(context: str, tmp_path) -> None:
    ledger = JSONLLedger(tmp_path / "ledger.jsonl")
    pipe = Pipeline(provider=FunctionProvider(_echo),
                    layers=[CompressLayer(ratio=4, min_tokens=50)], ledger=ledger)
    result = pipe.run(_request(context))
    (report,) = result.record.layers
    assert report.layer == "compress"
    assert report.saved_input_tokens > 100
    assert 0 < report.quality["retention"] <= 1
    assert result.response.usage.input_tokens < count_messages(
        _request(context).messages, model="gpt-4o").tokens


def test_metadata_question_and_tool_messages(context: str) -> None:
    req = Request(model="gpt-4o", metadata={"question": "When was Bach born?"}, messages=(
        Message(role="user", content="Look this up"),
        Message(role="assistant", content="", tool_calls=({"id": "1", "type": "function",
                 "function": {"name": "search", "arguments": "{}"}},)),
        Message(role="tool", content=context, tool_call_id="1"),
    ))
    out = CompressLayer(ratio=4, min_tokens=50).process(req)
    assert "1685" in out.messages[2].text and len(out.messages[2].text) < len(context) / 2


@pytest.mark.parametrize("kwargs", [{"roles": ["robot"]}, {"roles": "user"}, {"min_tokens": -1},
                                    {"ratio": 1}, {"compressor": "x"},
                                    {"compressor": Compressor(), "ratio": 3}])
def test_bad_layer_options(kwargs: dict) -> None:
    with pytest.raises(ConfigError):
        CompressLayer(**kwargs)
