"""Concise mode: a length instruction derived from the predicted length (opt-in)."""

from __future__ import annotations

from tokenlean.core import Message, Request

__all__ = ["length_instruction", "with_length_instruction"]

# tokens -> English words (~0.75 words per token), aimed below the bound so the
# answer ends on its own instead of hitting max_tokens
_WORDS_PER_TOKEN = 0.75
_AIM = 0.7


def length_instruction(max_tokens: int) -> str:
    words = max(10, int(round(max_tokens * _WORDS_PER_TOKEN * _AIM, -1)))
    return (f"Be concise: answer in at most about {words} words, "
            "keeping every fact, step or piece of code the question needs.")


def with_length_instruction(request: Request, max_tokens: int) -> Request:
    """``request`` with the instruction appended to its system message (or a new one first)."""
    instruction = length_instruction(max_tokens)
    messages = list(request.messages)
    for i, message in enumerate(messages):
        if message.role in ("system", "developer"):
            messages[i] = message.with_text(f"{message.text}\n\n{instruction}")
            return request.with_messages(messages)
    return request.with_messages([Message(role="system", content=instruction), *messages])
