"""One error tree for everything tokenlean raises.

Catch :class:`TokenleanError` to handle any of them. Each message says what was
wrong and what to do about it.
"""

from __future__ import annotations

__all__ = [
    "BackendError",
    "BudgetExceeded",
    "ConfigError",
    "InvalidRequestError",
    "MissingExtraError",
    "TokenleanError",
    "TokenleanWarning",
]


class TokenleanError(Exception):
    """Root of every error tokenlean raises on purpose."""


class ConfigError(TokenleanError, ValueError):
    """A component was constructed with an invalid option (raised at construction)."""


class InvalidRequestError(TokenleanError, ValueError):
    """A request, message or input file does not have the shape tokenlean expects."""


class MissingExtraError(ConfigError, ImportError):
    """An optional dependency is needed; the message names the extra to install."""

    def __init__(self, *, feature: str, extra: str, module: str) -> None:
        self.feature, self.extra, self.module = feature, extra, module
        super().__init__(
            f"{feature} needs the optional module {module!r}: "
            f"install it with `pip install 'tokenlean[{extra}]'`"
        )


class BudgetExceeded(TokenleanError):
    """A call would spend more tokens or dollars than its budget allows."""

    def __init__(self, message: str, *, budget: str = "", limit: float = 0.0, spent: float = 0.0,
                 requested: float = 0.0) -> None:
        self.budget, self.limit, self.spent, self.requested = budget, limit, spent, requested
        super().__init__(message)


class BackendError(TokenleanError, RuntimeError):
    """A model backend (provider API, local server) failed; ``backend`` names which one."""

    def __init__(self, message: str, *, backend: str, status: int | None = None) -> None:
        self.backend, self.status = backend, status
        super().__init__(f"[{backend}] {message}")


class TokenleanWarning(UserWarning):
    """Something degraded (a store went away, a price is unknown) but the call went on."""
