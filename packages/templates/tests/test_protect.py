from tokenlean.templates import check_invariants, constraint_clauses, find_variables
from tokenlean.templates._protect import mask


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
