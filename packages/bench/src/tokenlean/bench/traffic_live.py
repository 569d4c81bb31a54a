"""The live run of ``tokenlean bench traffic --shape rag --live``: the local model, raw and
through ``lean()``.

The first ``--live-limit`` generated ``rag`` calls are asked twice of the local
OpenAI-compatible server (SmolLM2-135M-Instruct, started as ``tokenlean demo``
starts it): once with ``ChatOpenAI(base_url=...)`` as is, once through
``lean(ChatOpenAI(...), preset="max-savings")`` (the LangChain integration the
demo uses, so the layers and their order are ``lean()``'s), with the replay's
layer keywords on top. Both arms use ``temperature=0`` and the same
``max_tokens`` (the app's cap; the budget layer may only lower it) and the
demo's ``stop=["\\n\\n"]``.

Quality is scored against the entry's gold answers (``metadata["answers"]``)
with SQuAD's normalisation (:func:`squad_normalise`): answer containment and
token F1 (max over the golds). Input tokens are counted per call with the
``price_as`` tokenizer: the raw arm's messages, and for the lean arm what the
layers left of them (their ledger records), 0 for a cache hit.
"""

from __future__ import annotations

import re
import string
import tempfile
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["DEFAULT_LIVE_LIMIT", "LIVE_MAX_TOKENS", "answer_scores", "containment",
           "run_live", "squad_normalise", "token_f1"]

DEFAULT_LIVE_LIMIT = 20
#: the app's output cap in both arms (a short extractive answer fits in it)
LIVE_MAX_TOKENS = 48
_NEEDS = ("tokenlean.server", "torch", "langchain_tokenlean", "langchain_openai")
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = frozenset(string.punctuation)


def squad_normalise(text: str) -> str:
    """SQuAD's answer normalisation: lower case, punctuation and articles removed,
    whitespace collapsed."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCT)
    return " ".join(_ARTICLES.sub(" ", text).split())


def containment(answer: str, golds: Sequence[str]) -> bool:
    """Whether any gold answer (normalised, non-empty) is contained in the normalised answer."""
    text = squad_normalise(answer)
    return any(g and g in text for g in map(squad_normalise, golds))


def token_f1(answer: str, golds: Sequence[str]) -> float:
    """SQuAD token F1 of ``answer`` against the best of ``golds`` (0.0 with no gold)."""
    pred = squad_normalise(answer).split()
    best = 0.0
    for gold in golds:
        ref = squad_normalise(gold).split()
        if not pred or not ref:
            best = max(best, float(pred == ref))
            continue
        common = sum((Counter(pred) & Counter(ref)).values())
        if common:
            precision, recall = common / len(pred), common / len(ref)
            best = max(best, 2 * precision * recall / (precision + recall))
    return best


def answer_scores(answer: str, golds: Sequence[str]) -> tuple[bool, float]:
    """(containment, token F1) of one answer."""
    return containment(answer, golds), token_f1(answer, golds)


def _mean(values: Sequence[float]) -> float | None:
    return round(sum(values) / len(values), 4) if values else None


def summarise_live(rows: Sequence[Mapping[str, Any]], *, model: str,
                   max_tokens: int, price_as: str) -> dict[str, Any]:
    """``quality["live"]`` from per-call rows (``golds``, ``raw``, ``lean``,
    ``in_raw``, ``in_lean``, ``cached``)."""
    raw = [answer_scores(r["raw"], r["golds"]) for r in rows]
    lean = [answer_scores(r["lean"], r["golds"]) for r in rows]
    return {
        "model": model, "calls": len(rows), "max_tokens": max_tokens,
        "containment_raw": _mean([float(c) for c, _ in raw]),
        "containment_lean": _mean([float(c) for c, _ in lean]),
        "f1_raw": _mean([f for _, f in raw]),
        "f1_lean": _mean([f for _, f in lean]),
        "input_tokens_raw": _mean([float(r["in_raw"]) for r in rows]),
        "input_tokens_lean": _mean([float(r["in_lean"]) for r in rows]),
        "input_tokens_counted_as": price_as,
        "answer_changed_share": _mean([float(squad_normalise(r["raw"])
                                             != squad_normalise(r["lean"])) for r in rows]),
        "cache_hits": sum(bool(r.get("cached")) for r in rows),
        "examples": [{"question": r.get("question", ""), "golds": list(r["golds"]),
                      "raw": r["raw"], "lean": r["lean"]} for r in rows],
    }


def run_live(entries: Sequence[Mapping[str, Any]], *, limit: int = DEFAULT_LIVE_LIMIT,
             max_tokens: int = LIVE_MAX_TOKENS, price_as: str = "gpt-4o",
             choices: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Ask the first ``limit`` rag ``entries`` of the local model raw and through
    ``lean(preset="max-savings")``; ``quality["live"]`` (see the module doc)."""
    from tokenlean.core._optional import require

    for module in _NEEDS:
        require(module, extra="demo", feature="tokenlean bench traffic --live")
    from rich.console import Console

    from langchain_tokenlean import lean
    from tokenlean.cli._demo import _Collect, _quiet, _start_server, local_chat_model
    from tokenlean.core import count_messages

    from .traffic import PRESET

    calls = [e for e in entries if (e.get("metadata") or {}).get("shape") == "rag"][:limit]
    if not calls:
        raise ValueError("the live run needs rag entries")
    _quiet()
    server, model_name = _start_server(Console(stderr=True))
    scratch = tempfile.TemporaryDirectory(prefix="tokenlean-traffic-", ignore_cleanup_errors=True)
    rows: list[dict[str, Any]] = []
    try:
        raw_llm = local_chat_model(server.url, model_name, max_tokens=max_tokens)
        ledger = _Collect()
        lean_llm = lean(local_chat_model(server.url, model_name, max_tokens=max_tokens),
                        preset=PRESET, ledger=ledger, model=price_as,
                        **dict(choices or {})).bind(max_tokens=max_tokens)
        if any(layer.name == "budget" for layer in lean_llm.bound.layers):
            # as the demo: the calibrated budget layer learns from this run only
            from tokenlean.budget import use_fresh_stores

            use_fresh_stores(lean_llm.bound.layers, scratch.name)
        for entry in calls:
            messages = [{"role": m["role"], "content": m["content"]}
                        for m in entry["request"]["messages"]]
            in_raw = count_messages(messages, model=price_as).tokens
            raw_answer = str(raw_llm.invoke(messages).content)
            before = len(ledger.records)
            message = lean_llm.invoke(messages)
            meta = (getattr(message, "response_metadata", None) or {}).get("tokenlean") or {}
            cached = bool(meta.get("cached"))
            record = ledger.records[-1] if len(ledger.records) > before else None
            removed = sum(rep.saved_input_tokens for rep in (record.layers if record else ())
                          if rep.layer in ("templates", "compress"))
            rows.append({"question": messages[-1]["content"].rsplit("Question: ", 1)[-1],
                         "golds": list(entry["metadata"]["answers"]), "raw": raw_answer,
                         "lean": str(message.content), "in_raw": in_raw,
                         "in_lean": 0 if cached else max(0, in_raw - removed),
                         "cached": cached})
        layer_names = [layer.name for layer in lean_llm.bound.layers]
    finally:
        server.stop()
        scratch.cleanup()
    live = summarise_live(rows, model=model_name, max_tokens=max_tokens, price_as=price_as)
    live["layers"] = layer_names
    return live
