import tokenlean.budget as budget


def test_public_api_is_pinned() -> None:
    assert budget.__all__ == [
        "Account",
        "Budget",
        "BudgetLayer",
        "BudgetStore",
        "Claim",
        "LengthModel",
        "Plan",
        "SQLiteBudgetStore",
        "length_instruction",
        "with_length_instruction",
    ]
    for name in budget.__all__:
        assert getattr(budget, name) is not None
