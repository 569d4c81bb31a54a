"""Fuzzing the layer packages' public entry points (hypothesis).

Each property: a :class:`TokenleanError` with a message, or a correct result
-- never another exception, a hang, or a wrong cache entry. Inputs: odd roles,
content parts, surrogates and control characters, template braces, huge and
empty texts, NaN / infinite / negative / boolean numbers.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tokenlean.core import (
    BudgetExceeded,
    Message,
    Request,
    Response,
    TokenleanError,
    Usage,
    count_messages,
)

pytestmark = pytest.mark.fuzz
# max(own count, the profile's): the fuzz profile (-m fuzz) explores with more examples
SETTINGS = settings(max_examples=max(100, settings.default.max_examples), deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

texts = st.text(st.characters(exclude_categories=()), max_size=300)  # surrogates, controls
words = st.text(st.sampled_from("abc xyz .,?!\n{}0123456789é🙂"), max_size=400)
prose = st.one_of(texts, words, st.just(""),
                  st.builds(lambda w, n: (w + " ") * n, st.sampled_from(["Paris is big.", "x"]),
                            st.integers(200, 1500)))  # long inputs
numbers = st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True),
                    st.integers(-10, 10**6), st.booleans())
roles = st.one_of(st.sampled_from(["system", "user", "assistant", "tool", "developer"]),
                  st.text(max_size=8))
contents = st.one_of(prose, st.none(), st.integers(),
                     st.lists(st.one_of(st.fixed_dictionaries({"type": st.just("text"),
                                                               "text": prose}),
                                        st.dictionaries(st.text(max_size=4), st.integers(),
                                                        max_size=2)), max_size=3))
odd_messages = st.lists(st.fixed_dictionaries({"role": roles, "content": contents}),
                        min_size=0, max_size=6)
chat_messages = st.builds(  # well-formed chats (most odd ones are refused by Request)
    lambda turns, last: [*turns, {"role": "user", "content": last}],
    st.lists(st.fixed_dictionaries({"role": st.sampled_from(["system", "user", "assistant"]),
                                    "content": st.one_of(words, prose)}), max_size=5),
    st.one_of(words, prose))
raw_messages = st.one_of(odd_messages, chat_messages, chat_messages)


def _valid_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def _request(messages: Any, **kw: Any) -> Request | None:
    try:
        return Request(messages=messages, model=kw.pop("model", "gpt-4o"), **kw)
    except TokenleanError as exc:
        assert str(exc)
        return None


# ---- compress ---------------------------------------------------------------------------

@SETTINGS
@given(context=st.one_of(prose, st.lists(prose, max_size=4), st.integers(), st.none()),
       question=st.one_of(st.none(), prose, st.integers()), ratio=numbers, max_tokens=numbers)
def test_compressor_is_total(context: Any, question: Any, ratio: Any, max_tokens: Any) -> None:
    from tokenlean.compress import Compressor

    try:
        result = Compressor().compress(context, question, ratio=ratio, max_tokens=max_tokens)
    except TokenleanError as exc:
        assert str(exc)
        return
    assert 0 <= result.tokens_after <= result.tokens_before
    assert 0.0 <= result.retention <= 1.0
    if result.passthrough:
        assert result.tokens_after == result.tokens_before
    else:
        assert result.tokens_after <= result.budget
    if isinstance(max_tokens, int) and not isinstance(max_tokens, bool):
        assert result.budget <= max_tokens  # a hard cap


@SETTINGS
@given(messages=raw_messages, max_tokens=st.integers(1, 400), keep_last=st.integers(1, 5))
def test_history_compressor_is_total(messages: Any, max_tokens: int, keep_last: int) -> None:
    from tokenlean.compress import HistoryCompressor

    try:
        result = HistoryCompressor(max_tokens=max_tokens, keep_last=keep_last).compress(messages)
    except TokenleanError as exc:
        assert str(exc)
        return
    assert result.tokens_after <= result.tokens_before
    assert len(result.messages) == len(result.source) <= len(messages)
    assert list(result.source) == sorted(set(result.source))  # order kept, nothing invented
    kept = [i for i in range(len(messages)) if i not in result.dropped]
    assert list(result.source) == kept
    for out, i in zip(result.messages, result.source, strict=True):
        if i not in result.compressed:  # untouched messages come back as they were
            assert out == Message.from_openai(messages[i])


# ---- templates --------------------------------------------------------------------------

@SETTINGS
@given(template=st.one_of(prose, st.builds(lambda a, v, b: f"{a} {{{v}}} {b}", prose,
                                           st.sampled_from(["name", "0", "x_y", ""]), prose)),
       mode=st.sampled_from(["safe", "all", "whitespace"]))
def test_template_rewriter_is_total(template: str, mode: str) -> None:
    from tokenlean.templates import TemplateRewriter, find_variables

    rewriter = _rewriters.setdefault(mode, TemplateRewriter(mode=mode, scorer=None))
    try:
        result = rewriter.rewrite(template)
    except TokenleanError as exc:
        assert str(exc)
        return
    assert result.original == template
    assert result.tokens_after <= result.tokens_before
    assert result.violations == ()  # a rewrite with a broken invariant is never returned
    assert set(find_variables(result.text)) == set(find_variables(template))


_rewriters: dict[str, Any] = {}


# ---- budget -----------------------------------------------------------------------------

@SETTINGS
@given(messages=raw_messages, max_tokens=st.one_of(numbers, st.integers(1, 3000)),
       limit=st.integers(1, 5000),
       policy=st.sampled_from(["raise", "clamp", "warn"]))
def test_budget_layer_is_total(messages: Any, max_tokens: Any, limit: int, policy: str) -> None:
    import warnings

    from tokenlean.budget import Budget, BudgetLayer, LengthPredictor

    request = _request(messages, max_tokens=max_tokens)
    if request is None:
        return
    layer = BudgetLayer(budgets=[Budget(name="b", max_tokens=limit, scope="call", policy=policy)],
                        predictor=_predictor.setdefault("p", LengthPredictor.default()))
    prompt = count_messages(request.messages, model=request.model).tokens
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # policy 'warn' warns by design
            out = layer.process(request)
    except BudgetExceeded as exc:
        assert str(exc) and policy != "warn"
        return
    assert isinstance(out.max_tokens, int) and out.max_tokens >= 1
    if request.max_tokens is not None:
        assert out.max_tokens <= request.max_tokens
    if policy != "warn":
        assert prompt + out.max_tokens <= limit  # a bound that fits the budget, or a refusal


_predictor: dict[str, Any] = {}


@SETTINGS
@given(messages=raw_messages, model=st.one_of(st.none(), st.text(max_size=12)))
def test_length_predictor_is_total(messages: Any, model: str | None) -> None:
    from tokenlean.budget import LengthPredictor

    request = _request(messages)
    if request is None:
        return
    predicted = _predictor.setdefault("p", LengthPredictor.default()).predict(
        request.messages, model=model)
    assert isinstance(predicted, int) and 1 <= predicted < 10**6


@SETTINGS
@given(name=st.text(max_size=6), max_tokens=numbers, max_usd=numbers,
       scope=st.text(max_size=8), policy=st.text(max_size=8))
def test_budget_spec_validation(name: str, max_tokens: Any, max_usd: Any, scope: str,
                                policy: str) -> None:
    from tokenlean.budget import Budget

    try:
        budget = Budget(name=name, max_tokens=max_tokens, max_usd=max_usd, scope=scope,
                        policy=policy)
    except TokenleanError as exc:
        assert str(exc)
        return
    assert budget.max_tokens is None or budget.max_tokens >= 1
    assert budget.max_usd is None or (math.isfinite(float(budget.max_usd))
                                      and float(budget.max_usd) > 0)


# ---- cache keys -------------------------------------------------------------------------

@SETTINGS
@given(messages=raw_messages, tenant=st.text(max_size=6),
       temperature=st.one_of(st.none(), st.floats(0, 2), numbers),
       answer=texts)
# found in a CI run: a lone surrogate in the answer made the store fail (fixed)
@example(messages=[{"role": "system", "content": ""}], tenant="", temperature=None,
         answer="\ud800")
def test_cache_update_then_lookup_serves_only_its_own_entry(messages: Any, tenant: str,
                                                            temperature: Any, answer: str) -> None:
    from tokenlean.cache import ResponseCache

    request = _request(messages, tenant=tenant or "default", temperature=temperature)
    if request is None:
        return
    # the keys are under test, sampled calls included (by default they are not cached)
    cache = ResponseCache(semantic=False, cache_sampled=True)
    response = Response(text=answer, usage=Usage(input_tokens=3, output_tokens=2))
    try:
        cache.update(request, response)
    except TokenleanError as exc:
        assert str(exc)
        assert not _valid_utf8(answer)
        return
    hit = cache.lookup(request)
    assert hit is not None and hit.response.text == answer and hit.response.usage == response.usage
    # never served to another tenant, another question, or another model
    other_tenant = _request(request.messages, tenant=request.tenant + "'",
                            temperature=request.temperature)
    assert other_tenant is not None and cache.lookup(other_tenant) is None
    longer = _request([*request.messages, Message(role="user", content="and one more thing")],
                      tenant=request.tenant, temperature=request.temperature)
    assert longer is not None and cache.lookup(longer) is None
    other_model = _request(request.messages, tenant=request.tenant, model="gpt-4.1",
                           temperature=request.temperature)
    assert other_model is not None and cache.lookup(other_model) is None
    cache.close()
