"""The length predictor: features and the shipped artefact (training and the bench:
packages/bench/tests/test_budget.py)."""

from __future__ import annotations

import math

import pytest

from tokenlean.budget import FEATURE_NAMES, LengthPredictor, prompt_features
from tokenlean.core import ConfigError, Message


def user(text: str) -> list[Message]:
    return [Message(role="user", content=text)]


def feature(text: str, name: str) -> float:
    return prompt_features(user(text))[FEATURE_NAMES.index(name)]


def test_features_read_explicit_length_requests() -> None:
    assert len(prompt_features(user("hi"))) == len(FEATURE_NAMES)
    assert feature("Write a 500 word essay on tides.", "req_words") == pytest.approx(
        math.log1p(500))
    assert feature("Summarize this in one sentence.", "req_sentences") == pytest.approx(math.log(2))
    assert feature("List 10 names for a cat", "req_items") == pytest.approx(math.log1p(10))
    assert feature("Answer yes or no: is water wet?", "flag_one_word") == 1.0
    assert feature("```python\nprint(1)\n```\nWhy does this fail?", "has_code_block") == 1.0
    assert feature("Why? How? What?", "n_questions") == 3.0
    assert feature("Explique la photosynthèse en détail", "non_ascii_ratio") > 0


def test_artefact_with_other_features_is_refused() -> None:
    artefact = dict(LengthPredictor.default().artefact)
    artefact["feature_version"] = 999
    with pytest.raises(ConfigError, match="retrain"):
        LengthPredictor(artefact)


def test_shipped_predictor_reads_the_prompt() -> None:
    predictor = LengthPredictor.default()
    assert predictor.quantile == 0.92 and 0.5 in predictor.available_quantiles
    essay = predictor.predict(user("Write a 1500 word essay on the history of Rome."))
    one = predictor.predict(user("What is 2+2? Reply with only the number."))
    assert 16 <= one < essay <= 16384
    # predictions never cross: a higher quantile allows at least as much
    chats = [user("Explain how TCP congestion control works."), user("Name a colour.")]
    low = predictor.predict_many(chats, quantile=0.5)
    high = predictor.predict_many(chats, quantile=0.95)
    assert all(lo <= hi for lo, hi in zip(low, high, strict=True))
