"""What the reservation counts besides the prompt text: each rule against its source."""

from __future__ import annotations

import base64
from decimal import Decimal

import pytest

from tokenlean.bench._reliability_budget import png
from tokenlean.budget import Budget, BudgetLayer
from tokenlean.budget._media import image_size, openai_image_tokens
from tokenlean.core import (
    ConfigError,
    InvalidRequestError,
    Message,
    ModelPrice,
    PriceTable,
    Request,
    count_messages,
)

PRICES = PriceTable(overrides={
    "gpt-4o": ModelPrice(input_per_mtok=Decimal(1), output_per_mtok=Decimal(2)),
    "o3": ModelPrice(input_per_mtok=Decimal(1), output_per_mtok=Decimal(2)),
    "claude-sonnet-4": ModelPrice(input_per_mtok=Decimal(3), output_per_mtok=Decimal(15),
                                  cache_write_per_mtok=Decimal("3.75")),
})


def _layer(**kwargs) -> BudgetLayer:
    return BudgetLayer(budgets=[Budget(name="c", max_usd=100, scope="call")], prices=PRICES,
                       **kwargs)


def _detail(request: Request, **kwargs) -> dict:
    return dict(_layer(**kwargs).process(request).notes[-1].detail)


def _user(content, **kwargs) -> Request:
    return Request(messages=(Message(role="user", content=content),), **kwargs)


def test_openai_tile_rule_matches_openais_worked_examples() -> None:
    # OpenAI's vision guide: 1024x1024 high = 765, 2048x4096 high = 1105, any size low = 85
    assert openai_image_tokens((1024, 1024), "high", "gpt-4o") == 765
    assert openai_image_tokens((2048, 4096), "high", "gpt-4o") == 1105
    assert openai_image_tokens((4096, 4096), "low", "gpt-4o") == 85
    assert openai_image_tokens(None, "auto", "gpt-4o") == 85 + 8 * 170  # unknown: 2048x768


@pytest.mark.parametrize("size", [(1024, 1024), (300, 7), (4000, 3000)])
def test_image_size_is_read_from_a_data_url(size) -> None:
    assert image_size(png(*size)) == size


def test_image_parts_are_reserved_by_size_and_detail() -> None:
    data = "data:image/png;base64," + base64.b64encode(png(1024, 1024)).decode()
    text = {"type": "text", "text": "What is this?"}
    base = count_messages([Message(role="user", content=(text,))], model="gpt-4o").tokens
    known = _user((text, {"type": "image_url", "image_url": {"url": data, "detail": "high"}}),
                  model="gpt-4o", max_tokens=10)
    url = _user((text, {"type": "image_url", "image_url": {"url": "https://x.test/a.png"}}),
                model="gpt-4o", max_tokens=10)
    low = _user((text, {"type": "image_url", "image_url": {"url": "https://x.test/a.png",
                                                           "detail": "low"}}),
                model="gpt-4o", max_tokens=10)
    assert _detail(known)["prompt_tokens"] == base + 765
    assert _detail(url)["prompt_tokens"] == base + 1445
    assert _detail(low)["prompt_tokens"] == base + 85
    claude = _user((text, {"type": "image", "source": {"type": "base64", "media_type":
                                                       "image/png", "data": data[22:]}}),
                   model="claude-sonnet-4", max_tokens=10)
    claude_base = count_messages([Message(role="user", content=(text,))],
                                 model="claude-sonnet-4").tokens
    assert _detail(claude)["prompt_tokens"] == claude_base + 1399  # 1024*1024/750


