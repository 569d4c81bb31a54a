"""TokenleanMiddleware inside real ``create_agent`` agents.

The model is langchain-core's own ``GenericFakeChatModel`` (a real chat-model
class LangChain ships for tests); what reached the model call is read from a
real callback handler (the invocation parameters LangChain reports), the
ledger is a real SQLite file, the layers are tokenlean's own.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from langchain.agents import create_agent
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.language_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.tools import tool

from langchain_tokenlean import TokenleanMiddleware
from tokenlean.budget import BudgetLayer, LengthPredictor
from tokenlean.core import SQLiteLedger


def predicting() -> BudgetLayer:
    """The shipped predictor without calibration: its bound from the first call (the
    default, calibrated, leaves the cap alone until the model has warmed up)."""
    return BudgetLayer(predictor=LengthPredictor.default())

USAGE = {"input_tokens": 40, "output_tokens": 6, "total_tokens": 46}


class Seen(BaseCallbackHandler):
    """Records what each call of the agent's own model was started with (the
    middleware's wrapper around it reports a run of its own, left out here)."""

    def __init__(self) -> None:
        self.params: list[dict[str, Any]] = []
        self.prompts: list[list[Any]] = []

    def on_chat_model_start(self, serialized: Any, messages: Any, **kwargs: Any) -> None:
        params = kwargs.get("invocation_params") or {}
        if params.get("_type") == "tokenlean-lean":
            return
        self.params.append(params)
        self.prompts.append(messages[0])


def answers(*texts: str) -> GenericFakeChatModel:
    return GenericFakeChatModel(messages=iter(
        [AIMessage(content=t, usage_metadata=USAGE) for t in texts]))


def ask(agent: Any, question: str, seen: Seen) -> str:
    out = agent.invoke({"messages": [HumanMessage(question)]}, config={"callbacks": [seen]})
    return str(out["messages"][-1].content)


def test_budget_max_tokens_reaches_the_model_and_cache_answers_repeat(tmp_path: Path) -> None:
    ledger = SQLiteLedger(tmp_path / "ledger.sqlite")
    seen = Seen()
    agent = create_agent(answers("Frames carry a lifetime warranty.", "unused second answer"),
                         system_prompt="You answer warranty questions in one sentence.",
                         # the fake model has no temperature: unknown counts as sampled,
                         # which the cache answers only when asked to
                         middleware=[TokenleanMiddleware(cache="exact", budget=predicting(),
                                                         cache_sampled=True, ledger=ledger,
                                                         model="gpt-4o")])

    first = ask(agent, "How long is the frame warranty?", seen)
    assert first == "Frames carry a lifetime warranty."
    assert len(seen.params) == 1
    sent = seen.params[0].get("max_tokens")
    assert isinstance(sent, int) and sent > 0  # the budget layer's prediction was bound

    again = ask(agent, "How long is the frame warranty?", seen)
    assert again == first
    assert len(seen.params) == 1  # the cache answered: the model was not called again

    rows = list(ledger.records())
    assert len(rows) == 2
    miss, hit = rows
    assert not miss.cached and miss.usage.input_tokens == 40 and miss.cost_usd > 0
    assert hit.cached and hit.cost_usd == 0
    assert {r.layer for r in miss.layers} >= {"cache", "budget"}


def test_off_preset_passes_the_agents_messages_through(tmp_path: Path) -> None:
    seen_raw, seen_lean = Seen(), Seen()
    raw = create_agent(answers("ok"), system_prompt="Be brief.")
    leaned = create_agent(answers("ok"), system_prompt="Be brief.",
                          middleware=[TokenleanMiddleware(preset="off", model="gpt-4o",
                                                          ledger=SQLiteLedger(tmp_path / "l.db"))])
    assert ask(raw, "Hi  there", seen_raw) == ask(leaned, "Hi  there", seen_lean) == "ok"
    assert ([m.model_dump(exclude={"id"}) for m in seen_raw.prompts[0]]
            == [m.model_dump(exclude={"id"}) for m in seen_lean.prompts[0]])
    assert seen_raw.params == seen_lean.params
    # the agent's own message objects reached the model (its ids, not copies)
    assert seen_lean.prompts[0][1].id is not None


