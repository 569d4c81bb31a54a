"""The live run of ``tokenlean bench traffic --live``: the local model, raw and through
``lean()``, on any of the five shapes.

The first ``--live-limit`` generated calls of a shape are asked twice of the local
OpenAI-compatible server (SmolLM2-135M-Instruct, started as ``tokenlean demo``
starts it): once with ``ChatOpenAI(base_url=...)`` as is, once through
``lean(ChatOpenAI(...), preset="max-savings")`` (the LangChain integration the
demo uses, so the layers and their order are ``lean()``'s), with the replay's
layer keywords on top. Both arms use ``temperature=0``, the shape's app output
cap (:data:`LIVE_SHAPES`: ``max_tokens``; the budget layer may only lower it)
and its stop sequences (``rag``: the demo's ``stop=["\\n\\n"]``; the others none).

One code path for every shape (:func:`run_live`): the same server, the same two
arms, the same ledger accounting; per shape only the scoring differs
(:func:`summarise_live`):

* ``rag``: answer containment and token F1 against the gold answers
  (``metadata["answers"]``) with SQuAD's normalisation (:func:`squad_normalise`);
* ``support``: what the cache served live, against the generator's labels
  (``metadata["should_hit"]`` / ``kind``), as the replay's
  :func:`tokenlean.bench.traffic.served_cache_quality` reads them;
* ``multi-turn``, ``agent``, ``chat``: no gold; the MiniLM cosine of the lean
  answer to the raw answer (the templates layer's scorer,
  its process-wide ``MiniLMScorer``; the measure ``tokenlean bench
  output`` reports as ``similarity_to_unconstrained``) and the output tokens.

Every shape also gets the similarity to the raw answer when MiniLM is installed.
Tokens are counted per call with the ``price_as`` tokenizer: input, the raw arm's
messages and for the lean arm what the layers left of them (their ledger
records); output, the answers. A cache hit costs the lean arm 0 input and 0
output tokens. A call whose prompt does not fit the local model's context (the
server's 400 ``context_length_exceeded``) is counted as over context in that arm;
only the calls both arms answered are scored.

The local server takes plain chat messages only (no ``tools``, no ``tool`` role):
:func:`live_messages` writes an assistant tool call as its JSON text and a tool
result as a user turn, the same for both arms.
"""

from __future__ import annotations

import json
import re
import string
import tempfile
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, TypeVar

__all__ = ["DEFAULT_LIVE_LIMIT", "LIVE_SHAPES", "LiveShape",
           "answer_scores", "containment", "is_over_context", "live_messages", "run_live",
           "squad_normalise", "start_live_server", "summarise_live", "token_f1"]

DEFAULT_LIVE_LIMIT = 20
_Row = TypeVar("_Row", bound=Mapping[str, Any])


@dataclass(frozen=True)
class LiveShape:
    """What the app of a shape asks the model with: its output cap and stop sequences."""

    max_tokens: int
    stop: tuple[str, ...] = ()


#: per shape, the app's output cap in both arms (and its stops): rag's short extractive
#: answer; a support reply; multi-turn and chat answers that may run long; an agent step
LIVE_SHAPES: dict[str, LiveShape] = {
    "rag": LiveShape(48, ("\n\n",)),
    "support": LiveShape(96),
    "multi-turn": LiveShape(192),
    "agent": LiveShape(128),
    "chat": LiveShape(256),
}
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


def live_messages(entry: Mapping[str, Any]) -> list[dict[str, str]]:
    """The entry's request messages as plain chat turns the local server takes: an
    assistant tool call becomes its JSON text (``{"tool": ..., "arguments": ...}``, as
    the generator logs the call), a tool result a user turn ``Tool output:``."""
    out = []
    for m in entry["request"]["messages"]:
        role, content = m["role"], m.get("content") or ""
        if role == "tool":
            role, content = "user", f"Tool output:\n{content}"
        elif role == "assistant" and m.get("tool_calls"):
            calls = [{"tool": c["function"]["name"],
                      "arguments": json.loads(c["function"]["arguments"] or "{}")}
                     for c in m["tool_calls"]]
            content = "\n".join(filter(None, [content, *map(json.dumps, calls)]))
        out.append({"role": role, "content": str(content)})
    return out