def test_n_and_best_of_multiply_the_output() -> None:
    plain = _detail(_user("Name a colour.", model="gpt-4o", max_tokens=50))
    ten = _detail(_user("Name a colour.", model="gpt-4o", max_tokens=50, params={"n": 10}))
    best = _detail(_user("Name a colour.", model="gpt-4o", max_tokens=50,
                         params={"n": 2, "best_of": 5}))
    prompt = plain["prompt_tokens"]
    assert plain["reserved_usd"] == pytest.approx((prompt + 2 * 50) / 1e6)
    assert ten["reserved_usd"] == pytest.approx((prompt + 2 * 500) / 1e6)
    assert best["reserved_usd"] == pytest.approx((prompt + 2 * 250) / 1e6)
    assert ten["max_tokens"] == 50  # the cap per completion is the app's
    with pytest.raises(InvalidRequestError, match="'n'"):
        _layer().process(_user("x", model="gpt-4o", params={"n": 0}))


def test_tools_add_the_providers_tool_prompt() -> None:
    tool = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
    bare = _detail(_user("hi", model="claude-sonnet-4", max_tokens=5))
    tools = _detail(_user("hi", model="claude-sonnet-4", max_tokens=5, tools=(tool,)))
    schema = count_messages([Message(role="user", content="hi")], model="claude-sonnet-4",
                            tools=(tool,)).tokens - bare["prompt_tokens"]
    assert tools["prompt_tokens"] == bare["prompt_tokens"] + schema + 530


def test_cache_write_is_reserved_at_the_write_rate() -> None:
    marked = ({"type": "text", "text": "policy " * 200, "cache_control": {"type": "ephemeral"}},)
    plain = ({"type": "text", "text": "policy " * 200},)
    a = _detail(_user(marked, model="claude-sonnet-4", max_tokens=1))
    b = _detail(_user(plain, model="claude-sonnet-4", max_tokens=1))
    assert a["prompt_tokens"] == b["prompt_tokens"]
    assert a["reserved_usd"] == pytest.approx((a["prompt_tokens"] * 3.75 + 15) / 1e6)
    assert b["reserved_usd"] == pytest.approx((b["prompt_tokens"] * 3 + 15) / 1e6)


def test_reasoning_models_get_headroom_when_the_app_sets_no_cap() -> None:
    assert _detail(_user("Prove it.", model="o3"))["max_tokens"] == 4096 + 25_000
    assert _detail(_user("Prove it.", model="o3"), reasoning_headroom=1000)["max_tokens"] == 5096
    assert _detail(_user("Prove it.", model="gpt-4o"))["max_tokens"] == 4096
    assert _detail(_user("Prove it.", model="gpt-4o",
                         params={"reasoning_effort": "low"}))["max_tokens"] == 4096 + 25_000
    capped = _user("Prove it.", model="o3", params={"max_completion_tokens": 900})
    assert _detail(capped)["max_tokens"] == 900  # the app's cap bounds reasoning too


def test_files_and_audio_are_bounded() -> None:
    pdf = b"%PDF-1.7\n" + b"<< /Type /Pages >>" + b"<< /Type /Page >>" * 3
    part = {"type": "file", "file": {"file_data": "data:application/pdf;base64,"
                                     + base64.b64encode(pdf).decode()}}
    by_id = {"type": "file", "file": {"file_id": "file-abc"}}
    text = count_messages([Message(role="user", content="")], model="gpt-4o").tokens
    assert _detail(_user((part,), model="gpt-4o", max_tokens=1))["prompt_tokens"] == text + 9000
    assert _detail(_user((by_id,), model="gpt-4o", max_tokens=1),
                   unknown_file_tokens=777)["prompt_tokens"] == text + 777
    wav = b"RIFF\x00\x00\x00\x00WAVEfmt " + bytes(12) + (32000).to_bytes(4, "little") \
        + bytes(32000 * 2 - 32)  # two seconds at 32,000 bytes/s (byte rate at offset 28)
    audio = {"type": "input_audio", "input_audio": {"data": base64.b64encode(wav).decode(),
                                                    "format": "wav"}}
    assert _detail(_user((audio,), model="gpt-4o", max_tokens=1))["prompt_tokens"] == text + 64
    with pytest.raises(ConfigError):
        _layer(unknown_file_tokens=-1)
