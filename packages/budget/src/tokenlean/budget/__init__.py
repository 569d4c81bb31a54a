"""tokenlean.budget: token and $ budgets with reservations, ``max_tokens``
prediction, concise mode and truncation safety (layer 4).

>>> from tokenlean.budget import Budget, BudgetLayer
>>> layer = BudgetLayer(budgets=[Budget(name="monthly", max_usd=50, scope="tenant")])
"""

from ._calibration import Calibration
from ._concise import concise_types, length_instruction, with_length_instruction
from ._continue import ContinuingProvider
from ._features import FEATURE_NAMES
from ._features import features as prompt_features
from ._fresh import use_fresh_stores
from ._layer import PREDICTED_MAX_TOKENS_KEY, BudgetLayer, LengthModel, Plan
from ._predictor import LengthPredictor
from ._redis import RedisBudgetStore
from ._spec import Budget
from ._store import Account, BudgetStore, Claim, SQLiteBudgetStore
from ._task_type import CONCISE_TASK_TYPES, TASK_TYPES, detect_task_type

__all__ = [
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
