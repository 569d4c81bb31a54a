"""Seeded traffic logs of five application shapes, built from the evaluation files.

``tokenlean bench traffic`` (:mod:`tokenlean.bench.traffic`) replays these logs
through the pipeline ``lean()`` builds. Each shape is a list of log objects in
the OpenAI chat-completions shape the audit reads
(:func:`tokenlean.audit._logs.parse_line`)::

    {"id": "...", "request": {"model", "messages", "temperature": 0, ...},
     "response": {"choices": [{"message": {"role": "assistant", "content": "..."},
                               "finish_reason": "stop"}]},
     "metadata": {"shape": "...", ...}}

``metadata`` is ignored by the replay; it keeps what a quality check needs (gold
answers, which query repeats which). The files are read from a data folder with
the names and shapes of ``../shared/data`` (see its README); nothing is written
unless asked (:func:`write_log`), and generated logs are never committed.

The shapes (``SHAPES``):

``rag``
    a system prompt, 5 retrieved paragraphs and the question in the user turn
    (SQuAD: the row's 5 paragraphs; NQ: the gold passage among 4 passages of
    other rows, at a seeded position). The logged answer is the first gold
    answer; ``metadata["answers"]`` keeps them all.
``support``
    an FAQ bot (a community template from ``templates_prompts_chat_dev.jsonl``
    as system prompt) over QQP questions. ``repeat_rate`` (default 0.30) of the
    queries repeat a question asked earlier: with probability
    ``paraphrase_share`` (default 0.5) as the QQP duplicate (label 1) of an
    earlier question that has one, otherwise verbatim. Of the other queries,
    ``near_miss_share`` (default 0.2) are the non-duplicate partner (label 0) of
    a question asked earlier, each asked once: high word overlap, a different
    question, must not be served from the cache. A question's text is asked
    under one ``question_id`` only (QQP repeats texts across pairs: a new
    question is one whose texts were not asked yet), so a cache hit on a query
    with ``should_hit`` false is a false hit. The rest are new questions.
    QQP has no answers: each distinct question gets a stand-in answer, an
    AlpacaEval output picked by seed (its length is realistic, its content is
    not about the question); a repeat is logged with the answer of the
    question it repeats. ``metadata``: ``kind``, ``question_id``, ``should_hit``.
``multi-turn``
    sessions of ``turns`` (default 4) calls with a long community template
    (at least ``min_system_words`` words) as system prompt and a growing
    history. Turns are AlpacaEval instructions with a logged answer; a session
    opens with an MT-Bench prompt with probability ``mt_bench_share`` (MT-Bench
    has no answers: its assistant turn is an AlpacaEval output, flagged
    ``stand_in_answer``). Each call resends the whole history.
``agent``
    a tool-using loop over a QMSum meeting: step 1 calls ``fetch_transcript``,
    whose output (the ~9k-word transcript) stays in the history; the next
    ``agent_steps - 2`` steps call ``search_transcript`` (its output: the
    transcript's lines holding the query's longest word); the last step answers
    with the reference summary. Every step resends the history, as agent
    frameworks do.
``chat``
    single-turn general prompts (Arena-Hard v0.1 and AlpacaEval, one logged
    answer per distinct prompt, alternating sources) with their long answers.

Every request is logged with ``temperature=0`` (``temperature``) and no
``max_tokens``, and names ``model`` (default ``gpt-4o``); the replay prices every
call as its ``price_as`` whatever the model. Everything random comes from one
``random.Random(seed)`` per shape, so the same files and parameters give the same
log.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tokenlean.core import ConfigError

__all__ = ["SHAPES", "TrafficParams", "generate", "write_log"]

SHAPES = ("rag", "support", "multi-turn", "agent", "chat")

RAG_SYSTEM = ("You are a helpful assistant that answers questions using only the provided "
              "context. Answer with a short phrase taken from the context. If the context "
              "does not contain the answer, say you do not know.")
AGENT_SYSTEM = ("You are a meeting assistant with tools. Use fetch_transcript to read a "
                "meeting and search_transcript to find the passages that matter, then answer "
                "the user's request with a concise, faithful summary.")
AGENT_TOOLS = [
    {"type": "function", "function": {
        "name": "fetch_transcript", "description": "The full transcript of a meeting.",
        "parameters": {"type": "object", "properties": {"meeting_id": {"type": "string"}},
                       "required": ["meeting_id"]}}},
    {"type": "function", "function": {
        "name": "search_transcript",
        "description": "The transcript lines of a meeting that contain a word.",
        "parameters": {"type": "object", "properties": {"meeting_id": {"type": "string"},
                                                        "query": {"type": "string"}},
                       "required": ["meeting_id", "query"]}}},
]


@dataclass(frozen=True, slots=True, kw_only=True)
class TrafficParams:
    """The generator's knobs (documented in docs/benchmarks/traffic.md)."""

    seed: int = 0
    limit: int = 50  # calls per shape (multi-turn and agent: whole sessions up to it)
    model: str = "gpt-4o"  # the model the app names in its requests
    temperature: float = 0.0
    repeat_rate: float = 0.30  # support: share of queries that repeat an earlier question
    paraphrase_share: float = 0.5  # support: of the repeats, asked as the QQP duplicate
    near_miss_share: float = 0.2  # support: of the other queries, a QQP non-duplicate
    turns: int = 4  # multi-turn: calls per session
    min_system_words: int = 200  # multi-turn: a "long" community template
    mt_bench_share: float = 0.5  # multi-turn: sessions opened by an MT-Bench prompt
    agent_steps: int = 4  # agent: calls per task (fetch, searches, answer)

    def __post_init__(self) -> None:
        for name in ("repeat_rate", "paraphrase_share", "near_miss_share", "mt_bench_share",
                     "temperature"):
            value = getattr(self, name)
            if not 0.0 <= value <= (2.0 if name == "temperature" else 1.0):
                raise ValueError(f"{name} out of range: {value!r}")
        if self.limit < 1 or self.turns < 1 or self.agent_steps < 2:
            raise ValueError("limit and turns must be >= 1, agent_steps >= 2")