def is_over_context(exc: BaseException) -> bool:
    """Whether ``exc`` is the server's refusal of a prompt longer than the model's context
    (OpenAI's ``context_length_exceeded``, a 400)."""
    seen: BaseException | None = exc
    while seen is not None:  # the exception itself or one it was raised from
        code = getattr(seen, "code", None)
        if code == "context_length_exceeded" or "context_length_exceeded" in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _answered(rows: Sequence[_Row]) -> list[_Row]:
    """The rows both arms answered (neither prompt over the model's context)."""
    return [r for r in rows if r.get("raw") is not None and r.get("lean") is not None]


def _rag_quality(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    raw = [answer_scores(r["raw"], r["golds"]) for r in rows]
    lean = [answer_scores(r["lean"], r["golds"]) for r in rows]
    return {
        "containment_raw": _mean([float(c) for c, _ in raw]),
        "containment_lean": _mean([float(c) for c, _ in lean]),
        "f1_raw": _mean([f for _, f in raw]),
        "f1_lean": _mean([f for _, f in lean]),
    }


def _support_quality(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    from .traffic import served_cache_quality

    entries = [{"metadata": r.get("metadata") or {}} for r in rows]
    served = {n for n, r in enumerate(rows, 1) if r.get("cached")}
    return {"support_cache": served_cache_quality(entries, served)}


#: per shape, the figure that needs gold or labels (every shape also gets the common ones)
_QUALITY: dict[str, Callable[[Sequence[Mapping[str, Any]]], dict[str, Any]]] = {
    "rag": _rag_quality,
    "support": _support_quality,
}


def summarise_live(rows: Sequence[Mapping[str, Any]], *, model: str, max_tokens: int,
                   price_as: str, shape: str = "rag",
                   rates: tuple[Decimal, Decimal] | None = None) -> dict[str, Any]:
    """``quality["live"]`` from per-call rows: ``raw`` and ``lean`` (the answers, None
    where that arm's prompt was over the model's context), ``in_raw``, ``in_lean``,
    ``out_raw``, ``out_lean`` (tokens; the lean arm's 0 on a cache hit), ``cached``,
    and as the shape has them ``golds`` (rag), ``metadata`` (support: the generator's
    labels), ``similarity`` (MiniLM cosine of the two answers), ``finish_raw`` /
    ``finish_lean``. Token, output and quality figures are means over the calls both
    arms answered (``input_tokens_*_all``: over every call); ``rates`` (USD per input and
    output token) adds $ per call."""
    scored = _answered(rows)
    n = len(scored)
    out: dict[str, Any] = {
        "shape": shape, "model": model, "calls": len(rows), "max_tokens": max_tokens,
        "scored_calls": n,
        "over_context": len(rows) - n,
        "over_context_raw": sum(r.get("raw") is None for r in rows),
        "over_context_lean": sum(r.get("lean") is None for r in rows),
        "input_tokens_raw": _mean([float(r["in_raw"]) for r in scored]),
        "input_tokens_lean": _mean([float(r["in_lean"]) for r in scored]),
        # over every call asked, a prompt the model refused included (what was sent)
        "input_tokens_raw_all": _mean([float(r["in_raw"]) for r in rows]),
        "input_tokens_lean_all": _mean([float(r["in_lean"]) for r in rows]),
        "output_tokens_raw": _mean([float(r["out_raw"]) for r in scored]),
        "output_tokens_lean": _mean([float(r["out_lean"]) for r in scored]),
        "tokens_counted_as": price_as,
        "input_tokens_counted_as": price_as,
        "answer_changed_share": _mean([float(squad_normalise(r["raw"])
                                             != squad_normalise(r["lean"])) for r in scored]),
        "cache_hits": sum(bool(r.get("cached")) for r in rows),
        "cut_at_max_tokens_raw": sum(r.get("finish_raw") == "length" for r in scored),
        "cut_at_max_tokens_lean": sum(r.get("finish_lean") == "length" for r in scored),
    }
    before, after = (sum(float(r[k]) for r in scored) for k in ("out_raw", "out_lean"))
    out["output_ratio"] = round(after / before, 4) if before else None
    sims = [float(r["similarity"]) for r in scored if r.get("similarity") is not None]
    out["similarity_to_raw"] = _mean(sims)
    out["similarity_calls"] = len(sims)
    if rates is not None and n:
        rate_in, rate_out = rates
        for arm in ("raw", "lean"):
            usd = sum(r[f"in_{arm}"] * rate_in + r[f"out_{arm}"] * rate_out for r in scored)
            out[f"usd_per_call_{arm}"] = round(float(usd) / n, 8)
    quality = _QUALITY.get(shape)
    if quality is not None:
        out.update(quality(rows if shape == "support" else scored))
    out["examples"] = [{k: r.get(k) for k in ("question", "golds", "raw", "lean", "cached")
                        if k in r} for r in rows]
    return out


def _similarities(rows: Sequence[dict[str, Any]]) -> None:
    """Each answered row's MiniLM cosine of the lean answer to the raw one (the templates
    layer's scorer); left out where tokenlean-templates or MiniLM is not installed."""
    answered = _answered(rows)
    pairs = [(r["raw"], r["lean"]) for r in answered]
    if not pairs:
        return
    try:
        from tokenlean.templates._similarity import default_scorer

        scores = default_scorer().similarities(pairs)
    except ImportError:  # MissingExtraError is one
        return
    for row, score in zip(answered, scores, strict=True):
        row["similarity"] = round(float(score), 4)


def _ask(llm: Any, messages: list[dict[str, str]]) -> Any:
    """The model's message, or None where the prompt does not fit the model's context."""
    try:
        return llm.invoke(messages)
    except Exception as exc:
        if is_over_context(exc):
            return None
        raise


def _finish(message: Any) -> str | None:
    reason = (getattr(message, "response_metadata", None) or {}).get("finish_reason")
    return None if reason is None else str(reason)


def _require_demo_extra() -> None:
    from tokenlean.core._optional import require

    for module in _NEEDS:
        require(module, extra="demo", feature="tokenlean bench traffic --live")


def start_live_server(console: Any = None) -> tuple[Any, str]:
    """The local server the live runs ask (SmolLM2-135M-Instruct, started as ``tokenlean
    demo`` starts it) and its model name; ``server.stop()`` stops it. Give it to
    :func:`run_live` (``server=``) to ask several shapes of one server."""
    _require_demo_extra()
    from rich.console import Console

    from tokenlean.cli._demo import _start_server

    started: tuple[Any, str] = _start_server(console or Console(stderr=True))
    return started


def run_live(entries: Sequence[Mapping[str, Any]], *, limit: int = DEFAULT_LIVE_LIMIT,
             shape: str = "rag", max_tokens: int | None = None, price_as: str = "gpt-4o",
             choices: Mapping[str, Any] | None = None,
             console: Any = None, server: tuple[Any, str] | None = None) -> dict[str, Any]:
    """Ask the first ``limit`` entries of ``shape`` of the local model raw and through
    ``lean(preset="max-savings")``; ``quality["live"]`` (see the module doc).
    ``max_tokens`` overrides the shape's cap (:data:`LIVE_SHAPES`). ``server`` is one
    :func:`start_live_server` started (left running); without it the run starts its own
    and stops it."""
    if shape not in LIVE_SHAPES:
        raise ValueError(f"unknown shape {shape!r}; choose one of {list(LIVE_SHAPES)}")
    _require_demo_extra()
    from rich.console import Console

    from langchain_tokenlean import lean
    from tokenlean.cli._demo import _Collect, _rates, local_chat_model
    from tokenlean.core import count_messages, count_tokens

    from .traffic import PRESET

    settings = LIVE_SHAPES[shape]
    cap = settings.max_tokens if max_tokens is None else max_tokens
    if cap < 1:
        raise ValueError("max_tokens must be at least 1")
    calls = [e for e in entries if (e.get("metadata") or {}).get("shape") == shape][:limit]
    if not calls:
        raise ValueError(f"the live run needs {shape} entries")
    rates = _rates(price_as)  # fails before the model loads if the price is unknown
    out = console or Console(stderr=True)
    own_server = server is None
    local, model_name = start_live_server(out) if server is None else server
    scratch = tempfile.TemporaryDirectory(prefix="tokenlean-traffic-", ignore_cleanup_errors=True)
    rows: list[dict[str, Any]] = []
    stop = list(settings.stop)

    def chat() -> Any:
        return local_chat_model(local.url, model_name, max_tokens=cap, stop=stop)

    try:
        raw_llm = chat()
        ledger = _Collect()
        lean_llm = lean(chat(), preset=PRESET, ledger=ledger, model=price_as,
                        **dict(choices or {})).bind(max_tokens=cap)
        if any(layer.name == "budget" for layer in lean_llm.bound.layers):
            # as the demo: the calibrated budget layer learns from this run only
            from tokenlean.budget import use_fresh_stores

            use_fresh_stores(lean_llm.bound.layers, scratch.name)
        for i, entry in enumerate(calls, 1):
            messages = live_messages(entry)
            in_raw = count_messages(messages, model=price_as).tokens
            raw = _ask(raw_llm, messages)
            before = len(ledger.records)
            lean_message = _ask(lean_llm, messages)
            meta = (getattr(lean_message, "response_metadata", None) or {}).get(
                "tokenlean") or {}
            cached = bool(meta.get("cached"))
            record = ledger.records[-1] if len(ledger.records) > before else None
            # what the layers took out of the prompt, less what they added (concise
            # mode's length instruction counts as a negative saving)
            removed = sum(rep.saved_input_tokens for rep in (record.layers if record else ()))
            raw_text = None if raw is None else str(raw.content)
            lean_text = None if lean_message is None else str(lean_message.content)
            metadata = entry.get("metadata") or {}
            rows.append({
                "question": messages[-1]["content"].rsplit("Question: ", 1)[-1][-300:],
                "golds": list(metadata.get("answers") or []),
                "metadata": {k: metadata.get(k) for k in ("kind", "should_hit",
                                                          "question_id", "step")
                             if k in metadata},
                "raw": raw_text, "lean": lean_text, "cached": cached,
                "in_raw": in_raw,
                "in_lean": 0 if cached else max(0, in_raw - removed),
                "out_raw": 0 if raw_text is None else count_tokens(
                    raw_text, model=price_as).tokens,
                "out_lean": 0 if cached or lean_text is None else count_tokens(
                    lean_text, model=price_as).tokens,
                "finish_raw": _finish(raw), "finish_lean": _finish(lean_message)})
            out.print(f"live {shape}: {i}/{len(calls)}"
                      + (" (over the model's context)" if raw is None or lean_message is None
                         else ""), highlight=False)
        layer_names = [layer.name for layer in lean_llm.bound.layers]
    finally:
        if own_server:
            local.stop()
        scratch.cleanup()
    _similarities(rows)
    live = summarise_live(rows, model=model_name, max_tokens=cap, price_as=price_as,
                          shape=shape, rates=rates)
    live["layers"] = layer_names
    live["stop"] = stop
    return live
