import asyncio
import json

import pytest

from tokenlean.core import ConfigError, InvalidRequestError, count_tokens
from tokenlean.templates import (
    PASS_DESCRIPTIONS,
    TemplateRewriter,
    check_invariants,
    diff,
    find_variables,
)

VERBOSE = (
    "I want you to act as a travel guide for {city}.   Please   suggest places to visit.\n\n\n\n"
    "I will provide you with my location and it will be your job to come up with a plan "
    "in order to make the trip easy. Do not write explanations. Do not use emojis. "
    "Do not write explanations. Basically, the plan must fit in 3 days. "
    'Thank you so much!\nMy first request is "I am in Paris."'
)


def fast() -> TemplateRewriter:
    return TemplateRewriter(scorer=None)


def test_safe_rewrite_saves_tokens_and_keeps_invariants():
    r = fast().rewrite(VERBOSE)
    assert r.text.startswith("Act as a travel guide for {city}. Suggest places to visit.")
    assert "in order to" not in r.text and "Thank you" not in r.text
    assert "Don't write explanations or use emojis." in r.text
    assert r.text.count("explanations") == 1
    assert '"I am in Paris."' in r.text and "{city}" in r.text and "3 days" in r.text
    assert "must fit in 3 days" in r.text
    assert r.saved_tokens == r.tokens_before - r.tokens_after > 10
    assert r.tokens_before == count_tokens(VERBOSE, model="gpt-4o").tokens
    assert check_invariants(VERBOSE, r.text) == [] and r.violations == ()
    by_pass = {p.name: p.saved_tokens for p in r.passes}
    assert set(by_pass) == set(PASS_DESCRIPTIONS) - {"markdown", "structure", "telegraphic"}
    assert by_pass["filler"] > 0 and by_pass["whitespace"] > 0 and by_pass["constraints"] > 0
    assert sum(by_pass.values()) == r.saved_tokens
    assert r.variables == ("{city}",)
    assert r.similarity is None


def test_protected_text_is_never_touched():
    text = ('Please answer "I want you to act as a please   thing" and keep `in order to` '
            "as is.\n```\nI want you to    act as\n```\nSee https://x.org/in-order-to.")
    r = fast().rewrite(text)
    for item in ('"I want you to act as a please   thing"', "`in order to`",
                 "```\nI want you to    act as\n```", "https://x.org/in-order-to"):
        assert item in r.text
    assert r.text.startswith("Answer ")


def test_a_pass_breaking_a_constraint_is_reverted_for_that_sentence():
    text = "You must reply in order to win. Please be brief in order to help."
    r = fast().rewrite(text)
    assert check_invariants(text, r.text) == []
    assert "in order to win" in r.text  # inside the "must" clause: edit refused
    assert r.text.endswith("Be brief to help.")
    connectives = next(p for p in r.passes if p.name == "connectives")
    assert connectives.applied and connectives.partial


def test_whitespace_mode_only_touches_whitespace():
    r = TemplateRewriter(mode="whitespace", scorer=None).rewrite("I want you to   act as X.  \n")
    assert r.text == "I want you to act as X."
    assert [p.name for p in r.passes] == ["whitespace"]


def test_memoised_and_async_twin():
    rw = fast()
    first = rw.rewrite(VERBOSE)
    assert rw.cached(VERBOSE) is first
    assert rw.rewrite(VERBOSE) is first
    assert asyncio.run(rw.arewrite(VERBOSE)) is first
    assert rw.rewrite_many([VERBOSE, "x"])[0] is first


def test_diff_views():
    r = fast().rewrite("I want you to act as a poet. Please write.")
    words = r.diff()
    assert words == "[-I want you to act-]{+Act+} as a poet. [-Please write.-]{+Write.+}"
    assert r.diff(style="unified").startswith("--- original")
    assert diff("a b", "a b") == "a b"
    with pytest.raises(ConfigError):
        r.diff(style="html")  # type: ignore[arg-type]


def test_config_and_input_errors():
    with pytest.raises(ConfigError):
        TemplateRewriter(mode="structural")  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        TemplateRewriter(passes=["nope"])
    with pytest.raises(ConfigError):
        TemplateRewriter(similarity_floor=2)
    with pytest.raises(InvalidRequestError):
        fast().rewrite_many("one string")
    with pytest.raises(InvalidRequestError):
        fast().rewrite(3)  # type: ignore[arg-type]


def test_private_use_text_left_alone():
    r = fast().rewrite("Please \ue000 act.")
    assert r.text == r.original and r.notes


class _Strict:
    """A scorer that dislikes any rewrite shorter than 95% of the original."""

    name = "strict-length"

    def similarities(self, pairs):
        return [min(1.0, len(b) / len(a)) / 0.95 * 0.84 if len(b) < 0.95 * len(a) else 0.99
                for a, b in pairs]


