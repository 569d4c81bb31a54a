"""``tokenlean bench templates-cache PROMPTS.jsonl``: prefix-cache eligibility in a
multi-turn replay, with a variable-first system prompt as written and as laid out.

Each conversation: a system prompt from ``--templates`` (a role prompt with
``Current date and time: {now}. User: {user}.`` put in front of it, the usual
anti-pattern), then ``--turns`` real user prompts from the prompts file, each
followed by its recorded answer. Every turn re-sends the whole conversation.
"naive" formats the template as written into the system message; "layout"
splits it with :func:`layout_template`: the static part is the system message,
the variable part goes in front of the newest user turn only (after the
conversation; history keeps the plain user messages). Eligible tokens follow
OpenAI's automatic prefix
caching (1,024+ tokens, 128-token steps) and Anthropic's ``cache_control`` breakpoints
on the system prompt and on the last history message
(:func:`anthropic_cache_breakpoints` with ``history_only=True``): a request
reads the longest prefix an earlier request wrote (0.1x) and writes up to its
last breakpoint (1.25x); the rest is plain input.
"""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import typer

from tokenlean.core import Message, Usage, count_messages, count_tokens, price, read_jsonl
from tokenlean.templates import cacheable_prefix_tokens, layout_template

_VARIABLE_HEAD = "Current date and time: {now}. User: {user}.\n\n"


def _conversations(prompts: list[dict[str, Any]], turns: int) -> list[list[tuple[str, str]]]:
    seen: set[str] = set()
    pairs: list[tuple[str, str]] = []
    for row in prompts:
        users = [m["content"] for m in row["messages"] if m.get("role") == "user"]
        if not users or not isinstance(row.get("response"), str) or users[0] in seen:
            continue
        seen.add(users[0])
        pairs.append((users[0], row["response"]))
    return [pairs[i:i + turns] for i in range(0, len(pairs) - turns + 1, turns)]


def _prefix_tokens(messages: list[Message], n: int, model: str) -> int:
    return count_messages(messages[:n], model=model).tokens if n else 0


def _usd(cost: Any) -> Decimal:
    return Decimal(0) if cost is None else Decimal(cost.input_usd)


def replay(prompts: list[dict[str, Any]], templates: list[str], *, turns: int = 5,
           conversations: int | None = None, openai_model: str = "gpt-4o",
           anthropic_model: str = "claude-sonnet-4-5") -> dict[str, Any]:
    convs = _conversations(prompts, turns)[:conversations]
    if not convs or not templates:
        raise typer.BadParameter("need at least one conversation and one template")
    out: dict[str, Any] = {"conversations": len(convs), "turns": turns}
    for variant in ("naive", "layout"):
        total = eligible = a_read = a_write = 0
        moved = 0
        for c, conv in enumerate(convs):
            template = _VARIABLE_HEAD + templates[c % len(templates)]
            static, dynamic = template, ""
            if variant == "layout":
                laid = layout_template(template, model=openai_model)
                moved += int(bool(laid.static.strip()))
                static, dynamic = laid.static, laid.dynamic
            history: list[Message] = []
            previous: list[Message] | None = None
            written: dict[int, list[Message]] = {}
            for t, (user, answer) in enumerate(conv):
                def fill(text: str, t: int = t, c: int = c) -> str:
                    return text.replace("{now}", f"2026-11-23 10:{t:02d}").replace(
                        "{user}", f"user-{c}")

                turn = f"{fill(dynamic)}\n\n{user}" if dynamic else user
                request = [Message(role="system", content=fill(static)), *history,
                           Message(role="user", content=turn)]
                tokens = count_messages(request, model=openai_model).tokens
                total += tokens
                if previous is not None:
                    eligible += cacheable_prefix_tokens(previous, request, model=openai_model)
                # Anthropic, breakpoints on the system prompt and on the last history
                # message: a request reads the longest prefix an earlier one wrote
                read_len = max((n for n in written if request[:n] == written[n]), default=0)
                read = _prefix_tokens(request, read_len, openai_model) if read_len else 0
                bps = [n for n in (1, len(request) - 1) if n >= 1]
                for n in bps:
                    if _prefix_tokens(request, n, openai_model) >= 1024:
                        written[n] = request[:n]
                end = max(bps)
                write_to = _prefix_tokens(request, end, openai_model)
                a_read += read
                a_write += max(0, write_to - read) if write_to >= 1024 else 0
                # the variable part rides with the newest turn only; history keeps the
                # plain user message, so earlier turns stay byte-identical (cacheable)
                history += [Message(role="user", content=user),
                            Message(role="assistant", content=answer)]
                previous = request
        base_o = _usd(price(Usage(input_tokens=total), model=openai_model))
        cached_o = _usd(price(Usage(input_tokens=total, cache_read_tokens=eligible),
                              model=openai_model))
        base_a = _usd(price(Usage(input_tokens=total), model=anthropic_model))
        cached_a = _usd(price(Usage(input_tokens=total, cache_read_tokens=a_read,
                                    cache_write_tokens=a_write), model=anthropic_model))
        out[variant] = {
            "input_tokens": total,
            "templates_laid_out": moved if variant == "layout" else None,
            "openai": {"model": openai_model, "cacheable_tokens": eligible,
                       "cacheable_share": round(eligible / total, 4) if total else 0.0,
                       "usd_without_cache": float(base_o), "usd_with_cache": float(cached_o)},
            "anthropic": {"model": anthropic_model, "cache_read_tokens": a_read,
                          "cache_write_tokens": a_write,
                          "cache_read_share": round(a_read / total, 4) if total else 0.0,
                          "usd_without_cache": float(base_a), "usd_with_cache": float(cached_a)},
        }
    out["layout_minus_naive_usd"] = {
        "openai": round(out["layout"]["openai"]["usd_with_cache"]
                        - out["naive"]["openai"]["usd_with_cache"], 6),
        "anthropic": round(out["layout"]["anthropic"]["usd_with_cache"]
                           - out["naive"]["anthropic"]["usd_with_cache"], 6),
    }
    return out


def bench_cache(
    file: Path = typer.Argument(..., exists=True, dir_okay=False,
                                help="JSONL of prompts: {id, messages, response, ...}."),
    templates: Path = typer.Option(..., "--templates", exists=True, dir_okay=False,
                                   help="JSONL of templates {id, name, template}: system prompts."),
    turns: int = typer.Option(5, "--turns", min=2, help="Turns per conversation."),
    limit: int | None = typer.Option(None, "--limit", min=1, help="Number of conversations."),
    min_system_tokens: int = typer.Option(0, "--min-system-tokens", min=0,
                                          help="Only templates this long (gpt-4o tokens)."),
) -> None:
    """Templates layer: prefix-cache eligibility and $ in a multi-turn replay."""
    prompts = [row for _, row in read_jsonl(file, "prompts")]
    system = [r["template"] for _, r in read_jsonl(templates, "templates")
              if r.get("type", "TEXT") == "TEXT"
              and count_tokens(r["template"], model="gpt-4o").tokens >= min_system_tokens]
    out = replay(prompts, system, turns=turns, conversations=limit)
    typer.echo(json.dumps({"data": str(file), "templates": str(templates), "limit": limit,
                           "min_system_tokens": min_system_tokens,
                           "system_prompts": len(system), **out}))
