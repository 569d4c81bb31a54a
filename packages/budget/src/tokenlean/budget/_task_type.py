"""What kind of task a request is, from rules on its text (no model).

Concise mode is gated by task type: asking for shorter answers costs little
accuracy on open chat and on questions over a given context, but a lot on math
and code (Concise CoT: -27.7% accuracy on math for GPT-3.5), so those are left
alone unless the app opts in. The detector reads the **last user turn** and
the **system prompt**; the first rule that matches wins:

=================  ======================================================================
type               rule
=================  ======================================================================
``code``           a code fence, two code-like lines (``def``/``class``/``import``/
                   ``#include``/``function``/``=>``/ending in ``;`` or ``{``) or two closing
                   HTML tags in the last user turn;
                   or a programming word (Python, SQL, function, script, bug, ...) with a
                   programming verb (write, implement, fix, debug, refactor, ...)
``extraction``     "extract", "identify the ... in the following", "named entities", "from
                   the (text|passage|article|context)"; or a context given in the system
                   prompt (at least 300 characters, or the word "context") with a question
``classification`` "classify", "categorize", "sentiment", "one of the (following)
                   categories", "on a scale of N to M", "relevant or not"
``reasoning``      puzzles and logic: riddle, puzzle, "true, false, or uncertain", "does not
                   belong", "what is the relationship", "how many ... does ... have",
                   "step by step", "explain your reasoning"
``math``           an equation (``x^2``, ``f(x) =``, two numbers joined by an operator), or a
                   math word (probability, remainder, integer, solve, area, percent ...) with
                   a number; or a word problem: at least three numbers and a question
``chat``           everything else: open chat, writing, role-play, explanations
=================  ======================================================================

Each message is read up to its first 20,000 characters, so the work per call is
bounded. Mistakes toward a gated type (code, math, reasoning) only lose a saving; mistakes
away from one can cost accuracy, so the code and math rules are the broad ones.
Measured on 100 hand-labelled prompts (MT-Bench's categories, plus AlpacaEval
and Arena-Hard rows): see ``docs/layers/budget.md`` ("Concise mode").
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from tokenlean.core import Message

__all__ = ["CONCISE_TASK_TYPES", "TASK_TYPES", "detect_task_type"]

#: every type :func:`detect_task_type` returns
TASK_TYPES = ("code", "math", "reasoning", "extraction", "classification", "chat")
#: the types concise mode applies to by default (code, math and reasoning need an opt-in)
CONCISE_TASK_TYPES = frozenset({"extraction", "classification", "chat"})
# the rules read at most this many characters of each message: the work per call is
# bounded whatever the prompt's size
_READ = 20_000

_I = re.IGNORECASE
_FENCE = re.compile(r"```|~~~")
# per line ([ \t], never \s: a pattern that crosses lines can go quadratic on blank lines)
_CODE_LINE = re.compile(
    r"^[ \t]*(def |class \w|import \w|from \w+ import|#include|function[ \t]*\w*\(|public |"
    r"(const|let|var) \w+ ?=|SELECT |.*[;{][ \t]*$|.*=>)", re.MULTILINE)
_CLOSING_TAG = re.compile(r"</[a-zA-Z][\w-]{0,20}>")
_CODE_WORD = re.compile(
    r"\b(python|javascript|typescript|java|c\+\+|c#|golang|rust|ruby|php|kotlin|swift|sql|"
    r"html|css|bash|shell script|regex|json schema|api|function|script|program|"
    r"code|algorithm|bug|compile|runtime|stack ?trace|library|framework|array|linked list|"
    r"binary tree|recursion|complexity)\b", _I)
_CODE_VERB = re.compile(
    r"\b(write|implement|develop|fix|debug|refactor|optimi[sz]e|make|create|build|convert|"
    r"port|identify any bug)\b", _I)
_EXTRACT = re.compile(
    r"\b(extract|named entities|from the (following |given |presented )?(text|passage|"
    r"article|context|document|records?|data)|identify the \w+( \w+)? (in|mentioned)|"
    r"(in|from) the (following|given|presented|below) (sentences?|texts?|passages?|"
    r"paragraphs?|articles?|data|records?|reviews?|documents?)|"
    r"read the (below |following )?(passage|paragraph|text))", _I)
_CONTEXT_WORD = re.compile(r"\b(context|document|passage)\b", _I)
_CLASSIFY = re.compile(
    r"\b(classify|categori[sz]e|sentiment|one of the (following )?(categories|classes|labels)|"
    r"on a scale of \d+ to \d+|relevant or not|assign (it|them|each) to)\b", _I)
_EQUATION = re.compile(
    r"(\b[a-z]\s*\^\s*\d|\b[a-z]\([a-z]\)\s*=|\d\s*[-+*/×÷^]\s*\d|\b\d+\s*[a-z]\s*[-+=]|"
    r"[a-z]\s*[-+*/]\s*[a-z]\s*=|\|[^|]+\|\s*[<>])", _I)
_MATH_WORD = re.compile(
    r"\b(probability|remainder|integers?|solve|equation|inequality|area|perimeter|percent(age)?|"
    r"average|sum of|product of|divided|multipl(y|ied)|how much|how many|total|calculate|"
    r"compute|invests?|priced?|cost)\b", _I)
_NUMBER = re.compile(r"(?<![\w.])\$?\d+(?:[.,]\d+)?%?")
_REASON = re.compile(
    r"\b(riddle|puzzle|logic(al)?|true, false,? or uncertain|does not belong|what is the "
    r"relationship|how many \w+ does \w+ have|step[- ]by[- ]step|explain your reasoning|"
    r"what could be the reasons?|which direction)\b", _I)


def _last_user(messages: Sequence[Message]) -> str:
    for message in reversed(messages):
        if message.role == "user":
            return message.text[:_READ]
    return ""


def _system(messages: Sequence[Message]) -> str:
    return "\n".join(m.text[:_READ] for m in messages if m.role in ("system", "developer"))


def _is_code(text: str) -> bool:
    if _FENCE.search(text) or len(_CODE_LINE.findall(text)) >= 2 \
            or len(_CLOSING_TAG.findall(text)) >= 2:
        return True
    return bool(_CODE_WORD.search(text) and _CODE_VERB.search(text))


def _is_math(text: str) -> bool:
    if _EQUATION.search(text):
        return True
    numbers = len(_NUMBER.findall(text))
    if _MATH_WORD.search(text) and numbers >= 1:
        return True
    return numbers >= 3 and "?" in text


def detect_task_type(messages: Sequence[Message]) -> str:
    """One of :data:`TASK_TYPES` for a chat, by the rules in this module's docstring."""
    user = _last_user(messages)
    system = _system(messages)
    if _is_code(user):
        return "code"
    has_context = len(system) >= 300 or bool(_CONTEXT_WORD.search(system))
    if _EXTRACT.search(user) or (has_context and user.strip()):
        return "extraction"
    if _CLASSIFY.search(user):
        return "classification"
    if _REASON.search(user):
        return "reasoning"
    if _is_math(user):
        return "math"
    return "chat"
