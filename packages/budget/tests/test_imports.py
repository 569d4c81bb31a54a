import tokenlean.budget as budget


def test_public_api_is_pinned() -> None:
    assert budget.__all__ == [
        "Account",
        "Budget",
        "BudgetLayer",
        "BudgetStore",
        "Claim",
        "ContinuingProvider",
        "FEATURE_NAMES",
        "LengthModel",
        "LengthPredictor",
        "PREDICTED_MAX_TOKENS_KEY",
        "Plan",
        "RedisBudgetStore",
        "SQLiteBudgetStore",
        "length_instruction",
        "prompt_features",
        "with_length_instruction",
    ]
    for name in budget.__all__:
        assert getattr(budget, name) is not None
