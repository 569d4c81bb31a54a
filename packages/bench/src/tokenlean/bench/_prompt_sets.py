"""Prompt sets for ``tokenlean bench overhead``: short built-in questions, the rows
of a data file, and generated long contexts (number-heavy, CSV-like, code).

Each prompt is a list of messages plus a ``kind`` (what the rows are grouped by
in the report). A RAG context goes in a system message ahead of the question,
as LangChain's and LlamaIndex's question-answering prompts put it; a prompts
file's messages are sent as they are.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import typer

from tokenlean.core import InvalidRequestError, Message, read_jsonl

__all__ = ["LONG_CONTEXTS", "Prompt", "builtin_prompts", "file_prompts", "long_prompts"]

RAG_SYSTEM = "Answer the question from this context only.\n\nContext:\n{context}"


@dataclass(frozen=True, slots=True)
class Prompt:
    kind: str
    messages: tuple[Message, ...]

    @property
    def chars(self) -> int:
        return sum(len(m.text) for m in self.messages)

    def unique(self, call: int) -> tuple[Message, ...]:
        """The messages made new for call ``call``: every message gets a marker, so no
        layer can answer or reuse a rewrite from an earlier call (each call is a miss)."""
        return tuple(m.with_text(f"[call {call}] {m.text}") if m.text else m
                     for m in self.messages)


def rag(kind: str, context: str, question: str) -> Prompt:
    return Prompt(kind, (Message(role="system", content=RAG_SYSTEM.format(context=context)),
                         Message(role="user", content=question)))


def builtin_prompts(count: int) -> list[Prompt]:
    base = "Summarise the following support ticket in two sentences: the customer reports "
    return [Prompt("short", (Message(role="user", content=f"{base}that order #{i} arrived "
                                                          "late and the box was damaged."),))
            for i in range(count)]


def file_prompts(path: Path) -> list[Prompt]:
    """A prompts-shape file (its messages) or a qa-shape file (context + question)."""
    rows = [row for _, row in read_jsonl(path)]
    if not rows:
        raise typer.BadParameter(f"{path} has no rows")
    kind = path.stem
    if all("context" in row and "question" in row for row in rows):
        return [rag(kind, str(row["context"]), str(row["question"]))
                for _, row in read_jsonl(path, "qa")]
    out = []
    for number, row in read_jsonl(path, "prompts"):
        try:
            messages = tuple(Message.from_openai(m) for m in row["messages"])
        except InvalidRequestError as exc:
            raise InvalidRequestError(f"{path}:{number}: {exc}") from None
        if any(m.role == "user" and m.text for m in messages):
            out.append(Prompt(kind, messages))
    if not out:
        raise typer.BadParameter(f"{path} has no rows of the prompts or qa shape with a "
                                 "user message")
    return out


def numbered_sentences(chars: int, seed: int = 0) -> str:
    """A retrieved context of numbered sentences, every one full of numbers."""
    rng, lines, size, i = random.Random(seed), [], 0, 0
    while size < chars:
        i += 1
        line = (f"{i}. In {rng.randint(1900, 2024)} site {rng.randint(1, 50)} measured "
                f"{rng.randint(1, 999)}.{rng.randint(0, 99)} units, up {rng.randint(1, 90)}% "
                f"from {rng.randint(1, 12)}/{rng.randint(1, 28)}; see ref. {rng.randint(1, 400)}.")
        lines.append(line)
        size += len(line) + 1
    return "\n".join(lines)


def csv_rows(chars: int, seed: int = 0) -> str:
    rng, rows, size, i = random.Random(seed), ["id,date,region,units,price,discount,notes"], 0, 0
    while size < chars:
        i += 1
        row = (f"{i},2024-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d},"
               f"{rng.choice(['north', 'south', 'east', 'west'])},{rng.randint(1, 500)},"
               f"{rng.randint(1, 99999) / 100},{rng.randint(0, 30)}%,"
               f"\"batch {rng.randint(100, 999)}, lot {rng.randint(1, 9)}\"")
        rows.append(row)
        size += len(row) + 1
    return "\n".join(rows)


def python_code(chars: int, seed: int = 0) -> str:
    rng, parts, size, i = random.Random(seed), [], 0, 0
    while size < chars:
        i += 1
        part = (f"def handler_{i}(request, retries={rng.randint(1, 5)}):\n"
                f"    \"\"\"Handle request kind {i}.\"\"\"\n"
                f"    url = f\"https://api.example.com/v{rng.randint(1, 3)}/items/"
                f"{{request.id}}\"\n"
                f"    params = {{'limit': {rng.randint(1, 100)}, 'page': request.page}}\n"
                f"    for attempt in range(retries):\n"
                f"        response = client.get(url, params=params, "
                f"timeout={rng.randint(1, 30)}.0)\n"
                f"        if response.status_code == {rng.choice([200, 201, 204])}:\n"
                f"            return response.json()\n"
                f"    raise RuntimeError(f\"request {{request.id}} failed\")\n")
        parts.append(part)
        size += len(part) + 1
    return "```python\n" + "\n".join(parts) + "```"


# name: (generator, size in characters, question)
LONG_CONTEXTS: dict[str, tuple[Callable[[int], str], int, str]] = {
    "numbered-36k": (numbered_sentences, 36_000, "Which site measured the most units?"),
    "numbered-147k": (numbered_sentences, 147_000, "Which site measured the most units?"),
    "numbered-300k": (numbered_sentences, 300_000, "Which site measured the most units?"),
    "csv-2000-rows": (csv_rows, 2_000 * 60, "What is the total of units in the north?"),
    "csv-300k": (csv_rows, 300_000, "What is the total of units in the north?"),
    "code-100k": (python_code, 100_000, "Which handlers retry more than three times?"),
}


def long_prompts() -> list[Prompt]:
    out = []
    for kind, (generate, chars, question) in LONG_CONTEXTS.items():
        context = generate(chars)
        if kind == "csv-2000-rows":
            context = "\n".join(context.split("\n")[:2001])
        out.append(rag(kind, context, question))
    return out
