from hypothesis import given, settings
from hypothesis import strategies as st

from tokenlean.templates import check_invariants, constraint_clauses, find_variables
from tokenlean.templates._protect import mask, protected_spans


def test_find_variables_every_syntax():
    text = "Hi {name}, {{ topic }} in ${Lang:English} for [USER INPUT] {{x}}."
    assert find_variables(text) == ("{name}", "{{ topic }}", "${Lang:English}", "[USER INPUT]",
                                    "{{x}}")


def test_mask_round_trip_and_protection():
    text = ('Say "hello world" to {user}. See https://example.com/a?b=1 and `x = 2`.\n'
            "```python\nprint('hi')\n```\n{\n  \"a\": 1\n}\nVersion 3.14 of file.py")
    m = mask(text)
    assert m is not None
    assert m.unmask(m.text) == text
    for item in ('"hello world"', "{user}", "https://example.com/a?b=1", "`x = 2`", "3.14",
                 "file.py"):
        assert item not in m.text and item in m.originals


def test_violations_detected():
    original = 'Only reply in JSON. Never use "quotes" here. Give 3 ideas about {topic}.'
    assert check_invariants(original, original) == []
    kinds = {v.kind for v in check_invariants(original, "Reply in JSON. Give ideas.")}
    assert kinds == {"constraint", "quote", "number", "variable"}
    assert any(v.kind == "new variable"
               for v in check_invariants(original, original + " {extra}"))


def test_constraint_merge_is_covered():
    original = "Do not write explanations. Do not type commands."
    merged = "Do not write explanations or type commands."
    assert check_invariants(original, merged) == []
    assert check_invariants(original, "Do not write explanations.") != []
    assert ("not", frozenset({"write", "explanations"})) in constraint_clauses(original)


def test_json_example_may_be_compacted_but_not_changed():
    original = 'Answer like:\n{\n  "name": "x",\n  "n": 1\n}'
    assert check_invariants(original, 'Answer like:\n{"name":"x","n":1}') == []
    assert check_invariants(original, 'Answer like:\n{"name":"x","n":2}') != []


# ---- the sweep that made protected_spans linear gives the spans of the plain definition

def _spans_by_definition(text: str) -> list[tuple[int, int, str]]:
    """Each kind in precedence order; a span is taken when it overlaps no span taken
    before it (the quadratic check the sweep replaced, kept here as the oracle)."""
    from tokenlean.templates import _protect as p

    taken: list[tuple[int, int, str]] = []
    batches = [(p._FENCE, "code"), (p._FENCE_INLINE, "code"), (None, "json"),
               (p._XML_BLOCK, "xml"), (p._INLINE_CODE, "code"), (p._VARIABLES, "variable"),
               (p._URL, "url"), (p._QUOTES, "quote"), (p._TAG, "xml"), (p._DOTTED, "name"),
               (p._NUMBER, "number")]
    for pattern, kind in batches:
        if pattern is None:
            spans = list(p._json_blocks(text))
        else:
            spans = [m.span() for m in pattern.finditer(text)
                     if pattern is not p._XML_BLOCK or "\n" in m.group(0) or len(m.group(0)) > 40]
        for a, b in spans:
            if b > a and all(b <= s or a >= e for s, e, _ in taken):
                taken.append((a, b, kind))
    return sorted(taken)


_ALPHABET = '{}[]"\\\n ab1.,:`<>/x_-\'()$%'


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=_ALPHABET, max_size=300)
       | st.lists(st.sampled_from(['{"a": 1,', "[1, 2", "}", "]", '  "b": [3]', "{x}", 'say "q',
                                   "```", "`x`", "<a>", "</a>", "www.x.io", "3.5%", "v1.2"]),
                  max_size=30).map("\n".join))
def test_protected_spans_are_the_plain_definitions(text: str) -> None:
    assert protected_spans(text) == _spans_by_definition(text)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=' \t\n\r\u00a0ab1.,:;!?"`{}x', max_size=200))
def test_the_whitespace_pass_skips_only_what_it_would_leave_alone(text: str) -> None:
    """The quick test that lets a long, tidy text skip masking and checking: whenever it
    says "nothing to do", the whole masked pass agrees."""
    from dataclasses import replace

    from tokenlean.templates import TemplateRewriter
    from tokenlean.templates._passes import PASSES

    quick = TemplateRewriter(mode="whitespace", scorer=None, cache_size=0)
    full = TemplateRewriter(mode="whitespace", scorer=None, cache_size=0)
    full.passes = (replace(PASSES["whitespace"], may_change=None),)
    assert quick.rewrite(text).text == full.rewrite(text).text


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet=' \n\u00a0ab1.,"`{}x', max_size=60), st.data())
def test_the_quick_whitespace_check_accepts_only_what_keeps_every_item(
        text: str, data: st.DataObject) -> None:
    """check_invariants' quick path (only whitespace changed) is sound: whatever it
    accepts keeps every protected item verbatim and adds no variable."""
    from tokenlean.templates._protect import _whitespace_only

    cut = data.draw(st.integers(0, len(text)))
    edit = data.draw(st.sampled_from(["", " ", "  ", "\n", "\u00a0"]))
    rewrite = text[:cut] + edit + text[cut + data.draw(st.integers(0, 2)):]
    if _whitespace_only(text, rewrite):
        for start, end, _kind in protected_spans(text):
            assert text[start:end] in rewrite
        assert set(find_variables(rewrite)) <= set(find_variables(text))
