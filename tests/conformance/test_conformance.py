"""One contract for every wrapper, in the spirit of langchain-tests' standard suites.

Each adapter (LangChain ``lean()``, LangChain's agent middleware, LlamaIndex
``lean()``) wraps a real OpenAI client class talking real HTTP to the scripted
server, with the same settings on the wrapped model and the same layers. For
every way of calling (sync, async, stream, async stream) and every kind of call
(plain, tools, structured output) the suite asks the same thing twice and
checks that:

* the app gets the right answer both times (tool calls and the parsed object
  included), the second time from the cache, without reaching the provider;
* the :class:`Request` the adapter built is the one the app's settings describe
  (model, cap, sampling, stop, seed, tools, tool choice and the rest), and the
  provider received exactly those settings;
* every adapter built the same request, so the same cache key, and wrote the
  same ledger rows (a miss priced from the provider's usage, then a hit).

Structured output has no common input across frameworks (LangChain binds the
schema as a tool with ``tool_choice="any"``, the agent adds it through its
``ToolStrategy``, LlamaIndex's OpenAI asks for a JSON-schema response format),
so the two LangChain adapters are compared with each other and LlamaIndex's is
checked on its own. ``test_transparent.py`` checks that each adapter sends what
the bare framework would have sent.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from tokenlean.cache import ResponseCache, keys_for
from tokenlean.core import Message, Request
from tokenlean.core.presets import build_layers

MODES = ("invoke", "ainvoke", "stream", "astream")
KINDS = ("plain", "tools", "structured")


def _comparable(request: Request) -> Request:
    return replace(request, request_id="-", notes=())


def _row(record: Any) -> tuple[Any, ...]:
    """What a ledger row says about a call (ids and timings left out)."""
    return (record.model, record.provider, record.tenant, record.user, record.usage,
            record.cost_usd, record.cached, record.cache_score, record.finish_reason,
            tuple((r.layer, r.saved_input_tokens, r.saved_output_tokens) for r in record.layers))


def _first_miss_and_hit(got: dict[str, Any]) -> list[tuple[Any, ...]]:
    """The ledger rows of the first model call: its miss, then its hit on the second asking."""
    misses = sum(1 for r in got["rows"] if not r.cached)
    return [_row(got["rows"][0]), _row(got["rows"][misses])]


def _expected(spec: Any, kind: str, tools: tuple[Any, ...] = (),
              tool_choice: str | None = None) -> Request:
    params: dict[str, Any] = {"service_tier": spec.SETTINGS["service_tier"]}
    if tool_choice is not None:
        params["tool_choice"] = tool_choice
    return Request(
        messages=(Message(role="system", content=spec.SYSTEM),
                  Message(role="user", content=spec.QUESTION)),
        model="gpt-4o", max_tokens=spec.APP_CAP, temperature=spec.SETTINGS["temperature"],
        top_p=spec.SETTINGS["top_p"], seed=spec.SETTINGS["seed"],
        stop=tuple(spec.SETTINGS["stop"]), tools=tools, params=params, request_id="-")


def _drive(adapter: Any, url: str, mode: str, kind: str, spec: Any) -> dict[str, Any]:
    """Ask twice through ``adapter``; what the adapter built, sent, answered and booked."""
    spy, rows = spec.Spy(), spec.Rows()
    layers = [spy, ResponseCache(semantic=False), *build_layers(preset="off",
                                                                templates="whitespace")]
    outcomes = adapter(url).run(mode=mode, kind=kind, times=2, layers=layers, ledger=rows)
    return {"requests": spy.requests, "rows": rows.records, "outcomes": outcomes}


def _check_answer(outcome: Any, kind: str, adapter: Any, spec: Any) -> None:
    if kind == "structured":
        assert outcome.structured == spec.Sum(**spec.TOOL_ARGS)
    elif kind == "tools":
        assert outcome.tool_calls[:1] == [("add", spec.TOOL_ARGS)]
        if adapter.name == "langchain-middleware":  # the agent ran the tool and answered
            assert outcome.text == spec.TOOL_ANSWER
    else:
        assert outcome.text == spec.ANSWER


def _check_sent(request: Request, body: dict[str, Any]) -> None:
    """The provider received the settings the request carries."""
    cap = body.get("max_completion_tokens", body.get("max_tokens"))
    assert (body["model"], cap, body.get("temperature"), body.get("top_p"), body.get("seed"),
            body.get("stop")) == (request.model, request.max_tokens, request.temperature,
                                  request.top_p, request.seed, list(request.stop))
    assert [t["function"]["name"] for t in body.get("tools", [])] == \
        [t["function"]["name"] for t in request.tools]
    for key, value in request.params.items():  # tool_choice included: written the OpenAI way
        assert body.get(key) == value, key


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("mode", MODES)
def test_every_adapter_builds_the_same_request_key_and_rows(mode: str, kind: str, spec: Any,
                                                            scripted_openai: Any) -> None:
    seen: dict[str, dict[str, Any]] = {}
    for adapter in spec.ADAPTERS:
        sent_before = len(scripted_openai.bodies)
        got = seen[adapter.name] = _drive(adapter, scripted_openai.url, mode, kind, spec)
        bodies = scripted_openai.bodies[sent_before:]
        first, again = got["outcomes"]
        for outcome in (first, again):
            _check_answer(outcome, kind, adapter, spec)
        # one provider call per model call of the first asking; the second is all hits
        misses = [r for r in got["rows"] if not r.cached]
        hits = [r for r in got["rows"] if r.cached]
        assert len(bodies) == len(misses) == len(hits) >= 1, adapter.name
        assert [_row(r)[:-1] for r in hits] == [
            _row(r)[:-1] for r in got["rows"][len(misses):]]
        assert all(r.usage.input_tokens == spec.PROMPT_TOKENS
                   and r.usage.output_tokens == spec.COMPLETION_TOKENS for r in misses)
        _check_sent(got["requests"][0], bodies[0])

    plain_tools = {"tools": (spec.adder_tool(),)} if kind == "tools" else {}
    if kind != "structured":
        expected = _expected(spec, kind, **plain_tools)
        for name, got in seen.items():
            assert _comparable(got["requests"][0]) == expected, name
    compared = [n for n in seen if kind != "structured" or n.startswith("langchain")]
    reference = seen[compared[0]]
    for name in compared[1:]:
        got = seen[name]
        assert _comparable(got["requests"][0]) == _comparable(reference["requests"][0]), name
        assert keys_for(got["requests"][0]).exact == keys_for(reference["requests"][0]).exact
        assert _first_miss_and_hit(got) == _first_miss_and_hit(reference), name
    if kind == "structured":
        lc = seen["langchain-lean"]["requests"][0]
        assert lc.params["tool_choice"] == "required"
        assert [t["function"]["name"] for t in lc.tools] == ["Sum"]
        li = seen["llamaindex-lean"]["requests"][0]  # the wrapped OpenAI's own way: a schema
        assert li.params["response_format"]["json_schema"]["name"] == "Sum" and not li.tools
        assert li.max_tokens == spec.APP_CAP and li.temperature == spec.SETTINGS["temperature"]
