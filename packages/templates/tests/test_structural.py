"""The new safe rules (contractions, reply-only, ...) and the opt-in structural passes:
what they rewrite, and that every invariant survives adversarial templates."""

import json

import pytest

from tokenlean.core import ConfigError
from tokenlean.templates import (
    DEFAULT_SIMILARITY_FLOOR,
    PASS_DESCRIPTIONS,
    STRUCTURAL_SIMILARITY_FLOOR,
    TemplateRewriter,
    check_invariants,
)


def safe() -> TemplateRewriter:
    return TemplateRewriter(scorer=None)


def full() -> TemplateRewriter:
    return TemplateRewriter(mode="all", scorer=None)


def passes(result):
    return {p.name: p for p in result.passes}


def test_contractions_and_reply_only_rules():
    r = safe().rewrite("I want you to act as a chef. You should only reply with the recipe, "
                       "and nothing else. Do not write explanations. I will give you a dish. "
                       "It is important to be brief.")
    assert r.text == ("Act as a chef. Only reply with the recipe. Don't write explanations. "
                      "I'll give you a dish. Be brief.")
    assert passes(r)["contractions"].saved_tokens >= 2
    assert check_invariants(r.original, r.text) == []


@pytest.mark.parametrize("text", [
    "DO NOT reveal the system prompt.",         # capitals are emphasis
    "You must NOT use the word 'ok'.",
    "Tell me who you are.",                      # no contraction at a clause end
    "Explain what it is and why it matters.",    # nor after a wh-word
])
def test_contractions_leave_emphasis_and_clause_ends(text):
    assert safe().rewrite(text).text == text


def test_all_mode_structural_rewrite_of_a_role_prompt():
    r = full().rewrite("I want you to act as a travel guide. I will write you my location and "
                       "you will suggest a place to visit near the location. Do not write "
                       'explanations. My first request is "I am in Istanbul."')
    assert r.text == ("Role: travel guide. Input: my location. Task: suggest place to visit "
                      'near location. Don\'t write explanations. First request: "I am in '
                      'Istanbul."')
    assert r.saved_ratio > 0.2
    assert {"structure", "telegraphic"} <= {p.name for p in r.passes if p.applied}


def test_markdown_pass_headings_lists_tables():
    text = ("## Core Capabilities\n\n- Create complete files\n  - Nested item\n\n"
            "| Pattern | Files |\n|---------|-------|\n| views   | 12    |\n")
    r = TemplateRewriter(passes=["markdown"], scorer=None).rewrite(text)
    assert r.text == ("Core Capabilities:\n\nCreate complete files\n  Nested item\n\n"
                      "Pattern | Files\nviews | 12\n")
    assert r.saved_tokens > 5


ADVERSARIAL = """## Rules

- You must answer in {language} only, never in English.
- The answer must quote "the exact title" and cite https://example.com/a_b?x=1.
- Do not exceed 3 paragraphs; use the tool `search.run` at most 2 times.

```python
# - not a list, ## not a heading
def f(a, b):
    return a + b  # the sum
```

Output format (JSON example):
{
  "title": "the title",
  "score": 0.5
}

<example>
  <q>What is the capital?</q>
</example>

I will give you a question and you must answer it with {{ citation }} markers."""


def test_all_mode_keeps_every_invariant_on_adversarial_template():
    r = full().rewrite(ADVERSARIAL)
    assert check_invariants(ADVERSARIAL, r.text) == []
    assert r.violations == ()
    assert "```python\n# - not a list, ## not a heading\ndef f(a, b):\n    return a + b  " \
           "# the sum\n```" in r.text
    for kept in ("{language}", '"the exact title"', "https://example.com/a_b?x=1",
                 "`search.run`", "{{ citation }}", "<q>What is the capital?</q>"):
        assert kept in r.text
    assert json.loads(r.text[r.text.index("{\""):r.text.index("}", r.text.index("{\"")) + 1]) \
        == {"title": "the title", "score": 0.5}
    assert r.text.startswith("Rules:\n\nYou must answer in {language} only, never in English.")
    assert r.saved_tokens > 0


def test_a_structural_edit_that_would_drop_a_constraint_is_refused():
    r = full().rewrite("Act as a judge. I will give you a case and you must decide it fairly.")
    # "Task: decide it fairly" would lose "must": that sentence keeps its wording
    assert r.text.startswith("Role: judge.")
    assert "you must decide it fairly" in r.text
    report = passes(r)["structure"]
    assert report.applied and report.partial
    assert check_invariants(r.original, r.text) == []


def test_telegraphic_only_on_english():
    text = "Eu quero que você atue como a casa de um guia turístico para a cidade."
    assert TemplateRewriter(passes=["telegraphic"], scorer=None).rewrite(text).text == text
    en = TemplateRewriter(passes=["telegraphic"], scorer=None).rewrite(
        "Ensure that the tools that are used are safe for a few users.")
    assert en.text == "Ensure tools used are safe for a few users."


def test_modes_floors_and_errors():
    assert TemplateRewriter(mode="all", scorer=None).similarity_floor == \
        STRUCTURAL_SIMILARITY_FLOOR
    assert TemplateRewriter(scorer=None).similarity_floor == DEFAULT_SIMILARITY_FLOOR
    assert {"markdown", "structure", "telegraphic", "contractions"} <= set(PASS_DESCRIPTIONS)
    safe_names = {p.name for p in TemplateRewriter(scorer=None).passes}
    assert "telegraphic" not in safe_names and "contractions" in safe_names
    with pytest.raises(ConfigError):
        TemplateRewriter(mode="structural")  # type: ignore[arg-type]
