"""What a provider's prompt (prefix) cache would bill for a replayed log.

Providers bill a prompt whose beginning they saw recently at a lower rate, so
the same saving a layer makes is worth less on tokens the provider had cached
anyway, and a layer that rewrites an early part of the prompt can break a
prefix that used to be cached. :class:`PrefixCache` replays that rule over the
prompts in log order, one instance per stream of prompts (the audit keeps one
for the logged requests and one for what the pipeline sent):

* **automatic** (OpenAI, and the default for a model that is not Claude):
  a prompt of at least 1,024 tokens is cached, and a later prompt reads the
  longest prefix it shares with an earlier one, in steps of 128 tokens from
  1,024 on (OpenAI's documented rule). Nothing is billed for writing.
* **breakpoints** (Anthropic, a model named ``claude…``): the app marks
  ``cache_control`` breakpoints, here at the end of the system prompt (with the
  tools) and, once the prompt holds an assistant or tool turn (a conversation
  or an agent loop in progress), at its end: the layout Anthropic recommends
  for multi-turn and agent calls. A single-turn prompt gets no end breakpoint
  (nothing would read it back, and the write costs more than the input rate).
  A breakpoint's prefix of at least the model's minimum (1,024 tokens; 2,048
  for Haiku) is written, billed at the write rate; a later prompt reads the
  longest written prefix that ends on one of its message boundaries. The
  tokens from the read prefix up to the last breakpoint are written.

Prefixes are compared as token streams: the tools' JSON, then each message's
role, name, text and tool calls, tokenized message by message with the
``price_as`` model's tokenizer (chat formats put special tokens between
messages, so a message's tokens do not depend on its neighbours). What the
replay cannot know is assumed in the app's favour, before and after alike:
every earlier prompt is still cached (the providers keep a prefix for minutes
of idle time, longer under steady traffic), a cache is shared by the whole log,
and Anthropic's 20-block look-back never runs out.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from tokenlean.core import Message, get_tokenizer
from tokenlean.core.tokens import message_fields

__all__ = ["PrefixCache", "PrefixRules", "rules_for"]

_REPLY_ROLES = frozenset({"assistant", "tool"})  # a prompt holding one continues a conversation


@dataclass(frozen=True, slots=True)
class PrefixRules:
    """One provider's prompt-cache rule (see the module doc)."""

    name: str
    min_tokens: int
    #: automatic caching reads in steps of ``step`` tokens; breakpoint caching reads
    #: at message boundaries and bills writes (``step`` unused)
    step: int = 128
    breakpoints: bool = False

    def describe(self) -> str:
        if self.breakpoints:
            return (f"{self.name}: cache_control breakpoints at the end of the system prompt "
                    "and, in a conversation, of the prompt; prefixes of at least "
                    f"{self.min_tokens} tokens are written (write rate) and read back at "
                    "message boundaries (read rate)")
        return (f"{self.name}: automatic; prompts of at least {self.min_tokens} tokens, "
                f"read back in {self.step}-token steps at the cached-input rate, no write "
                "premium")


def rules_for(model: str) -> PrefixRules:
    """The prompt-cache rule of the provider that serves ``model``."""
    bare = model.rsplit("/", 1)[-1].lower()
    if "claude" in bare:
        return PrefixRules("anthropic", 2048 if "haiku" in bare else 1024, breakpoints=True)
    return PrefixRules("automatic (OpenAI's rule)", 1024)


class PrefixCache:
    """The provider's prompt cache over one stream of prompts, in order."""

    def __init__(self, model: str) -> None:
        self.rules = rules_for(model)
        self._tokenizer = get_tokenizer(model)
        self._cached: set[bytes] = set()

    def _stream(self, messages: Sequence[Message],
                tools: Iterable[object]) -> tuple[list[list[int]], int]:
        """The prompt as token segments (tools' JSON, then one per message) and the index
        of the last segment of its leading system part (-1 when it has none)."""
        encode = self._tokenizer.encode
        segments: list[list[int]] = []
        tool_list = list(tools)
        if tool_list:
            segments.append(encode(json.dumps(tool_list, separators=(",", ":"),
                                              sort_keys=True, default=str)))
        system_end = len(segments) - 1
        leading = True
        for message in messages:
            fields = [*message_fields(message)[0], message.name or ""]  # what OpenAI counts
            segments.append([t for f in fields for t in encode(f)] + [-1])  # -1: a separator
            if leading and message.role in ("system", "developer"):
                system_end = len(segments) - 1
            else:
                leading = False
        return segments, system_end

    def bill(self, messages: Sequence[Message], tools: Iterable[object] = (), *,
             prompt_tokens: int | None = None) -> tuple[int, int]:
        """(tokens read from the cache, tokens written to it) for one prompt sent now, at
        most ``prompt_tokens`` (the billed count, when given) between them; the prompt is
        then cached as the provider would cache it."""
        segments, system_end = self._stream(messages, tools)
        if self.rules.breakpoints:
            read, write = self._bill_breakpoints(segments, system_end,
                                                 [m.role for m in messages])
        else:
            read, write = self._bill_automatic([t for seg in segments for t in seg])
        if prompt_tokens is None:
            return read, write
        read = min(read, prompt_tokens)
        return read, min(write, prompt_tokens - read)

    def _bill_automatic(self, tokens: list[int]) -> tuple[int, int]:
        rules = self.rules
        if len(tokens) < rules.min_tokens:
            return 0, 0
        digest = hashlib.blake2b(digest_size=16)
        marks: list[tuple[int, bytes]] = []
        done = 0
        for end in range(rules.min_tokens, len(tokens) + 1, rules.step):
            digest.update(_pack(tokens[done:end]))
            done = end
            marks.append((end, digest.digest()))
        read = max((end for end, key in marks if key in self._cached), default=0)
        self._cached.update(key for _, key in marks)
        return read, 0

    def _bill_breakpoints(self, segments: list[list[int]], system_end: int,
                          roles: list[str]) -> tuple[int, int]:
        rules = self.rules
        digest = hashlib.blake2b(digest_size=16)
        ends: list[tuple[int, bytes]] = []  # (tokens so far, prefix key) at each boundary
        total = 0
        for segment in segments:
            digest.update(_pack(segment))
            total += len(segment)
            ends.append((total, digest.digest()))
        read = max((n for n, key in ends if key in self._cached), default=0)
        marked = {system_end}
        if _REPLY_ROLES.intersection(roles):  # a conversation in progress
            marked.add(len(ends) - 1)
        breakpoints = [ends[i] for i in marked if i >= 0]
        written = [(n, key) for n, key in breakpoints if n >= rules.min_tokens]
        self._cached.update(key for _, key in written)
        last = max((n for n, _ in written), default=0)
        return read, max(0, last - read)


def _pack(tokens: list[int]) -> bytes:
    return b"".join(t.to_bytes(4, "little", signed=True) for t in tokens)
