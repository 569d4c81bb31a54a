import tokenlean.budget as budget


def test_public_api_is_pinned() -> None:
    assert budget.__all__ == [
        "Account",
        "Budget",
        "BudgetLayer",
        "BudgetStore",
        "Claim",
        "ContinuingProvider",
        "Example",
        "FEATURE_NAMES",
        "LengthModel",
        "LengthPredictor",
        "PREDICTED_MAX_TOKENS_KEY",
        "Plan",
        "RedisBudgetStore",
        "SQLiteBudgetStore",
        "evaluate_length_predictor",
        "length_instruction",
        "load_examples",
        "prompt_features",
        "train_length_predictor",
        "with_length_instruction",
    ]
    for name in budget.__all__:
        assert getattr(budget, name) is not None
