"""The opt-in structural passes (``mode="all"``): they change the form of a
prompt, not only its wording, so they are not part of the safe default.

* ``markdown``: list markers dropped (indentation kept), headings written as
  ``Title:``, tables without padding, outer pipes and separator rows;
* ``structure``: role prompts in labelled form: ``Act as a X.`` -> ``Role: X.``,
  ``I'll give you X and you'll Y`` -> ``Input: X. Task: Y.``;
* ``telegraphic``: articles, relative ``that is`` / ``which are`` before a
  participle or adjective, and complementiser ``that`` after a verb dropped
  (English prompts only).

They run on masked text like the safe passes, and every invariant is checked
after each of them the same way (a pass that breaks one is retried sentence by
sentence, then skipped for that template).
"""

from __future__ import annotations

import re
from collections.abc import Callable

from ._passes import Pass, _rule, _run_rules, split_sentences
from ._protect import PLACEHOLDER_CLASS

__all__ = ["STRUCTURAL_PASSES", "STRUCTURAL_PASS_LIST"]

_P = PLACEHOLDER_CLASS

# --- markdown ---------------------------------------------------------------------

_BULLET = re.compile(r"(?m)^([ \t]*)[-*+][ \t]+(?=\S)")
_HEADING = re.compile(r"(?m)^[ \t]*#{1,6}[ \t]+([^\n]*?)[ \t]*#*[ \t]*$")
_TABLE_ROW = re.compile(r"^[ \t]*\|.*\|[ \t]*$")
_TABLE_SEP = re.compile(r"^[ \t]*\|?[ \t]*:?-{2,}:?[ \t]*(?:\|[ \t]*:?-{2,}:?[ \t]*)*\|?[ \t]*$")


def _heading(m: re.Match[str]) -> str:
    title = m.group(1).strip()
    if not title:
        return ""
    return title if title[-1] in ":.?!" + _P else title + ":"


def _table_row(line: str) -> str:
    cells = [c.strip() for c in line.strip().strip("|").split("|")]
    return " | ".join(cells)


def _markdown(text: str, _unmask: Callable[[str], str]) -> str:
    lines = []
    for line in text.split("\n"):
        if _TABLE_SEP.match(line) and "|" in line:
            continue
        if _TABLE_ROW.match(line):
            line = _table_row(line)
        lines.append(line)
    text = "\n".join(lines)
    text = _HEADING.sub(_heading, text)
    return _BULLET.sub(r"\1", text)


# --- structure (role prompts) -----------------------------------------------------

_VERBS_IN = (r"provide|give|send|type|write|describe|tell|share|paste|upload|supply|show"
             r"|present|feed")
_INPUT = re.compile(
    r"^(?:I will|I'll|I am going to|I'm going to) (?:" + _VERBS_IN + r")(?: you)?(?: with)?"
    r" (?P<what>[^.!?\n]{3,300}?)"
    r"(?:,? and (?:you will|you'll|you should|you must|your task is to|your job is to"
    r"|it will be your job to|it is your job to) (?P<task>[^.!?\n]{3,400}?))?"
    r"(?P<end>[.!]?)$")
_ROLE = [
    _rule(r"(?:Act|Behave|Serve|Work) as (?:a |an |the |my )?(?=[^.!?\n]{2,200}[.!\n])",
          "Role: ", start=True),
    _rule(r"(?:You are|You're) (?:a|an) (?=[^.!?\n]{2,200}[.!\n])", "Role: ", start=True),
]


def _structure(text: str, _unmask: Callable[[str], str]) -> str:
    parts = split_sentences(text)
    out = []
    for i, (sentence, sep) in enumerate(parts):
        stripped = sentence.strip()
        lead = sentence[: len(sentence) - len(sentence.lstrip())]
        m = _INPUT.match(stripped)
        if m:
            new = f"Input: {m.group('what')}."
            if m.group("task"):
                new += f" Task: {m.group('task')}."
            sentence = lead + new
        elif i == 0 or "\n" in parts[i - 1][1]:
            sentence = _run_rules(_ROLE, sentence)
        out.append(sentence + sep)
    return "".join(out)


# --- telegraphic ------------------------------------------------------------------

_ENGLISH = frozenset("the a an and to of you your is are with for that this be will in on".split())
_OTHER = frozenset("que de la el los las para com como uma um une les des du et est der die das"
                   " und ein eine ist mit bir ve bu için il di che per del una por".split())


def _looks_english(text: str) -> bool:
    """Articles are English words: "a" in Portuguese or Spanish is a preposition."""
    words = re.findall(r"[^\W\d_]+", text.lower())
    if not words or sum(w.isascii() for w in words) / len(words) < 0.9:
        return False
    english = sum(w in _ENGLISH for w in words)
    return english > 0 and sum(w in _OTHER for w in words) * 3 <= english


_TELEGRAPHIC = [
    # articles; not "a few / a little / a lot / a bit" (they change the meaning without)
    _rule(r"\b(?:the|an|a)[ \t]+(?!few\b|little\b|lot\b|lots\b|bit\b|couple\b|while\b"
          r"|number\b|total\b)(?=[a-z" + _P + r"])", ""),
    _rule(r"(?:The|An|A)[ \t]+(?!few\b|little\b|lot\b|bit\b|couple\b|while\b)(?=[a-z])", "",
          start=True),
    # "tools that are used" -> "tools used"; "a plan which is detailed" -> "plan detailed"
    _rule(r"\b(?:that|which|who) (?:is|are) (?=[a-z]+(?:ed|ing|ble|ful|ive|ous|ic|al)\b)", ""),
    # complementiser "that" after a verb of saying / checking
    _rule(r"\b(ensure|ensures|check|checks|verify|verifies|confirm|confirms|assume|assumes"
          r"|believe|know|say|says|mean|means|show|shows|indicate|indicates|note|notes"
          r"|remember|consider|explain|explains|state|states) that\b", r"\1"),
]


def _telegraphic(text: str, _unmask: Callable[[str], str]) -> str:
    if not _looks_english(_unmask(text)):
        return text
    return _run_rules(_TELEGRAPHIC, text)


STRUCTURAL_PASS_LIST: tuple[Pass, ...] = (
    Pass("markdown", _markdown, False,
         "list markers dropped (indentation kept), '## Title' -> 'Title:', tables without "
         "padding, outer pipes or separator rows"),
    Pass("structure", _structure, True,
         "role prompts in labelled form: 'Act as a X.' -> 'Role: X.', 'I'll give you X and "
         "you'll Y' -> 'Input: X. Task: Y.'"),
    Pass("telegraphic", _telegraphic, True,
         "articles, 'that are' before a participle, 'ensure that' -> 'ensure' (English only)"),
)
STRUCTURAL_PASSES: tuple[str, ...] = tuple(p.name for p in STRUCTURAL_PASS_LIST)