def test_similarity_floor_backs_off_passes():
    r = TemplateRewriter(scorer=_Strict()).rewrite(VERBOSE)
    assert r.similarity is not None and r.similarity >= 0.85
    assert any("backed off" in n for n in r.notes)
    assert any(p.skipped == "similarity" for p in r.passes)
    assert len(r.text) >= 0.95 * len(VERBOSE)


def test_minilm_similarity_is_measured(minilm):
    rw = TemplateRewriter(scorer=minilm)
    r = rw.rewrite(VERBOSE)
    assert r.similarity is not None and 0.85 <= r.similarity <= 1.0
    unrelated = minilm.similarities([(VERBOSE, "The mitochondria is the powerhouse of the cell.")])
    assert unrelated[0] < 0.5


def test_real_templates_sample_zero_violations(shared_data):
    with shared_data("templates_prompts_chat_dev.jsonl").open(encoding="utf-8") as fh:
        rows = [json.loads(line) for _, line in zip(range(60), fh, strict=False)]
    results = fast().rewrite_many([r["template"] for r in rows])
    assert sum(r.saved_tokens for r in results) > 0.03 * sum(r.tokens_before for r in results)
    for r in results:
        assert check_invariants(r.original, r.text) == []
        assert set(find_variables(r.original)) == set(find_variables(r.text))


def test_repeated_example_lines_are_structure_not_duplicates():
    text = ("Example 1. Context: Thank a colleague. Output: ${email}\n"
            "Example 2. Context: Ask for leave. Output: ${email}\n"
            "Write clear emails every day. Write clear emails every day.")
    r = fast().rewrite(text)
    assert r.text.count("Output: ${email}") == 2
    assert r.text.count("Write clear emails every day.") == 1


class CountingScorer:
    """A meaning scorer that says 'same meaning' and counts the texts it is asked about."""

    name = "counting"

    def __init__(self) -> None:
        self.pairs: list[tuple[str, str]] = []

    def similarities(self, pairs):
        self.pairs.extend(pairs)
        return [1.0 for _ in pairs]


def test_a_whitespace_only_rewrite_needs_no_meaning_check():
    scorer = CountingScorer()
    rewriter = TemplateRewriter(mode="safe", scorer=scorer)
    result = rewriter.rewrite("Answer   in French.\n\n\n\nKeep it short.")
    assert result.changed and result.similarity == 1.0
    assert scorer.pairs == []
    assert rewriter.rewrite("I want you to act as a translator. Please be brief.").changed
    assert len(scorer.pairs) == 1  # a pass that can change meaning is still checked


def test_a_text_longer_than_max_chars_gets_the_lossless_passes_only():
    scorer = CountingScorer()
    rewriter = TemplateRewriter(mode="safe", scorer=scorer, max_chars=100)
    long = "I want you to act as a   translator. " * 5
    result = rewriter.rewrite(long)
    assert result.text == " ".join(long.split())  # whitespace tidied, the filler kept
    skipped = {r.name: r.skipped for r in result.passes if r.skipped}
    assert skipped["filler"] == "longer than max_chars (100)"
    assert scorer.pairs == [] and rewriter.cached(long) is None  # not memoised
    assert rewriter.rewrite(long[:90]).text.startswith("Act as")  # short: every pass


def test_a_long_text_gets_its_meaning_check_when_it_repeats():
    scorer = CountingScorer()
    rewriter = TemplateRewriter(mode="safe", scorer=scorer, first_sight_max_chars=100)
    long = "I want you to act as a   translator. " * 5
    first = rewriter.rewrite(long)
    assert first.text == " ".join(long.split())  # lossless passes only
    skipped = {r.name: r.skipped for r in first.passes if r.skipped}
    assert skipped["filler"].startswith("first sight")
    assert scorer.pairs == [] and rewriter.cached(long) is None
    second = rewriter.rewrite(long)  # seen again: an app's template
    assert second.text.startswith("Act as") and len(scorer.pairs) == 1
    assert rewriter.cached(long) is second  # memoised from now on
    assert rewriter.rewrite(long) is second and len(scorer.pairs) == 1
    short = long[:90]
    assert rewriter.rewrite(short).text.startswith("Act as")  # short: every pass at once


def test_first_sight_deferral_is_off_without_a_scorer_or_a_limit():
    long = "I want you to act as a   translator. " * 5
    for rewriter in (TemplateRewriter(mode="safe", scorer=None, first_sight_max_chars=100),
                     TemplateRewriter(mode="safe", scorer=CountingScorer())):
        assert rewriter.rewrite(long).text.startswith("Act as")
    with pytest.raises(ConfigError, match="first_sight_max_chars"):
        TemplateRewriter(first_sight_max_chars=-1)
