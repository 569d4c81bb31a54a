"""The ``early-stop`` arm of ``tokenlean bench output``: the local server ends answers early.

:func:`generate` starts the real server (``tokenlean.server``: SmolLM2-135M-Instruct
from its wheel, or ``model_dir``) on a loopback port and sends each row as an
OpenAI chat request over HTTP, greedy, with the row's soft budget in the request's
``tokenlean`` field: past it, the server ends the answer at the first sentence or
paragraph boundary where the model's ``P(eos)`` reaches ``stop_confidence``
(``docs/layers/server.md``, "Early stopping"). Rows are sent concurrently, so the
engine decodes them batched; greedy output does not depend on the batch.

``python -m tokenlean.bench._output_early_stop`` runs the standalone measurement
of ``docs/benchmarks/server.md`` ("Early stopping"): MT-Bench prompts and SQuAD
questions with and without early stopping.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from tokenlean.core import Message, read_jsonl, read_prompts
from tokenlean.core._optional import require

__all__ = ["DEFAULT_MAX_TOKENS", "generate", "measure"]

DEFAULT_MAX_TOKENS = 512
_CLIENTS = 8


def _request(messages: Sequence[Message], max_tokens: int, soft: int | None,
             confidence: float | None) -> dict[str, Any]:
    body: dict[str, Any] = {"model": "local", "messages": [m.to_openai() for m in messages],
                            "max_tokens": max_tokens, "temperature": 0}
    if soft is not None:
        body["tokenlean"] = {"soft_max_tokens": soft}
        if confidence is not None:
            body["tokenlean"]["stop_confidence"] = confidence
    return body


def _stop_reason(reply: dict[str, Any]) -> str:
    """``"early"`` for an early stop, else the OpenAI ``finish_reason`` (stop, length)."""
    if (reply.get("tokenlean") or {}).get("stopped") == "early":
        return "early"
    return str(reply["choices"][0]["finish_reason"])


def _run(rows: Sequence[Sequence[Message]], budgets: Sequence[int | None], *,
         max_tokens: int, stop_confidence: float | None, model_dir: str | None,
         loaded: tuple[Any, Any] | None = None) -> list[dict[str, Any]]:
    server = require("tokenlean.server", extra="server", feature="the early-stop arm")
    import httpx

    model, tokenizer = loaded if loaded is not None else server.load_model(model_dir)
    engine = server.Engine(model, tokenizer, max_batch=_CLIENTS, max_queue=len(rows) + 1)
    app = server.create_app(engine, model_name="local",
                            default_max_tokens=max_tokens)
    with server.ServerThread(app) as running, \
            httpx.Client(base_url=running.url, timeout=None) as client:

        def one(i: int) -> dict[str, Any]:
            body = _request(rows[i], max_tokens, budgets[i], stop_confidence)
            response = client.post("/v1/chat/completions", json=body)
            if response.status_code != 200:
                raise RuntimeError(f"row {i}: HTTP {response.status_code}: {response.text[:300]}")
            reply: dict[str, Any] = response.json()
            return reply

        with ThreadPoolExecutor(_CLIENTS) as pool:
            return list(pool.map(one, range(len(rows))))


def _bench_model() -> Any:
    """The model and cap of the ``tokenlean bench output`` run this is called in, if any."""
    from tokenlean.core import ConfigError

    from .output import current_model

    try:
        return current_model()
    except ConfigError:
        return None


def generate(messages_per_row: list[list[Message]], soft_budgets: list[int], *,
             max_tokens: int | None = None, stop_confidence: float | None = None,
             model_dir: str | None = None) -> list[tuple[str, int, str]]:
    """``(answer text, output tokens, stop reason)`` per row, early stopping at each row's
    soft budget.

    The stop reason is ``"early"`` (ended at a boundary past the soft budget),
    ``"stop"`` (the model's own end) or ``"length"`` (``max_tokens``). Output tokens
    are the server's ``usage.completion_tokens`` (a natural end counts its
    end-of-sequence token; an early stop adds none). ``stop_confidence`` None is the
    server's default threshold.

    Called inside ``tokenlean bench output`` (its ``using_model(...)`` block) without
    ``model_dir``, it serves that run's model and uses its ``max_new_tokens`` as the
    hard cap (unless ``max_tokens`` is given), so the arms compare at one cap; else
    it loads ``model_dir`` (default SmolLM2-135M-Instruct), capped at ``max_tokens``
    (default :data:`DEFAULT_MAX_TOKENS`).
    """
    if len(messages_per_row) != len(soft_budgets):
        raise ValueError(f"{len(messages_per_row)} rows but {len(soft_budgets)} soft budgets")
    run = _bench_model() if model_dir is None else None
    cap = max_tokens if max_tokens is not None else \
        run.max_new_tokens if run is not None else DEFAULT_MAX_TOKENS
    replies = _run(messages_per_row, list(soft_budgets), max_tokens=cap,
                   stop_confidence=stop_confidence, model_dir=model_dir,
                   loaded=None if run is None else (run.model, run.tokenizer))
    return [(r["choices"][0]["message"]["content"] or "", int(r["usage"]["completion_tokens"]),
             _stop_reason(r)) for r in replies]


# -- the standalone measurement -----------------------------------------------------------


def _mt_rows(path: Path, limit: int) -> list[list[Message]]:
    rows = [list(messages) for _, messages in read_prompts(path)]
    return rows[:limit]


def _qa_rows(path: Path, limit: int) -> tuple[list[list[Message]], list[list[str]]]:
    rows, golds = [], []
    for _, row in read_jsonl(path, "qa"):
        prompt = (f"Answer the question from the context.\n\nContext: {row['context']}\n\n"
                  f"Question: {row['question']}")
        rows.append([Message(role="user", content=prompt)])
        golds.append([str(a) for a in row["answers"]])
        if len(rows) >= limit:
            break
    return rows, golds


def _summary(base: list[dict[str, Any]], early: list[dict[str, Any]],
             golds: list[list[str]] | None) -> dict[str, Any]:
    def tokens(replies: list[dict[str, Any]]) -> int:
        return sum(int(r["usage"]["completion_tokens"]) for r in replies)

    def text(r: dict[str, Any]) -> str:
        return str(r["choices"][0]["message"]["content"] or "").lower()

    out: dict[str, Any] = {
        "rows": len(base), "output_tokens_without": tokens(base),
        "output_tokens_with": tokens(early),
        "saved": round(1 - tokens(early) / max(tokens(base), 1), 3),
        "stopped_early": sum(_stop_reason(r) == "early" for r in early),
        "hit_max_tokens_without": sum(_stop_reason(r) == "length" for r in base),
        "hit_max_tokens_with": sum(_stop_reason(r) == "length" for r in early),
    }
    if golds is not None:
        def contained(replies: list[dict[str, Any]]) -> int:
            return sum(any(g.lower() in text(r) for g in gold)
                       for r, gold in zip(replies, golds, strict=True))
        out["gold_contained_without"] = contained(base)
        out["gold_contained_with"] = contained(early)
    return out


def measure(mt_path: Path, qa_path: Path, *, rows: int = 10, max_tokens: int = 256,
            ratio: float = 0.5, fixed: int | None = None,
            confidences: Sequence[float] = (0.0, 0.05)) -> dict[str, Any]:
    """Output tokens with and without early stopping on ``rows`` prompts of each file.

    The soft budget of a row is ``fixed`` tokens, or ``ratio`` times the length of
    its unconstrained answer; one early-stop run per threshold in ``confidences``.
    """
    mt = _mt_rows(mt_path, rows)
    qa, golds = _qa_rows(qa_path, rows)
    data = {"mt_bench": (mt, None), "squad": (qa, golds)}
    report: dict[str, Any] = {"max_tokens": max_tokens, "soft_budget": fixed if fixed is not None
                              else f"{ratio} x the unconstrained length"}
    for name, (messages, gold) in data.items():
        base = _run(messages, [None] * len(messages), max_tokens=max_tokens,
                    stop_confidence=None, model_dir=None)
        budgets = [fixed if fixed is not None
                   else math.ceil(ratio * int(r["usage"]["completion_tokens"])) for r in base]
        report[name] = {}
        for confidence in confidences:
            early = _run(messages, budgets, max_tokens=max_tokens, stop_confidence=confidence,
                         model_dir=None)
            report[name][f"stop_confidence={confidence}"] = _summary(base, early, gold)
            print(f"{name} stop_confidence={confidence}: "
                  f"{report[name][f'stop_confidence={confidence}']}", file=sys.stderr, flush=True)
    return report


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--mt", type=Path, default=Path("../shared/data/prompts_mt_bench.jsonl"))
    parser.add_argument("--qa", type=Path, default=Path("../shared/data/qa_squad_dev.jsonl"))
    parser.add_argument("--rows", type=int, default=10)
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--ratio", type=float, default=0.5)
    parser.add_argument("--fixed", type=int, default=None)
    parser.add_argument("--confidence", type=float, action="append", default=None)
    args = parser.parse_args(argv)
    print(json.dumps(measure(args.mt, args.qa, rows=args.rows, max_tokens=args.max_tokens,
                             ratio=args.ratio, fixed=args.fixed,
                             confidences=args.confidence or (0.0, 0.05)), indent=1))


if __name__ == "__main__":
    main()
