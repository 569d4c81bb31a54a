import json

import pytest

from tokenlean.bench.templates_cache import replay
from tokenlean.core import InvalidRequestError, Message
from tokenlean.templates import (
    anthropic_cache_breakpoints,
    cacheable_prefix_tokens,
    check_invariants,
    layout_template,
)

TEMPLATE = """Current date and time: {now}. User: {user}.

You are a travel guide. Suggest places to visit.

This must be fun and short.

Context:
{context}

Always answer in English."""


def test_static_units_move_before_variables():
    r = layout_template(TEMPLATE)
    assert r.text.startswith("You are a travel guide. Suggest places to visit.\n\n"
                             "This must be fun and short.\n\nAlways answer in English.\n\n"
                             "Current date and time: {now}.")
    assert r.text.endswith("Context:\n{context}")  # "Context:" stays glued to its variable
    assert r.moved == 2
    assert r.static_prefix_tokens_before == 6 < 20 < r.static_prefix_tokens_after
    assert check_invariants(TEMPLATE, r.text) == []
    assert sorted(r.text.split("\n\n")) == sorted(TEMPLATE.split("\n\n"))


def test_units_that_refer_to_neighbours_stay():
    text = "Summarise {doc}.\n\nUse the text above only.\n\nBe brief. Then stop.\n\nSee below."
    r = layout_template(text)
    assert r.text == "Be brief. Then stop.\n\nSee below.\n\nSummarise {doc}.\n\n" \
        "Use the text above only."
    assert layout_template("No variables here. Be brief.").changed is False
    with pytest.raises(InvalidRequestError):
        layout_template(3)  # type: ignore[arg-type]


def test_cacheable_prefix_follows_openai_rule():
    static = "rules " * 1500
    a = [Message(role="system", content=static), Message(role="user", content="one")]
    b = [*a[:1], Message(role="user", content="one"), Message(role="assistant", content="x"),
         Message(role="user", content="two")]
    n = cacheable_prefix_tokens(a, b)
    assert n >= 1024 and (n - 1024) % 128 == 0
    varied = [Message(role="system", content="Time 10:01. " + static), *b[1:]]
    assert cacheable_prefix_tokens(a, varied) == 0
    short = [Message(role="system", content="hi"), Message(role="user", content="x")]
    assert cacheable_prefix_tokens(short, short) == 0


def test_anthropic_breakpoints():
    body = {"model": "claude-sonnet-4-5", "system": "static " * 1200,
            "messages": [{"role": "user", "content": "hi"}]}
    out = anthropic_cache_breakpoints(body)
    assert out.body["system"][-1]["cache_control"] == {"type": "ephemeral"}
    assert out.body["messages"][-1]["content"][-1]["cache_control"] == {"type": "ephemeral"}
    assert out.breakpoints == 2 and out.cacheable and out.static_prefix_tokens > 1024
    assert body["system"] == "static " * 1200  # input not modified
    two = {"system": "s", "messages": [{"role": "user", "content": "a"},
                                       {"role": "assistant", "content": "b"},
                                       {"role": "user", "content": "now: 10:01. c"}]}
    hist = anthropic_cache_breakpoints(two, history_only=True).body["messages"]
    assert hist[1]["content"][-1]["cache_control"] == {"type": "ephemeral"}
    assert hist[2]["content"] == "now: 10:01. c"
    full = {"messages": [{"role": "user", "content": [
        {"type": "text", "text": str(i), "cache_control": {"type": "ephemeral"}}
        for i in range(4)]}], "system": "s"}
    assert anthropic_cache_breakpoints(full).breakpoints == 4  # never more than 4
    assert not anthropic_cache_breakpoints({"messages": [], "system": "s"}).cacheable
    with pytest.raises(InvalidRequestError):
        anthropic_cache_breakpoints({"system": "x"})


def test_replay_layout_makes_prefix_cacheable(shared_data):
    with shared_data("prompts_arena_hard_v01.jsonl").open(encoding="utf-8") as fh:
        prompts = [json.loads(line) for _, line in zip(range(60), fh, strict=False)]
    rules = " ".join(f"Rule {i}: answer precisely and cite code when needed." for i in range(120))
    system = ["You are a careful assistant.\n\n" + rules]
    out = replay(prompts, system, turns=4, conversations=3)
    assert out["naive"]["openai"]["cacheable_tokens"] == 0  # the time stamp leads every prompt
    assert out["layout"]["openai"]["cacheable_tokens"] > 0
    assert out["layout"]["openai"]["usd_with_cache"] < out["naive"]["openai"]["usd_with_cache"]
    assert out["naive"]["anthropic"]["cache_read_tokens"] == 0
    assert out["layout"]["anthropic"]["cache_read_tokens"] > 0
    assert out["layout_minus_naive_usd"]["anthropic"] < 0