def test_templates_rewrite_reaches_the_model(tmp_path: Path) -> None:
    seen = Seen()
    agent = create_agent(answers("ok"), system_prompt="Be   brief.\n\n\n\nReally.",
                         middleware=[TokenleanMiddleware(templates="whitespace", cache=False,
                                                         model="gpt-4o", ledger=False)])
    ask(agent, "Hi", seen)
    system = seen.prompts[0][0]
    assert system.type == "system" and "   " not in system.content


@tool
def shop_hours(city: str) -> str:
    """Opening hours of the shop in a city."""
    return f"{city}: Tuesday to Saturday, 10:00-19:00"


class ToolCaller(GenericFakeChatModel):
    def bind_tools(self, tools: Any, **kwargs: Any) -> Any:
        return self.bind(tools=tools, **kwargs)


async def test_async_agent_with_a_tool_records_each_model_call(tmp_path: Path) -> None:
    ledger = SQLiteLedger(tmp_path / "ledger.sqlite")
    model = ToolCaller(messages=iter([
        AIMessage(content="", tool_calls=[{"id": "c1", "name": "shop_hours",
                                           "args": {"city": "Porto"}}], usage_metadata=USAGE),
        AIMessage(content="Porto opens Tuesday to Saturday.", usage_metadata=USAGE),
    ]))
    seen = Seen()
    agent = create_agent(model, tools=[shop_hours],
                         middleware=[TokenleanMiddleware(budget=predicting(), ledger=ledger,
                                                         model="gpt-4o")])
    out = await agent.ainvoke({"messages": [HumanMessage("When is Porto open?")]},
                              config={"callbacks": [seen]})
    assert out["messages"][-1].content == "Porto opens Tuesday to Saturday."
    assert any(m.type == "tool" and "10:00" in m.content for m in out["messages"])
    assert len(seen.params) == 2 and all(isinstance(p.get("max_tokens"), int)
                                         for p in seen.params)
    rows = list(ledger.records())
    assert len(rows) == 2 and not any(r.cached for r in rows)


def test_bad_preset_is_a_config_error() -> None:
    from tokenlean.core import ConfigError

    with pytest.raises(ConfigError):
        TokenleanMiddleware(preset="nope", ledger=False)


async def test_one_middleware_serves_overlapping_agent_calls(tmp_path: Path) -> None:
    import asyncio

    middleware = TokenleanMiddleware(cache=False, ledger=SQLiteLedger(tmp_path / "l.db"),
                                     model="gpt-4o")
    agents = {name: create_agent(answers(f"answer from {name}"), middleware=[middleware])
              for name in ("a", "b", "c")}
    outs = await asyncio.gather(*(agent.ainvoke({"messages": [HumanMessage(f"q {name}")]})
                                  for name, agent in agents.items()))
    assert [o["messages"][-1].content for o in outs] == [f"answer from {n}" for n in agents]


def test_the_default_budget_leaves_the_cap_alone_while_the_model_warms_up(tmp_path: Path) -> None:
    """budget="predict" calibrates on the app's own completions: a model it has not
    seen 100 answers of keeps the app's cap (here: none)."""
    ledger = SQLiteLedger(tmp_path / "ledger.sqlite")
    seen = Seen()
    agent = create_agent(answers("Frames carry a lifetime warranty."),
                         middleware=[TokenleanMiddleware(budget="predict", ledger=ledger,
                                                         model="gpt-4o")])
    assert ask(agent, "How long is the frame warranty?", seen)
    assert "max_tokens" not in seen.params[0] or seen.params[0]["max_tokens"] is None
    budget = next(r for r in next(iter(ledger.records())).layers if r.layer == "budget")
    assert budget.detail.get("calibration_key")
