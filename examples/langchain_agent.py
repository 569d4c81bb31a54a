"""A LangChain v1 agent, run raw and then with tokenlean's middleware, side by side.

An ordinary ``create_agent`` agent over ``ChatOpenAI`` pointed at tokenlean's
local server (SmolLM2-135M-Instruct, which has no tool calling, so the agent
only talks). The lean run adds one middleware:

    agent = create_agent(chat, system_prompt=SYSTEM)                                  # before
    agent = create_agent(chat, system_prompt=SYSTEM,
                         middleware=[TokenleanMiddleware(budget=True)])                # after

Each model call of the agent then runs through tokenlean: the exact cache
answers a conversation it has seen, the budget layer's ``max_tokens`` is bound
on the call, the ledger gets one row per call. Both runs are priced as gpt-4o.
Run:

    .venv/bin/python examples/langchain_agent.py [--questions N] [--base-url URL]
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from langchain.agents import create_agent
from langchain_core.messages import HumanMessage
from langchain_openai import ChatOpenAI

from langchain_tokenlean import TokenleanMiddleware
from tokenlean.core import SQLiteLedger
from tokenlean.server import DEFAULT_MODEL_NAME

from _shared import PRICED_AS, local_server, parse_args, report, totals

SYSTEM = ("You are the help desk of a bike shop in Porto. Shops open Tuesday to Saturday, "
          "10:00-19:00. Answer in one short sentence.")

QUESTIONS = [
    "When are you open?",
    "When are you open?",  # a second customer asks the same
    "Are you open on Monday?",
]


def run_session(agent: Any, questions: list[str]) -> list[str]:
    return [str(agent.invoke({"messages": [HumanMessage(q)]})["messages"][-1].content)
            for q in questions]  # a fresh conversation per customer


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(__doc__, argv, questions=len(QUESTIONS), max_tokens=32)
    questions = QUESTIONS[: args.questions]

    with local_server(args.base_url) as base_url, tempfile.TemporaryDirectory() as tmp:
        chat = ChatOpenAI(model=DEFAULT_MODEL_NAME, base_url=base_url, api_key="local",
                          temperature=0, max_tokens=args.max_tokens)
        # raw: the app as it is (the middleware with preset="off" only keeps the books)
        raw_ledger = SQLiteLedger(Path(tmp) / "raw.sqlite")
        raw = create_agent(chat, system_prompt=SYSTEM, middleware=[
            TokenleanMiddleware(preset="off", model=PRICED_AS, ledger=raw_ledger)])
        raw_answers = run_session(raw, questions)
        # lean: one middleware
        lean_ledger = SQLiteLedger(Path(tmp) / "lean.sqlite")
        leaned = create_agent(chat, system_prompt=SYSTEM, middleware=[
            TokenleanMiddleware(budget=True, model=PRICED_AS, ledger=lean_ledger)])
        lean_answers = run_session(leaned, questions)
        result: dict[str, Any] = {"raw": totals(raw_ledger), "lean": totals(lean_ledger),
                                  "answers_match": raw_answers == lean_answers}

    report(result, questions, raw_answers, lean_answers)
    return result


if __name__ == "__main__":
    main()