# ---- reading the data folder ------------------------------------------------------


def _rows(data_dir: Path, name: str) -> list[dict[str, Any]]:
    path = data_dir / name
    if not path.is_file():
        raise ConfigError(f"{path}: missing (the data folder needs the files of "
                          "../shared/data, same names and shapes)")
    rows = []
    with path.open(encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise ConfigError(f"{path}, line {number}: not JSON ({exc.msg})") from None
    return rows


def _answered_prompts(data_dir: Path, name: str) -> list[dict[str, Any]]:
    """Prompts rows with a logged answer, one per distinct prompt (the first in file order;
    several models answered each prompt)."""
    seen: set[str] = set()
    out = []
    for row in _rows(data_dir, name):
        key = json.dumps(row["messages"], sort_keys=True)
        if row.get("response") and key not in seen:
            seen.add(key)
            out.append(row)
    return out


# ---- log entries ------------------------------------------------------------------------


def _entry(entry_id: str, messages: list[dict[str, Any]], answer: str, params: TrafficParams,
           metadata: dict[str, Any], **request: Any) -> dict[str, Any]:
    return {
        "id": entry_id,
        "request": {"model": params.model, "messages": messages,
                    "temperature": params.temperature, **request},
        "response": {"object": "chat.completion", "choices": [
            {"index": 0, "message": {"role": "assistant", "content": answer},
             "finish_reason": "stop"}]},
        "metadata": metadata,
    }


def _alternate(first: list[dict[str, Any]], second: list[dict[str, Any]],
               n: int) -> Iterator[tuple[list[dict[str, Any]], dict[str, Any]]]:
    """``n`` rows taken in turn from ``first`` and ``second`` (cycling through each; all
    from one where the other is empty), each with the list it came from."""
    for i in range(n):
        source = first if (i % 2 == 0 and first) or not second else second
        yield source, source[(i // 2) % len(source)]


def _rag(data_dir: Path, params: TrafficParams, rng: random.Random) -> list[dict[str, Any]]:
    squad = _rows(data_dir, "qa_squad_dev.jsonl")
    nq = _rows(data_dir, "qa_nq_dev.jsonl")
    rng.shuffle(squad)
    rng.shuffle(nq)
    out: list[dict[str, Any]] = []
    for i, (source, row) in enumerate(_alternate(squad, nq, params.limit)):
        if source is squad:
            paragraphs = row["context"].split("\n\n")
        else:
            others = [r["context"] for r in nq if r["id"] != row["id"]]
            paragraphs = rng.sample(others, min(4, len(others)))
            paragraphs.insert(rng.randrange(len(paragraphs) + 1), row["context"])
        context = "\n\n".join(f"[{n}] {p}" for n, p in enumerate(paragraphs, 1))
        messages = [{"role": "system", "content": RAG_SYSTEM},
                    {"role": "user", "content": f"Context:\n{context}\n\nQuestion: "
                                                f"{row['question']}"}]
        out.append(_entry(f"rag-{i}", messages, row["answers"][0], params, {
            "shape": "rag", "source_id": row["id"], "answers": list(row["answers"]),
            "paragraphs": len(paragraphs)}))
    return out


def _stand_in_answers(data_dir: Path) -> list[str]:
    return [str(r["response"]) for r in _answered_prompts(data_dir, "prompts_alpaca_eval.jsonl")]


def _support_kinds(n: int, params: TrafficParams, rng: random.Random) -> list[str]:
    """``n`` query kinds with exactly ``round(repeat_rate * n)`` repeats, the first a new one."""
    repeats = min(round(params.repeat_rate * n), n - 1)
    rest = n - repeats
    near = round(params.near_miss_share * rest)
    kinds = ["repeat"] * repeats + ["near_miss"] * near + ["new"] * (rest - near)
    rng.shuffle(kinds)
    first_new = kinds.index("new") if "new" in kinds else None
    if first_new is None:  # every non-repeat is a near-miss: the first query must be new
        first_new = kinds.index("near_miss")
        kinds[first_new] = "new"
    kinds[0], kinds[first_new] = kinds[first_new], kinds[0]
    return kinds


def _support(data_dir: Path, params: TrafficParams, rng: random.Random) -> list[dict[str, Any]]:
    pairs = _rows(data_dir, "pairs_qqp_dev.jsonl")
    templates = [t for t in _rows(data_dir, "templates_prompts_chat_dev.jsonl")
                 if t.get("type", "TEXT") == "TEXT"]
    answers = _stand_in_answers(data_dir)
    rng.shuffle(pairs)
    template = rng.choice(templates)
    system = {"role": "system", "content": template["template"]}
    kinds = _support_kinds(params.limit, params, rng)
    fresh = iter(pairs)
    asked: list[dict[str, Any]] = []  # pairs whose "a" was asked, in order
    answer_of: dict[str, str] = {}
    out: list[dict[str, Any]] = []
    used: set[str] = set()  # every text asked so far: each text is one question
    for i, kind in enumerate(kinds):
        near_pool = [p for p in asked if p["label"] == 0 and p["b"] not in used]
        if kind == "near_miss" and not near_pool:
            kind = "new"  # nothing left to miss (the near-misses then fall short by one)
        if kind == "new":
            pair = next((p for p in fresh if p["a"] not in used and p["b"] not in used), None)
            if pair is None:  # data ran out: repeat instead
                kind, pair = "repeat", rng.choice(asked)
            else:
                asked.append(pair)
                answer_of[pair["id"] + ":a"] = rng.choice(answers)
        if kind == "repeat":
            with_paraphrase = [p for p in asked if p["label"] == 1]
            paraphrase = bool(with_paraphrase) and rng.random() < params.paraphrase_share
            pair = rng.choice(with_paraphrase if paraphrase else asked)
            text = pair["b"] if paraphrase else pair["a"]
            qid = pair["id"] + ":a"
            detail = "repeat_paraphrase" if paraphrase else "repeat_verbatim"
            should_hit = True
        elif kind == "near_miss":
            pair = rng.choice(near_pool)
            qid, text, detail, should_hit = pair["id"] + ":b", pair["b"], "near_miss", False
            answer_of.setdefault(qid, rng.choice(answers))
        else:
            assert pair is not None  # a new question always has its pair
            text, qid, detail, should_hit = pair["a"], pair["id"] + ":a", "new", False
        used.add(text)
        messages = [system, {"role": "user", "content": text}]
        out.append(_entry(f"support-{i}", messages, answer_of[qid], params, {
            "shape": "support", "kind": detail, "question_id": qid, "should_hit": should_hit,
            "pair_id": pair["id"], "template": template["id"], "stand_in_answer": True}))
    return out


def _multi_turn(data_dir: Path, params: TrafficParams,
                rng: random.Random) -> list[dict[str, Any]]:
    templates = [t for t in _rows(data_dir, "templates_prompts_chat_dev.jsonl")
                 if len(t["template"].split()) >= params.min_system_words]
    if not templates:  # a small folder: the longest there is
        templates = sorted(_rows(data_dir, "templates_prompts_chat_dev.jsonl"),
                           key=lambda t: -len(t["template"].split()))[:1]
    alpaca = _answered_prompts(data_dir, "prompts_alpaca_eval.jsonl")
    mt_bench = _rows(data_dir, "prompts_mt_bench.jsonl")
    rng.shuffle(alpaca)
    turns = iter(alpaca * (1 + params.limit // max(len(alpaca), 1)))
    out: list[dict[str, Any]] = []
    session = 0
    while len(out) < params.limit:
        template = rng.choice(templates)
        history: list[dict[str, Any]] = [{"role": "system", "content": template["template"]}]
        for turn in range(min(params.turns, params.limit - len(out))):
            row = next(turns)
            stand_in = False
            if turn == 0 and mt_bench and rng.random() < params.mt_bench_share:
                prompt, answer = rng.choice(mt_bench), str(row["response"])
                user = prompt["messages"][-1]["content"]
                stand_in, source = True, prompt["id"]
            else:
                user, answer = row["messages"][-1]["content"], str(row["response"])
                source = row["id"]
            history.append({"role": "user", "content": user})
            out.append(_entry(f"multi-turn-{session}-{turn}", list(history), answer, params, {
                "shape": "multi-turn", "session": session, "turn": turn, "source_id": source,
                "template": template["id"], "stand_in_answer": stand_in}))
            history.append({"role": "assistant", "content": answer})
        session += 1
    return out


def _search(transcript: str, query: str, max_lines: int = 12) -> str:
    lines = [ln for ln in transcript.split("\n") if query.lower() in ln.lower()]
    if not lines:  # one long line per speaker turn is common: fall back to sentences
        lines = [s for s in re.split(r"(?<=[.?!])\s+", transcript) if query.lower() in s.lower()]
    return "\n".join(lines[:max_lines]) or f"no line mentions {query!r}"


def _agent(data_dir: Path, params: TrafficParams, rng: random.Random) -> list[dict[str, Any]]:
    meetings = _rows(data_dir, "qa_qmsum_dev.jsonl")
    rng.shuffle(meetings)
    out: list[dict[str, Any]] = []
    task = 0
    while len(out) < params.limit:
        row = meetings[task % len(meetings)]
        words = sorted({w.strip(".,?!:;'\"()").lower() for w in row["question"].split()},
                       key=lambda w: (-len(w), w))
        history: list[dict[str, Any]] = [{"role": "system", "content": AGENT_SYSTEM},
                                         {"role": "user", "content": row["question"]}]
        for step in range(min(params.agent_steps, params.limit - len(out))):
            last = step == params.agent_steps - 1
            if last:
                answer, call = row["answers"][0], None
            elif step == 0:
                call = ("fetch_transcript", {"meeting_id": row["id"]})
            else:
                query = words[(step - 1) % len(words)] if words else "meeting"
                call = ("search_transcript", {"meeting_id": row["id"], "query": query})
            if call is not None:
                answer = json.dumps({"tool": call[0], "arguments": call[1]})
            out.append(_entry(f"agent-{task}-{step}", list(history), answer, params, {
                "shape": "agent", "task": task, "step": step, "source_id": row["id"],
                "answers": list(row["answers"]) if last else None}, tools=AGENT_TOOLS))
            if call is not None:
                call_id = f"call_{task}_{step}"
                history.append({"role": "assistant", "content": "", "tool_calls": [
                    {"id": call_id, "type": "function",
                     "function": {"name": call[0], "arguments": json.dumps(call[1])}}]})
                output = (row["context"] if call[0] == "fetch_transcript"
                          else _search(row["context"], call[1]["query"]))
                history.append({"role": "tool", "tool_call_id": call_id, "content": output})
        task += 1
    return out


def _chat(data_dir: Path, params: TrafficParams, rng: random.Random) -> list[dict[str, Any]]:
    arena = _answered_prompts(data_dir, "prompts_arena_hard_v01.jsonl")
    alpaca = _answered_prompts(data_dir, "prompts_alpaca_eval.jsonl")
    rng.shuffle(arena)
    rng.shuffle(alpaca)
    out: list[dict[str, Any]] = []
    for i, (_, row) in enumerate(_alternate(arena, alpaca, params.limit)):
        out.append(_entry(f"chat-{i}", [dict(m) for m in row["messages"]], str(row["response"]),
                          params, {"shape": "chat", "source_id": row["id"],
                                   "logged_model": row.get("model")}))
    return out


_BUILDERS = {"rag": _rag, "support": _support, "multi-turn": _multi_turn, "agent": _agent,
             "chat": _chat}


def generate(data_dir: str | Path, shape: str,
             params: TrafficParams | None = None) -> list[dict[str, Any]]:
    """The log of ``shape`` (one of :data:`SHAPES`): ``params.limit`` log objects, the same
    for the same files, shape and parameters."""
    if shape not in _BUILDERS:
        raise ValueError(f"unknown shape {shape!r}; choose one of {list(SHAPES)}")
    params = params or TrafficParams()
    rng = random.Random(f"{shape}:{params.seed}")
    try:
        return _BUILDERS[shape](Path(data_dir), params, rng)[: params.limit]
    except (KeyError, TypeError, AttributeError, IndexError, ZeroDivisionError) as exc:
        # a file of the wrong shape (a missing field, an empty file): say which folder
        raise ConfigError(f"{data_dir}: cannot build {shape} calls from its files "
                          f"({type(exc).__name__}: {exc})") from None


def write_log(entries: Sequence[dict[str, Any]], path: str | Path) -> Path:
    """Write ``entries`` as JSONL (outside the repository: generated logs are not committed)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        for entry in entries:
            fh.write(json.dumps(entry, ensure_ascii=False) + "\n")
    return path


def iter_shapes(name: str) -> Iterator[str]:
    """``all`` as every shape, in order; a shape name as itself."""
    if name == "all":
        yield from SHAPES
    elif name in SHAPES:
        yield name
    else:
        raise ValueError(f"unknown shape {name!r}; choose one of {[*SHAPES, 'all']}")
