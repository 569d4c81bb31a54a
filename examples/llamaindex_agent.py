"""A LlamaIndex agent with one tool, run raw and then through tokenlean, side by side.

An ordinary ``ReActAgent`` (LlamaIndex's agent workflow) with one tool over an
``OpenAILike`` LLM pointed at tokenlean's local server (SmolLM2-135M-Instruct).
The lean run changes one line, the LLM:

    agent = ReActAgent(tools=[hours], llm=llm)                                   # before
    agent = ReActAgent(tools=[hours], llm=lean(llm, budget=True))                # after

Every model step of the agent loop goes through tokenlean: the exact cache
answers a step it has seen (a user asking the same thing again), the budget
layer caps each step's ``max_tokens``. A 135M model follows the ReAct format
only sometimes; the agent then answers directly, which is fine for the books.
Both runs are priced as gpt-4o. Run:

    .venv/bin/python examples/llamaindex_agent.py [--questions N] [--base-url URL]
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from typing import Any

from llama_index.core.agent.workflow import ReActAgent
from llama_index.core.tools import FunctionTool
from llama_index.llms.openai_like import OpenAILike

from llama_index.llms.tokenlean import lean
from tokenlean.core import SQLiteLedger
from tokenlean.server import DEFAULT_MODEL_NAME

from _shared import PRICED_AS, local_server, parse_args, report, totals

HOURS = {"porto": "Tuesday to Saturday, 10:00-19:00", "lisbon": "Monday to Saturday, 9:00-20:00",
         "madrid": "Tuesday to Sunday, 11:00-20:00"}

QUESTIONS = [
    "When is the Porto shop open?",
    "When is the Porto shop open?",  # another user, the same question
    "When is the Madrid shop open?",
]


def shop_hours(city: str) -> str:
    """Opening hours of the shop in a city (Porto, Lisbon or Madrid)."""
    return HOURS.get(city.strip().lower(), "There is no shop in that city.")


async def run_session(llm: object, questions: list[str]) -> list[str]:
    answers = []
    for question in questions:  # a fresh agent per user: no shared memory
        agent = ReActAgent(tools=[FunctionTool.from_defaults(shop_hours)], llm=llm,
                           streaming=False)
        answers.append(str(await agent.run(user_msg=question, max_iterations=3)))
    return answers


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(__doc__, argv, questions=len(QUESTIONS), max_tokens=48)
    questions = QUESTIONS[: args.questions]

    with local_server(args.base_url) as base_url, tempfile.TemporaryDirectory() as tmp:
        llm = OpenAILike(model=DEFAULT_MODEL_NAME, api_base=base_url, api_key="local",
                         is_chat_model=True, context_window=2048, max_tokens=args.max_tokens,
                         temperature=0)
        raw_ledger = SQLiteLedger(Path(tmp) / "raw.sqlite")
        raw_answers = asyncio.run(run_session(
            lean(llm, preset="off", model=PRICED_AS, ledger=raw_ledger), questions))
        lean_ledger = SQLiteLedger(Path(tmp) / "lean.sqlite")
        lean_answers = asyncio.run(run_session(
            lean(llm, budget=True, model=PRICED_AS, ledger=lean_ledger), questions))
        result = {"raw": totals(raw_ledger), "lean": totals(lean_ledger),
                  "answers_match": raw_answers == lean_answers}

    report(result, questions, raw_answers, lean_answers)
    return result


if __name__ == "__main__":
    main()
