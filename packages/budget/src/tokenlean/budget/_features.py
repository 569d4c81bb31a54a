"""Prompt features for the output-length predictor (pure Python, deterministic).

Each feature is something a reader would use to guess how long a good answer
is: the task (write / explain / list / translate / code ...), explicit length
requests ("in one sentence", "500 words", "list 10"), the format asked for,
code in the prompt, how many questions it asks, its language and its length.
The names are stored in the model artefact; the artefact refuses to load if
they differ from :data:`FEATURE_NAMES` (its ``feature_version``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

from tokenlean.core import Message, count_tokens

__all__ = ["FEATURE_NAMES", "FEATURE_VERSION", "features", "model_key", "prompt_text"]

FEATURE_VERSION = 1

_NUM_WORDS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
              "eight": 8, "nine": 9, "ten": 10, "a few": 3, "a couple of": 2, "twenty": 20,
              "fifteen": 15, "a single": 1, "single": 1, "hundred": 100, "a hundred": 100}
_NUM = (r"(\d{1,5}|one|two|three|four|five|six|seven|eight|nine|ten|fifteen|twenty|a few|"
        r"a couple of|a single|single|a hundred|hundred)")


def _num(token: str) -> float:
    token = token.lower()
    return float(token) if token.isdigit() else float(_NUM_WORDS.get(token, 1))


_UNITS = {
    "words": re.compile(_NUM + r"[\s-]*(?:\w+\s)?words?\b", re.I),
    "sentences": re.compile(_NUM + r"[\s-]*(?:\w+\s)?sentences?\b", re.I),
    "paragraphs": re.compile(_NUM + r"[\s-]*(?:\w+\s)?(?:paragraphs?|paras?)\b", re.I),
    "items": re.compile(
        _NUM + r"[\s-]*(?:\w+\s){0,2}(?:examples?|ideas?|ways?|tips?|items?|things?|questions?|"
        r"names?|reasons?|steps?|points?|bullets?|options?|suggestions?|titles?|sentences? each|"
        r"facts?|words? that|lines?|tweets?|slogans?|taglines?|recipes?|books?|movies?|places?|"
        r"countries|songs?|jokes?|keywords?|hashtags?)\b", re.I),
    "chars": re.compile(r"(\d{2,5})\s*(?:characters?|chars?)\b", re.I),
}

_FLAGS: dict[str, re.Pattern[str]] = {
    "short": re.compile(r"\b(briefly|brief|short|concise(?:ly)?|succinct|tl;?dr|one[- ]liner|"
                        r"in a nutshell|quick(?:ly)?|simply|just (?:the|give|say|answer|tell)|"
                        r"only (?:the|answer|output|return|respond|reply|say|give))\b", re.I),
    "one_word": re.compile(r"\b(one|single|1)[- ]word\b|\byes or no\b|\btrue or false\b|"
                           r"\bonly (?:a|the) (?:number|name|word|letter)\b", re.I),
    "long": re.compile(r"\b(detailed|in detail|in depth|in-depth|comprehensive|thorough(?:ly)?|"
                       r"elaborate|extensive(?:ly)?|step[- ]by[- ]step|long|full|complete)\b",
                       re.I),
    "essay": re.compile(r"\b(essay|article|blog(?: post)?|report|story|chapter|script|speech|"
                        r"cover letter|proposal|guide|tutorial|lesson plan|outline)\b", re.I),
    "poem": re.compile(r"\b(poem|haiku|limerick|sonnet|lyrics|rap|verse)\b", re.I),
    "email": re.compile(r"\b(e-?mail|letter|message|tweet|post|caption|review|bio)\b", re.I),
    "list": re.compile(r"\b(list|enumerate|bullet(?:ed)? points?|bullets|top \d+)\b", re.I),
    "table": re.compile(r"\b(table|csv|markdown table|columns?)\b", re.I),
    "json": re.compile(r"\b(json|yaml|xml|regex|regular expression|sql query)\b", re.I),
    "code_task": re.compile(r"\b(code|function|script|program|implement|class|python|javascript|"
                            r"typescript|java|c\+\+|rust|golang|sql|bash|html|css|api|algorithm|"
                            r"debug|refactor|compile|library|module)\b", re.I),
    "explain": re.compile(r"\b(explain|describe|why|how does|how do|how can|how to|what are the "
                          r"differences?|compare|contrast|discuss|analy[sz]e|evaluate|"
                          r"pros and cons)\b",
                          re.I),
    "write": re.compile(r"^\s*(?:please\s+)?(write|create|compose|draft|generate|design|develop|"
                        r"make|build|plan|come up with|give me)\b", re.I),
    "rewrite": re.compile(r"\b(rewrite|rephrase|paraphrase|edit|proofread|correct|fix the grammar|"
                          r"improve|shorten|simplify|translate|convert|format)\b", re.I),
    "summarize": re.compile(r"\b(summari[sz]e|summary|sum up|key points|main points|tl;?dr)\b",
                            re.I),
    "classify": re.compile(r"\b(classify|categori[sz]e|label|identify|detect|which of|is it|"
                           r"is this|choose|select|pick|rate|score|sentiment|true or false)\b",
                           re.I),
    "math": re.compile(r"\b(calculate|compute|solve|equation|integral|derivative|probability|"
                       r"how many|how much|sum of|prove|proof)\b|[=+*/^]\s*\d", re.I),
    "extract": re.compile(r"\b(extract|find all|find the|list all|from the (?:text|passage|"
                          r"article|paragraph))\b", re.I),
    "define": re.compile(r"^\s*(what is|what are|what's|who is|who was|who are|when was|when did|"
                         r"where is|where was|define)\b", re.I),
    "chat": re.compile(r"^\s*(hi|hello|hey|thanks|thank you|good morning)\b", re.I),
    "roleplay": re.compile(r"\b(act as|pretend|you are a|imagine you|role[- ]?play)\b", re.I),
}

_CODE_CHARS = set("{}[]();=<>_/\\|#$`")

FEATURE_NAMES: tuple[str, ...] = (
    "log_prompt_tokens", "log_user_tokens", "log_system_tokens", "n_messages", "n_lines",
    "n_questions", "n_sentences", "has_code_block", "code_char_ratio", "non_ascii_ratio",
    "non_latin_ratio", "digit_ratio", "upper_ratio",
    *(f"req_{unit}" for unit in _UNITS), "req_any",
    *(f"flag_{name}" for name in _FLAGS),
    "first_word_len", "ends_with_question", "has_url", "n_bullets_in_prompt",
)


def prompt_text(messages: Sequence[Message]) -> tuple[str, str]:
    """(user-side text, system text) of a chat."""
    system = "\n".join(m.text for m in messages if m.role in ("system", "developer"))
    user = "\n".join(m.text for m in messages if m.role not in ("system", "developer"))
    return user, system


def _last_user(messages: Sequence[Message]) -> str:
    for message in reversed(messages):
        if message.role == "user":
            return message.text
    return messages[-1].text if messages else ""


def features(messages: Sequence[Message], *, count_model: str = "gpt-4o") -> list[float]:
    """The feature vector of a chat, in :data:`FEATURE_NAMES` order."""
    user, system = prompt_text(messages)
    ask = _last_user(messages)
    text = ask or user
    n_chars = max(len(text), 1)
    user_tokens = count_tokens(user, model=count_model).tokens if user else 0
    system_tokens = count_tokens(system, model=count_model).tokens if system else 0
    head = text[:2000]
    row: list[float] = [
        math.log1p(user_tokens + system_tokens),
        math.log1p(user_tokens),
        math.log1p(system_tokens),
        float(len(messages)),
        math.log1p(text.count("\n")),
        float(min(text.count("?"), 20)),
        float(min(len(re.findall(r"[.!?](?:\s|$)", text)), 50)),
        float("```" in text or bool(re.search(r"^( {4}|\t)\S", text, re.M))),
        sum(ch in _CODE_CHARS for ch in text) / n_chars,
        sum(ord(ch) > 127 for ch in text) / n_chars,
        sum(ord(ch) > 0x24F and not 0x2000 <= ord(ch) <= 0x2BFF for ch in text) / n_chars,
        sum(ch.isdigit() for ch in text) / n_chars,
        sum(ch.isupper() for ch in text) / n_chars,
    ]
    any_request = 0.0
    for pattern in _UNITS.values():
        found = [_num(m.group(1)) for m in pattern.finditer(head)]
        value = math.log1p(max(found)) if found else 0.0
        any_request = max(any_request, float(bool(found)))
        row.append(value)
    row.append(any_request)
    for pattern in _FLAGS.values():
        row.append(float(bool(pattern.search(head))))
    words = text.split()
    row += [
        float(len(words[0])) if words else 0.0,
        float(text.rstrip().endswith("?")),
        float("http://" in text or "https://" in text),
        float(min(len(re.findall(r"^\s*(?:[-*•]|\d+[.)])\s", text, re.M)), 30)),
    ]
    return row


_DATE_SUFFIX = re.compile(r"(?:[-@](?:\d{4}-?\d{2}-?\d{2}|\d{4}))+$")


def model_key(model: str | None) -> str:
    """The name a model is looked up under in the predictor's model table.

    Lower case, ``_`` as ``-``, without a provider prefix (``openai/``) or a
    date/snapshot suffix (``-2024-05-13``, ``-0613``): ``"gpt-4o-2024-05-13"``
    and ``"openai/gpt-4o"`` are both ``"gpt-4o"``.
    """
    if not model:
        return ""
    key = model.strip().lower().replace("_", "-").rsplit("/", 1)[-1]
    return _DATE_SUFFIX.sub("", key) or key
