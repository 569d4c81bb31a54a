"""Cache-friendly prompt layout.

Providers bill a repeated prompt *prefix* at a cached rate: OpenAI caches
automatically (prompts of 1,024+ tokens, in 128-token steps), Anthropic caches
up to ``cache_control`` breakpoints. A template that puts a variable first
("Today is {date}. You are ...") makes every call's prefix different, so
nothing is ever cached. :func:`layout_template` moves the static part of a
template before the variable part where that is safe;
:func:`anthropic_cache_breakpoints` marks the static prefix (and the
conversation so far) for Anthropic; :func:`cacheable_prefix_tokens` measures
what a provider can reuse between two consecutive requests.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tokenlean.core import InvalidRequestError, Message, get_tokenizer

from ._protect import check_invariants, find_variables

__all__ = [
    "CacheBreakpoints",
    "LayoutResult",
    "anthropic_cache_breakpoints",
    "cacheable_prefix_tokens",
    "layout_template",
]

# A unit that opens with one of these leans on the unit before it: they move together.
_BACK_REFERENCE = re.compile(
    r"(?i)^\W*(?:\w+\W+){0,1}?(this|these|that|those|it|its|they|them|their|here|then|next|"
    r"finally|lastly|afterwards|also|however|therefore|otherwise|instead|such|"
    r"second|third|after that|in addition|additionally|furthermore|moreover)\b")
# A unit that points back at earlier text never moves (it could point at a unit that
# holds a variable and stays behind). Forward references ("below", "following")
# stay valid: every unit after a moved unit is still after it.
_POSITIONAL = re.compile(r"(?i)\b(above|aforementioned|previous|preceding|former|latter|"
                         r"earlier|foregoing)\b")
_RULE = re.compile(r"^[ \t]*([=\-*_~#])\1{2,}[ \t]*$")


@dataclass(frozen=True, slots=True)
class LayoutResult:
    """A template laid out for prefix caching, and how long its static prefix is."""

    original: str
    text: str
    moved: int  # units moved in front of the first variable
    static_prefix_tokens_before: int
    static_prefix_tokens_after: int
    model: str
    static: str = ""  # the part before the first variable (after layout)
    dynamic: str = ""  # the rest: send it after the conversation (e.g. with the user turn)

    @property
    def changed(self) -> bool:
        return self.text != self.original


def _units(template: str) -> tuple[list[str], str]:
    """Paragraphs if there are several, else sentences; and the joiner. A unit that
    opens with a back-reference, or follows one that ends with ":" (or is a
    heading, rule, list item or table row), is glued to the unit before it."""
    paragraphs = [p for p in re.split(r"\n[ \t]*\n", template.strip()) if p.strip()]
    if len(paragraphs) > 1:
        raw, joiner = paragraphs, "\n\n"
    else:
        raw = [s for s in re.split(r"(?<=[.!?])\s+(?=[A-Z{\"'(\[$])", template.strip()) if s]
        joiner = " "
    units: list[str] = []
    for unit in raw:
        stripped = unit.strip()
        glue = units and (
            _BACK_REFERENCE.match(stripped)
            or units[-1].rstrip().endswith((":", "-"))
            or _RULE.match(units[-1].strip().splitlines()[-1])
            or stripped.startswith(("|", "-", "*", "```")) or re.match(r"^\d+[.)]", stripped)
            or units[-1].lstrip().startswith("#")
        )
        if glue:
            units[-1] = units[-1] + joiner + unit
        else:
            units.append(unit)
    return units, joiner


def _movable(unit: str, variables: Sequence[str]) -> bool:
    return not any(v in unit for v in variables) and not _POSITIONAL.search(unit)


def _static_prefix(text: str, variables: Sequence[str]) -> str:
    cut = min((text.find(v) for v in variables if v in text), default=len(text))
    return text[:cut]


def layout_template(template: str, *, model: str = "gpt-4o") -> LayoutResult:
    """Move the self-contained static units of ``template`` (paragraphs, or sentences
    of a one-paragraph template) before the first unit that holds a variable.

    A unit stays where it is when it holds a variable or points back at
    earlier text ("above", "previous", ...). A unit that opens with a
    back-reference ("This", "Then", "However", ...), follows a unit ending in
    ":" or a heading, or is a list item, table row or rule, is glued to the
    unit before it and moves only with it.
    Units keep their relative order; the text of each is unchanged, and the
    invariants are checked on the result (else the original is returned).
    """
    if not isinstance(template, str):
        raise InvalidRequestError(f"template must be a string, got {type(template).__name__}")
    tokenizer = get_tokenizer(model)
    variables = find_variables(template)
    before = len(tokenizer.encode(_static_prefix(template, variables))) if variables else \
        len(tokenizer.encode(template))
    if not variables:
        return LayoutResult(template, template, 0, before, before, model, template, "")
    units, joiner = _units(template)
    first_var = next((i for i, u in enumerate(units) if any(v in u for v in variables)), None)
    if first_var is None:
        return LayoutResult(template, template, 0, before, before, model, template, "")
    head = units[:first_var]
    rest = units[first_var:]
    moved = [u for u in rest if _movable(u, variables)]
    stay = [u for u in rest if not _movable(u, variables)]
    unchanged = LayoutResult(template, template, 0, before, before, model,
                             joiner.join(head), joiner.join(rest))
    if not moved:
        return unchanged
    text = joiner.join(head + moved + stay)
    if check_invariants(template, text) or sorted(units) != sorted(head + moved + stay) \
            or sorted(_units(template)[0]) != sorted(_units(text)[0]):
        return unchanged
    after = len(tokenizer.encode(_static_prefix(text, variables)))
    return LayoutResult(template, text, len(moved), before, after, model,
                        joiner.join(head + moved), joiner.join(stay))


# --- measuring and marking prefixes ---------------------------------------------------

def _message_ids(message: Message | Mapping[str, Any], tokenizer: Any) -> list[int]:
    m = message if isinstance(message, Message) else Message.from_openai(message)
    return (tokenizer.encode(f"<|{m.role}|>") + tokenizer.encode(m.text)
            + tokenizer.encode("<|end|>"))


def _ids(messages: Sequence[Message | Mapping[str, Any]], tokenizer: Any) -> list[int]:
    out: list[int] = []
    for m in messages:
        out.extend(_message_ids(m, tokenizer))
    return out


def cacheable_prefix_tokens(previous: Sequence[Message | Mapping[str, Any]],
                            current: Sequence[Message | Mapping[str, Any]], *,
                            model: str = "gpt-4o", minimum: int = 1024,
                            step: int = 128) -> int:
    """Tokens of ``current`` a provider can bill at its cached rate after ``previous``.

    OpenAI's rule by default: the longest common token prefix of the two
    prompts, zero below ``minimum`` (1,024), else rounded down to ``step``
    (128) tokens. Messages are tokenised with a role marker around each, so a
    change anywhere in a message ends the shared prefix there.
    """
    tokenizer = get_tokenizer(model)
    a, b = _ids(previous, tokenizer), _ids(current, tokenizer)
    n = 0
    for x, y in zip(a, b, strict=False):  # stops at the shorter prompt
        if x != y:
            break
        n += 1
    if n < minimum:
        return 0
    return minimum + (n - minimum) // step * step if step > 1 else n


@dataclass(frozen=True, slots=True)
class CacheBreakpoints:
    """An Anthropic Messages body with ``cache_control`` breakpoints added."""

    body: dict[str, Any]
    breakpoints: int
    static_prefix_tokens: int  # system prompt (and tools) up to the first breakpoint
    cacheable: bool  # the static prefix reaches the model's minimum cacheable length


_EPHEMERAL = {"type": "ephemeral"}


def _blocks(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if isinstance(content, list):
        return [dict(b) for b in content]
    raise InvalidRequestError("Anthropic content must be a string or a list of blocks")


def _marked(body: Mapping[str, Any]) -> int:
    count = 0
    for block in _iter_blocks(body):
        if isinstance(block, Mapping) and "cache_control" in block:
            count += 1
    return count


def _iter_blocks(body: Mapping[str, Any]) -> list[Any]:
    out: list[Any] = list(body.get("tools") or [])
    system = body.get("system")
    if isinstance(system, list):
        out.extend(system)
    for message in body.get("messages") or []:
        if isinstance(message, Mapping) and isinstance(message.get("content"), list):
            out.extend(message["content"])
    return out


def anthropic_cache_breakpoints(body: Mapping[str, Any], *, conversation: bool = True,
                                history_only: bool = False, minimum: int = 1024,
                                model: str | None = None) -> CacheBreakpoints:
    """A copy of an Anthropic Messages API ``body`` with ``cache_control``
    breakpoints on the last system block (the static prefix) and, with
    ``conversation=True``, on the last block of the last message (so the next
    turn reads the whole conversation so far from the cache). With
    ``history_only=True`` that second breakpoint goes on the message before the
    last one instead: use it when the newest user turn carries per-call text
    (the variable part of a laid-out template) that history will not repeat.

    Anthropic allows 4 breakpoints; existing ones are kept and counted.
    ``minimum`` is the model's shortest cacheable prefix (1,024 tokens for
    Claude Sonnet / Opus, 2,048 for Haiku); shorter prefixes are still marked
    (harmless) but reported as not cacheable. Token counts for Claude are
    approximations (its tokenizer is not public).
    """
    if not isinstance(body, Mapping) or not isinstance(body.get("messages"), list):
        raise InvalidRequestError("body must be an Anthropic Messages request with 'messages'")
    out: dict[str, Any] = copy.deepcopy(dict(body))
    budget = 4 - _marked(out)
    tokenizer = get_tokenizer(model or str(out.get("model") or "claude"))
    static = 0
    if out.get("tools"):
        static += len(tokenizer.encode(str(out["tools"])))
    if out.get("system"):
        blocks = _blocks(out["system"])
        static += sum(len(tokenizer.encode(b.get("text", ""))) for b in blocks)
        if budget > 0 and "cache_control" not in blocks[-1]:
            blocks[-1]["cache_control"] = dict(_EPHEMERAL)
            budget -= 1
        out["system"] = blocks
    index = len(out["messages"]) - (2 if history_only else 1)
    if conversation and index >= 0 and budget > 0:
        messages = list(out["messages"])
        target = dict(messages[index])
        blocks = _blocks(target.get("content", ""))
        if blocks and "cache_control" not in blocks[-1]:
            blocks[-1]["cache_control"] = dict(_EPHEMERAL)
        target["content"] = blocks
        messages[index] = target
        out["messages"] = messages
    return CacheBreakpoints(out, _marked(out), static, static >= minimum)
