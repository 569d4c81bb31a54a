"""build_request: one mapping from layers of settings to a Request."""

from __future__ import annotations

from enum import Enum
from typing import Any

import pytest

from tokenlean.core import InvalidRequestError, Message, Request
from tokenlean.core.settings import build_request, cap_key, merge_settings, model_of

MESSAGES = (Message(role="user", content="hi"),)


def request(*layers: Any, **kw: Any) -> Request:
    return build_request(MESSAGES, *layers, **kw)


def test_the_wrapped_models_defaults_are_read_and_the_call_overrides_them() -> None:
    model = {"model": "gpt-4o", "temperature": 1.2, "max_completion_tokens": 30, "top_p": 0.5,
             "seed": 3, "stop": ["END"], "n": 2, "reasoning_effort": "low"}
    out = request(model, {"temperature": 0.0, "stop": "STOP"})
    assert (out.model, out.temperature, out.max_tokens, out.top_p, out.seed, out.stop) == (
        "gpt-4o", 0.0, 30, 0.5, 3, ("STOP",))
    assert out.params == {"n": 2, "reasoning_effort": "low"}


def test_unset_values_never_override_a_lower_layer() -> None:
    out = request({"model": "m", "temperature": 0.7, "max_tokens": 30},
                  {"temperature": None, "max_tokens": None, "model": None})
    assert (out.model, out.temperature, out.max_tokens) == ("m", 0.7, 30)


def test_nested_provider_options_are_lifted_and_win_in_their_layer() -> None:
    out = request({"model": "m", "temperature": 0.2, "model_kwargs": {"temperature": 0.9},
                   "additional_kwargs": {"top_k": 5}, "extra_body": {"repetition_penalty": 1.1}})
    assert out.temperature == 0.9 and out.params == {"top_k": 5, "repetition_penalty": 1.1}


@pytest.mark.parametrize("name", ["max_tokens", "max_completion_tokens", "max_output_tokens",
                                  "max_tokens_to_sample", "max_new_tokens", "num_predict"])
def test_every_name_of_the_output_cap_is_the_cap(name: str) -> None:
    assert request({"model": "m", name: 30}).max_tokens == 30
    assert cap_key({"model": "m", name: 30}) == name


def test_a_layer_naming_two_caps_means_the_lower_and_a_later_layer_wins() -> None:
    both = {"model": "m", "max_tokens": 50, "model_kwargs": {"max_completion_tokens": 30}}
    assert request(both).max_tokens == 30 and cap_key(both) == "max_completion_tokens"
    assert request(both, {"max_tokens": 40}).max_tokens == 40  # the call's own cap
    assert cap_key(both, {"max_tokens": 40}) == "max_tokens"
    assert cap_key({"model": "m"}) == "max_tokens"  # none given: the common name


def test_aliases_and_what_is_left_out() -> None:
    out = request({"model_name": "claude-x", "stop_sequences": ["\n\n"], "random_seed": 4,
                   "api_key": "sk-secret", "base_url": "http://x", "timeout": 3,
                   "max_retries": 2, "streaming": True, "stream_options": {}, "callbacks": [],
                   "_type": "openai-chat", "ls_structured_output_format": {}, "tenant": "t",
                   "user": "u-1", "top_k": 40})
    assert (out.model, out.stop, out.seed, out.user) == ("claude-x", ("\n\n",), 4, "u-1")
    assert out.params == {"top_k": 40}  # no credential, transport or tracing setting


@pytest.mark.parametrize(("given", "canonical"), [
    ("auto", "auto"), ("none", "none"), ("required", "required"), ("any", "required"),
    ({"type": "any"}, "required"), ({"type": "auto"}, "auto"),
    ("add", {"type": "function", "function": {"name": "add"}}),
    ({"type": "tool", "name": "add"}, {"type": "function", "function": {"name": "add"}}),
    (True, {"type": "function", "function": {"name": "add"}}),
    ({"type": "function", "function": {"name": "add"}},
     {"type": "function", "function": {"name": "add"}}),
])
def test_tool_choice_is_written_the_openai_way(given: Any, canonical: Any) -> None:
    tool = {"type": "function", "function": {"name": "add", "parameters": {}}}
    out = request({"model": "m", "tools": [tool], "tool_choice": given})
    assert out.tools == (tool,) and out.params["tool_choice"] == canonical


def test_values_become_json_like_data() -> None:
    from pydantic import BaseModel

    class Answer(BaseModel):
        text: str

    class Effort(Enum):
        LOW = "low"

    odd = object()
    out = request({"model": "m", "response_format": Answer, "effort": Effort.LOW,
                   "logit_bias": {1: 2}, "thing": odd, "pair": (1, 2)})
    assert out.params["response_format"] == Answer.model_json_schema()
    assert out.params["effort"] == "low" and out.params["logit_bias"] == {"1": 2}
    assert out.params["thing"] == repr(odd) and out.params["pair"] == [1, 2]


def test_model_of_and_merge_settings() -> None:
    assert model_of({"model_kwargs": {"model": "x"}, "model_name": "y"}) == "x"
    assert model_of({"model": "  "}) is None
    merged = merge_settings({"model": "m", "max_output_tokens": 9}, {"tool_choice": "any"})
    assert merged == {"model": "m", "max_tokens": 9, "tool_choice": "required"}


def test_no_model_anywhere_is_an_invalid_request() -> None:
    with pytest.raises(InvalidRequestError, match="model"):
        request({"temperature": 0})


def test_a_requests_output_cap_is_read_and_set_where_it_names_it() -> None:
    plain = Request(messages=MESSAGES, model="m", max_tokens=50)
    assert plain.output_cap == 50 and plain.with_output_cap(20).max_tokens == 20
    named = Request(messages=MESSAGES, model="m", params={"max_completion_tokens": 30})
    assert named.output_cap == 30
    lowered = named.with_output_cap(20)
    assert (lowered.max_tokens, dict(lowered.params)) == (None, {"max_completion_tokens": 20})
    assert Request(messages=MESSAGES, model="m").output_cap is None
    assert Request(messages=MESSAGES, model="m").with_output_cap(8).max_tokens == 8
