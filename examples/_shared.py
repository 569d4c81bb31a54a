"""What every example shares: the local server, command-line options, the side-by-side table.

The backend is tokenlean's own OpenAI-compatible server, offline:

``local_server(None)`` loads SmolLM2-135M-Instruct (from its wheel) and serves it
on a loopback port for the duration of the block; ``local_server(url)`` uses a
server you already run (``tokenlean serve``). The server also answers to the
name ``gpt-4o``, so apps that price calls by the model they asked for (the
LlamaIndex cost handler, say) price the local answers as if gpt-4o gave them.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

PRICED_AS = "gpt-4o"


@contextmanager
def local_server(base_url: str | None = None) -> Iterator[str]:
    """Yields the OpenAI base URL (``.../v1``)."""
    if base_url:
        yield base_url.rstrip("/")
        return
    from tokenlean.server import DEFAULT_MODEL_NAME, Engine, ServerThread, create_app, load_model

    model, tokenizer = load_model()
    app = create_app(Engine(model, tokenizer), model_name=DEFAULT_MODEL_NAME,
                     aliases=[PRICED_AS])
    with ServerThread(app) as server:
        yield f"{server.url}/v1"


def parse_args(doc: str, argv: list[str] | None, *, questions: int,
               max_tokens: int) -> argparse.Namespace:
    """``--questions N`` (the first N of the script), ``--max-tokens``, ``--base-url``."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--questions", type=int, default=questions)
    parser.add_argument("--max-tokens", type=int, default=max_tokens)
    parser.add_argument("--base-url", help="a running `tokenlean serve` (default: start one)")
    return parser.parse_args(argv)


def totals(ledger: Any) -> dict[str, float | None]:
    """One run's books, from its ledger (``cost_usd`` None, unknown, if a call had no price)."""
    rows = list(ledger.records())
    unpriced = any(r.cost is None and not r.cached for r in rows)
    return {
        "calls": len(rows),
        "input_tokens": sum(r.usage.input_tokens for r in rows),
        "output_tokens": sum(r.usage.output_tokens for r in rows),
        "cost_usd": None if unpriced else float(sum(r.cost_usd or 0 for r in rows)),
        "cache_hits": sum(r.cached for r in rows),
    }


def report(result: dict[str, Any], questions: Sequence[str] = (), raw: Sequence[str] = (),
           lean: Sequence[str] = ()) -> None:
    """Print the raw and the lean run side by side, then each question's two answers."""
    print(f"{'':14}{'raw':>14}{'lean':>14}")
    for key in ("calls", "input_tokens", "output_tokens", "cache_hits", "cost_usd"):
        cells = [result[run][key] for run in ("raw", "lean")]
        print(f"{key:14}" + "".join(  # an unknown cost is "unknown", never $0
            f"{'unknown':>14}" if value is None else
            f"{value:>14.6f}" if key == "cost_usd" else f"{value:>14}" for value in cells))
    for question, before, after in zip(questions, raw, lean, strict=True):
        print(f"\nQ: {question}\n  raw : {before.strip()[:120]}\n  lean: {after.strip()[:120]}")
