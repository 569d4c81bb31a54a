"""tokenlean.budget: token and $ budgets with reservations, ``max_tokens``
prediction, concise mode and truncation safety (layer 4).

>>> from tokenlean.budget import Budget, BudgetLayer
>>> layer = BudgetLayer(budgets=[Budget(name="monthly", max_usd=50, scope="tenant")])
"""

from ._concise import length_instruction, with_length_instruction
from ._layer import BudgetLayer, LengthModel, Plan
from ._spec import Budget
from ._store import Account, BudgetStore, Claim, SQLiteBudgetStore

__all__ = [
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
