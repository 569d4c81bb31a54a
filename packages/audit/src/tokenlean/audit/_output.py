"""The audit's output row: what concise mode would save on the log's output, as an
**estimate** from measured ratios, never as a replayed saving.

A log holds the answers the model gave, not the ones it would give when asked to
be concise, so the replay cannot measure this. What the audit can justify: the
ratio ``concise output tokens / unconstrained output tokens`` that
``tokenlean bench output`` measured per task type, applied to the log's output
tokens of the same task type (:func:`tokenlean.budget.detect_task_type`), only
for the types concise mode applies to by default (code, math and reasoning are
left as asked), only where the measurement shortened answers, and only for types
measured on at least :data:`MIN_ROWS` rows. The report
names the file and the run the ratios come from.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from tokenlean.core import InvalidRequestError, Message
from tokenlean.core._optional import require

__all__ = ["MIN_ROWS", "OutputRatios", "OutputTally", "load_output_ratios"]

#: a ratio measured on fewer rows of a type justifies nothing for that type
MIN_ROWS = 5


@dataclass(frozen=True, slots=True)
class OutputRatios:
    """Measured ``output_ratio`` (concise / unconstrained) and rows per task type. A type
    measured on fewer than ``min_rows`` rows is not estimated."""

    ratios: Mapping[str, float]
    rows: Mapping[str, int]
    source: str
    min_rows: int = MIN_ROWS

    @classmethod
    def from_report(cls, report: Any, *, origin: str) -> OutputRatios:
        """From a ``tokenlean bench output`` report (its ``by_task_type``)."""
        by_type = report.get("by_task_type") if isinstance(report, Mapping) else None
        if not isinstance(by_type, Mapping) or not by_type:
            raise InvalidRequestError(
                f"{origin}: not a `tokenlean bench output` report (no by_task_type); "
                "run `tokenlean bench output FILE > ratios.json` and pass that file")
        ratios: dict[str, float] = {}
        rows: dict[str, int] = {}
        for task, entry in by_type.items():
            ratio = entry.get("output_ratio") if isinstance(entry, Mapping) else None
            if ratio is None:
                continue  # no output on that type in the run: nothing measured
            if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or ratio < 0:
                raise InvalidRequestError(f"{origin}: by_task_type.{task}.output_ratio must be "
                                          f"a non-negative number, got {ratio!r}")
            ratios[str(task)] = float(ratio)
            rows[str(task)] = int(entry.get("rows") or 0)
        source = (f"tokenlean bench output on {report.get('data', '?')} "
                  f"({report.get('rows', '?')} rows, {report.get('model', '?')}, "
                  f"max_new_tokens {report.get('max_new_tokens', '?')}) read from {origin}")
        return cls(ratios=ratios, rows=rows, source=source)


def load_output_ratios(path: str | Path) -> OutputRatios:
    """The ratios in a ``tokenlean bench output`` JSON file."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidRequestError(f"cannot read {p}: {exc.strerror or exc}") from None
    lines = [line for line in text.splitlines() if line.strip()]
    try:
        report = json.loads(lines[-1] if lines else "")  # the command prints one JSON line
    except json.JSONDecodeError:
        try:
            report = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InvalidRequestError(f"{p} is not JSON ({exc})") from None
    return OutputRatios.from_report(report, origin=str(p))


def task_type(messages: Sequence[Message]) -> str:
    budget = require("tokenlean.budget", extra="budget", feature="the audit's output estimate")
    return str(budget.detect_task_type(messages))


def concise_by_default(task: str) -> bool:
    budget = require("tokenlean.budget", extra="budget", feature="the audit's output estimate")
    return task in budget.CONCISE_TASK_TYPES


@dataclass
class OutputTally:
    """Output tokens of the log's answered calls, per task type (the estimate's base)."""

    tokens: dict[str, int] = field(default_factory=dict)
    calls: dict[str, int] = field(default_factory=dict)
    already_concise: int = 0

    def add(self, task: str, output_tokens: int) -> None:
        self.tokens[task] = self.tokens.get(task, 0) + output_tokens
        self.calls[task] = self.calls.get(task, 0) + 1

    def estimate(self, ratios: OutputRatios, rate_out: Decimal,
                 cost_before: Decimal) -> dict[str, Any]:
        by_type: dict[str, dict[str, Any]] = {}
        total = 0
        for task in sorted(self.tokens):
            ratio = ratios.ratios.get(task)
            allowed = task != "unknown" and concise_by_default(task)
            saved = 0
            why = "estimated"
            if not allowed:
                why = ("task type unknown (no text in the log)" if task == "unknown" else
                       "concise mode leaves this type as asked (opt in with concise_task_types)")
            elif ratio is None:
                why = "no measured ratio for this type"
            elif ratios.rows.get(task, 0) < ratios.min_rows:
                why = (f"measured on {ratios.rows.get(task, 0)} row(s); at least "
                       f"{ratios.min_rows} needed")
            elif ratio >= 1:
                why = "the measurement did not shorten answers of this type"
            else:
                saved = round(self.tokens[task] * (1 - ratio))
            total += saved
            by_type[task] = {
                "calls": self.calls[task], "output_tokens": self.tokens[task],
                "measured_ratio": ratio, "measured_rows": ratios.rows.get(task, 0),
                "concise_by_default": allowed, "est_saved_output_tokens": saved,
                "est_saved_usd": round(float(saved * rate_out), 6), "why": why,
            }
        usd = total * rate_out
        return {
            "kind": "estimate", "source": ratios.source,
            "est_saved_output_tokens": total, "est_saved_usd": round(float(usd), 6),
            "est_saved_share": round(float(usd / cost_before), 4) if cost_before else 0.0,
            "already_concise_calls": self.already_concise, "by_task_type": by_type,
        }
