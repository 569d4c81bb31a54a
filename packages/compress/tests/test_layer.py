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


def _turn(system: str, *history: str, tenant: str = "default") -> Request:
    """A conversation: the long system prompt, alternating user/assistant turns, the
    last one a user question."""
    roles = ["user", "assistant"]
    return Request(model="gpt-4o", tenant=tenant, messages=(
        Message(role="system", content=system),
        *(Message(role=roles[i % 2], content=text) for i, text in enumerate(history)),
    ))


def test_stable_prefix_sends_an_earlier_message_as_it_was_sent(context: str) -> None:
    layer = CompressLayer(ratio=4, min_tokens=50)
    first = layer.process(_turn(context, "Where did Bach die?"))
    second = layer.process(_turn(context, "Where did Bach die?", "In Leipzig.",
                                 "What is the Amazon's discharge?"))
    # the system prompt was compressed for the first question; the second turn sends it
    # as it was sent then, so the provider's cached prefix still matches
    assert first.messages[0].text != context
    assert second.messages[0].text == first.messages[0].text
    assert second.notes[-1].detail["reused_for_stable_prefix"] == 1
    assert second.notes[-1].detail["tokens_after"] < second.notes[-1].detail["tokens_before"]


def test_without_stable_prefix_each_turn_compresses_for_its_question(context: str) -> None:
    layer = CompressLayer(ratio=4, min_tokens=50, stable_prefix=False)
    first = layer.process(_turn(context, "Where did Bach die?"))
    second = layer.process(_turn(context, "Where did Bach die?", "In Leipzig.",
                                 "What is the Amazon's discharge?"))
    assert second.messages[0].text != first.messages[0].text
    assert "reused_for_stable_prefix" not in second.notes[-1].detail


def test_stable_prefix_leaves_single_turn_requests_and_other_tenants_alone(
        context: str) -> None:
    layer = CompressLayer(ratio=4, min_tokens=50)
    layer.process(_turn(context, "Where did Bach die?"))
    # a new single-turn question over the same context is compressed for itself
    single = layer.process(_turn(context, "What is the Amazon's discharge?"))
    fresh = CompressLayer(ratio=4, min_tokens=50, stable_prefix=False).process(
        _turn(context, "What is the Amazon's discharge?"))
    assert single.messages[0].text == fresh.messages[0].text
    # another tenant's conversation never gets this tenant's compression
    other = layer.process(_turn(context, "Where did Bach die?", "In Leipzig.",
                                "What is the Amazon's discharge?", tenant="b"))
    assert "reused_for_stable_prefix" not in other.notes[-1].detail


def test_stable_prefix_remembers_a_bounded_number_of_messages(
        context: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from tokenlean.compress import _layer

    monkeypatch.setattr(_layer, "STABLE_PREFIX_ENTRIES", 2)
    layer = CompressLayer(ratio=4, min_tokens=50)
    for n in range(4):
        layer.process(_turn(f"Note {n}.\n\n{context}", "Where did Bach die?"))
    assert len(layer._sent) == 2
    again = layer.process(_turn(f"Note 0.\n\n{context}", "Where did Bach die?", "In Leipzig.",
                                "What is the Amazon's discharge?"))
    assert "reused_for_stable_prefix" not in again.notes[-1].detail  # forgotten


@pytest.mark.parametrize("value", ["yes", 1, None])
def test_stable_prefix_must_be_a_bool(value: object) -> None:
    with pytest.raises(ConfigError, match="stable_prefix"):
        CompressLayer(stable_prefix=value)  # type: ignore[arg-type]
