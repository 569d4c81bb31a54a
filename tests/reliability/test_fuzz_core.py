"""Fuzzing the core entry points: a clear TokenleanError or a correct result, never a crash."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tokenlean.core import (
    FunctionProvider,
    Message,
    Pipeline,
    Request,
    Response,
    TokenleanError,
    Usage,
    count_messages,
    count_tokens,
)

pytestmark = pytest.mark.fuzz
# max(own count, the profile's): the fuzz profile (-m fuzz) explores with more examples
SETTINGS = settings(max_examples=max(150, settings.default.max_examples), deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])

roles = st.one_of(st.sampled_from(["system", "user", "assistant", "tool", "developer"]),
                  st.text(max_size=12))
texts = st.text(st.characters(exclude_categories=()), max_size=400)  # surrogates, controls, emoji
parts = st.lists(st.one_of(
    st.fixed_dictionaries({"type": st.just("text"), "text": texts}),
    st.fixed_dictionaries({"type": st.just("image_url"),
                           "image_url": st.fixed_dictionaries({"url": st.text(max_size=30)})}),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
    st.integers(),
), max_size=4)
contents = st.one_of(texts, parts, st.none(), st.integers(), st.binary(max_size=10))
raw_messages = st.fixed_dictionaries({"role": roles, "content": contents},
                                     optional={"name": st.one_of(st.text(max_size=8), st.none())})
numbers = st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True), st.integers(),
                    st.booleans())


def _valid_text(value: str) -> bool:
    try:
        value.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


@SETTINGS
@given(messages=st.lists(raw_messages, max_size=5), model=st.text(max_size=20),
       max_tokens=numbers, temperature=numbers)
def test_request_construction_is_total(messages: list[dict[str, Any]], model: str,
                                       max_tokens: Any, temperature: Any) -> None:
    try:
        request = Request(messages=messages, model=model, max_tokens=max_tokens,
                          temperature=temperature)
    except TokenleanError as exc:
        assert str(exc)  # a message that says what was wrong
        return
    assert request.messages and request.model.strip()
    assert request.temperature is None or (math.isfinite(request.temperature)
                                           and 0 <= request.temperature <= 2)
    counted = count_messages(request.messages, model=request.model)
    assert counted.tokens >= 3 * len(request.messages) + 3


@SETTINGS
@given(text=texts, model=st.sampled_from(["gpt-4o", "gpt-4", "claude-3-5-haiku", "x"]))
def test_count_tokens_never_zero_for_nonempty_valid_text(text: str, model: str) -> None:
    try:
        counted = count_tokens(text, model=model)
    except TokenleanError:
        assert not _valid_text(text)
        return
    assert (counted.tokens > 0) == (len(text) > 0)


def _answer(request: Request) -> Response:
    return Response(text=request.last_user_text[:10], usage=Usage(input_tokens=1, output_tokens=1))


@SETTINGS
@given(messages=st.lists(raw_messages, min_size=1, max_size=4))
def test_pipeline_run_is_total(messages: list[dict[str, Any]]) -> None:
    pipe = Pipeline(provider=FunctionProvider(_answer))
    try:
        request = Request(messages=messages, model="gpt-4o")
    except TokenleanError:
        return
    result = pipe.run(request)
    assert result.response.text == request.last_user_text[:10]
    assert result.record.usage.total_tokens == 2


@SETTINGS
@given(st.lists(st.integers(min_value=-5, max_value=10**7), min_size=5, max_size=5))
def test_usage_validation(values: list[int]) -> None:
    inp, out, read, write, reasoning = values
    try:
        usage = Usage(input_tokens=inp, output_tokens=out, cache_read_tokens=read,
                      cache_write_tokens=write, reasoning_tokens=reasoning)
    except TokenleanError:
        assert min(values) < 0 or read + write > inp or reasoning > out
        return
    assert usage.total_tokens == inp + out


def test_message_with_only_image_counts_and_is_flagged() -> None:
    message = Message(role="user", content=[{"type": "image_url", "image_url": {"url": "x"}}])
    counted = count_messages([message], model="gpt-4o")
    assert not counted.exact and counted.tokens >= 6
