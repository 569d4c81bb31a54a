import tokenlean.budget as budget


def test_public_api_is_pinned() -> None:
    assert budget.__all__ == [
        "Account",
        "Budget",
        "BudgetLayer",
        "BudgetStore",
        "Calibration",
        "CONCISE_TASK_TYPES",
        "Claim",
        "ContinuingProvider",
        "FEATURE_NAMES",
        "LengthModel",
        "LengthPredictor",
        "PREDICTED_MAX_TOKENS_KEY",
        "Plan",
        "RedisBudgetStore",
        "SQLiteBudgetStore",
        "TASK_TYPES",
        "concise_types",
        "detect_task_type",
        "length_instruction",
        "prompt_features",
        "use_fresh_stores",
        "with_length_instruction",
    ]
    for name in budget.__all__:
        assert getattr(budget, name) is not None
