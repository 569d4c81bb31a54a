"""The provider prompt-cache rules the audit bills with (``AuditOptions.prefix_cache``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tokenlean.audit import AuditOptions, audit_log
from tokenlean.audit._prefix import PrefixCache, rules_for
from tokenlean.core import Message

WORDS = " ".join(f"rule{i} says the lighthouse keeper logs ships at dusk" for i in range(200))


def _chat(*texts: str, system: str = WORDS) -> list[Message]:
    roles = ["user", "assistant"]
    return [Message(role="system", content=system),
            *(Message(role=roles[i % 2], content=t) for i, t in enumerate(texts))]


def test_rules_follow_the_provider() -> None:
    assert not rules_for("gpt-4o").breakpoints
    assert rules_for("claude-sonnet-4-5").breakpoints
    assert rules_for("anthropic/claude-3-5-haiku").min_tokens == 2048
    assert rules_for("claude-sonnet-4-5").min_tokens == 1024


def test_automatic_caching_reads_the_shared_prefix_in_128_token_steps() -> None:
    cache = PrefixCache("gpt-4o")
    assert cache.bill(_chat("first question")) == (0, 0)  # nothing cached yet
    read, write = cache.bill(_chat("second question"))
    assert write == 0
    assert read >= 1024 and read % 128 == 0
    # the prefix ends inside the system prompt: the differing user turn is not read
    system_tokens = len(cache._tokenizer.encode(WORDS))
    assert read <= system_tokens + 10


def test_automatic_caching_needs_1024_tokens() -> None:
    cache = PrefixCache("gpt-4o")
    short = "A short system prompt."
    cache.bill(_chat("q", system=short))
    assert cache.bill(_chat("q", system=short)) == (0, 0)


def test_a_rewritten_prefix_is_not_read() -> None:
    cache = PrefixCache("gpt-4o")
    cache.bill(_chat("q"))
    assert cache.bill(_chat("q", system="Changed. " + WORDS)) == (0, 0)


def test_breakpoints_write_then_read_at_message_boundaries() -> None:
    cache = PrefixCache("claude-sonnet-4-5")
    read, write = cache.bill(_chat("first question"))
    assert read == 0 and write > 1000  # the system prompt's breakpoint is written
    first_turn_system = write
    # a conversation in progress: the system prompt is read, the rest up to the end written
    read, write = cache.bill(_chat("first question", "an answer", "second question"))
    assert read == first_turn_system and write > 0
    # the next turn reads everything the previous one wrote
    read2, _ = cache.bill(_chat("first question", "an answer", "second question",
                                "another answer", "third question"))
    assert read2 == read + write


def test_single_turn_prompts_get_no_end_breakpoint() -> None:
    cache = PrefixCache("claude-sonnet-4-5")
    long_user = WORDS + " and more"
    # no system prompt, one long user message: nothing is written, nothing read
    assert cache.bill([Message(role="user", content=long_user)]) == (0, 0)
    assert cache.bill([Message(role="user", content=long_user)]) == (0, 0)


def _multi_turn_log(tmp_path: Path) -> Path:
    rows = []
    history: list[dict] = [{"role": "system", "content": WORDS}]
    for turn in range(4):
        history.append({"role": "user", "content": f"Question {turn}: what happens at dusk?"})
        answer = f"Answer {turn}: the keeper logs ships."
        rows.append({"request": {"model": "gpt-4o", "messages": list(history),
                                 "temperature": 0},
                     "response": {"choices": [{"index": 0, "finish_reason": "stop",
                                               "message": {"role": "assistant",
                                                           "content": answer}}]}})
        history.append({"role": "assistant", "content": answer})
    path = tmp_path / "chat.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.mark.parametrize("price_as", ["gpt-4o", "claude-sonnet-4-5"])
def test_the_audit_bills_the_prompt_cache_before_and_after(tmp_path: Path,
                                                           price_as: str) -> None:
    path = _multi_turn_log(tmp_path)
    report = audit_log(path, options=AuditOptions(price_as=price_as, preset="safe",
                                                  choices={"cache": False},
                                                  prefix_cache=True))
    block = report["prefix_cache"]
    assert block["before"]["cache_read"] > 3 * 1024  # turns 2-4 read the system prompt
    # the safe preset's whitespace templates keep every prefix: both sides read alike
    assert block["after"]["cache_read"] == block["before"]["cache_read"]
    # billed with the cache, the same traffic costs less than at the list rate
    assert block["cost_usd_before"] < report["cost_usd_before"]
    assert any("Provider prompt cache" in note for note in report["notes"])
    plain = audit_log(path, options=AuditOptions(price_as=price_as, preset="safe",
                                                 choices={"cache": False}))
    assert "prefix_cache" not in plain
    assert plain["cost_usd_before"] == report["cost_usd_before"]


def test_cli_prints_the_prompt_cache_line(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from tokenlean.cli import app

    path = _multi_turn_log(tmp_path)
    result = CliRunner().invoke(app, ["audit", str(path), "--prefix-cache", "--cache", "off"])
    assert result.exit_code == 0, result.output
    assert "with the provider's prompt cache billed" in result.output
    as_json = CliRunner().invoke(app, ["audit", str(path), "--prefix-cache", "--json"])
    assert json.loads(as_json.stdout)["prefix_cache"]["before"]["cache_read"] > 0
