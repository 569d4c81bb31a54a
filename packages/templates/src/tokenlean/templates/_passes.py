"""The rewrite passes. Each works on *masked* text (protected spans are single
private-use characters it cannot see into) and returns new masked text.

``local`` passes edit inside sentences; when one breaks an invariant on a
template, the rewriter retries it sentence by sentence and keeps only the
sentences whose edit is clean. ``global`` passes look across sentences
(duplicates, repeated constraints) and are taken or skipped whole.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass

from ._protect import PLACEHOLDER_CLASS, constraint_clauses

__all__ = ["PASSES", "SAFE_PASSES", "WHITESPACE_PASSES", "Pass", "split_sentences"]

_CAP = "\x00"  # marker: capitalise the next letter (a sentence start lost its first words)
_SENT_START = r"(?:^|(?<=[.!?:]\s)|(?<=[.!?:][\"')\]]\s)|(?<=\n)|(?<=\n[-*] )|(?<=\x00))"
_P = PLACEHOLDER_CLASS


@dataclass(frozen=True, slots=True)
class Pass:
    """One rewrite pass: ``apply(masked_text, unmask) -> masked_text``; a pass with
    ``apply_spans`` rewrites protected spans themselves (JSON compaction) and is
    checked by value, not verbatim."""

    name: str
    apply: Callable[[str, Callable[[str], str]], str]
    local: bool
    description: str
    apply_spans: Callable[[tuple[str, ...]], tuple[str, ...]] | None = None
    # a cheap test on the *unmasked* text: False means the pass would change nothing
    # (the rewriter then skips masking and checking altogether); None: no such test
    may_change: Callable[[str], bool] | None = None
    # changes only whitespace, so a meaning check has nothing to measure (MiniLM's
    # tokenizer does not see whitespace); also the passes run on a text longer than
    # the rewriter's max_chars
    lossless: bool = False
    # about how many tokens the pass would save on the *unmasked* text (a cheap
    # estimate, no tokenizer): on a long text a pass that would save almost nothing
    # is skipped
    saves_about: Callable[[str], int] | None = None


def _case_like(source: str, out: str) -> str:
    if out and source[:1].isupper() and out[:1].islower():
        return out[0].upper() + out[1:]
    return out


def _rule(pattern: str, repl: str, *, start: bool = False) -> tuple[re.Pattern[str], str, bool]:
    prefix = _SENT_START if start else ""
    return re.compile(prefix + pattern, re.IGNORECASE | re.MULTILINE), repl, start


_AT_START = re.compile(r"(?:^|[.!?:][\"')\]]?[ \t]+|\n[ \t]*|\n[ \t]*[-*][ \t]+)$")


def _at_sentence_start(text: str, pos: int) -> bool:
    return bool(_AT_START.search(text[max(0, pos - 8):pos])) or pos == 0


_EMPHASIS = re.compile(r"\b(?:NOT|NEVER|MUST|ONLY|ALWAYS|DO|NO|SHOULD|WILL|IMPORTANT|YOU|ARE"
                       r"|IS|PLEASE|ACT|WANT)\b")


def _run_rules(rules: list[tuple[re.Pattern[str], str, bool]], text: str) -> str:
    for pattern, repl in ((p, r) for p, r, _start in rules):
        def replace(m: re.Match[str], repl: str = repl) -> str:
            if _EMPHASIS.search(m.group(0)):
                return m.group(0)  # "DO NOT", "do NOT": capitals are emphasis, kept
            out = m.expand(repl)
            if m.group(0)[:1].isupper() and _at_sentence_start(m.string, m.start()):
                if not out:
                    return _CAP
                return out[0].upper() + out[1:] if out[0].islower() else out
            return _case_like(m.group(0), out)

        text = pattern.sub(replace, text)
    return _tidy(_resolve_caps(text))


# spaces before punctuation (that ends a clause) after a letter; the letter is checked in
# Python (a lookbehind at every position made this the slowest regex of the pass)
_SPACES_BEFORE_PUNCT = re.compile(r" +(?=[,.;:!?](?:\s|$))")


def _after_letter(text: str, at: int) -> bool:
    """Whether ``text[at - 1]`` is a letter (the regex class ``[^\\W\\d_]``)."""
    return at > 0 and text[at - 1].isalnum() and not text[at - 1].isdecimal()


def _drop_spaces_before_punct(text: str) -> str:
    return _SPACES_BEFORE_PUNCT.sub(
        lambda m: "" if _after_letter(text, m.start()) else m.group(), text)


def _tidy(text: str) -> str:
    """Spaces left behind by a removal: doubled, trailing, or before punctuation."""
    text = re.sub(r"[ \t]+$", "", text, flags=re.M)
    text = re.sub(r"(?<=\S)[ \t]{2,}", " ", text)
    return _drop_spaces_before_punct(text)


def _resolve_caps(text: str) -> str:
    text = re.sub(_CAP + r"+([^\w" + _P + r"]*)([^\W\d_])",
                  lambda m: m.group(1) + m.group(2).upper(), text)
    return text.replace(_CAP, "")


# --- whitespace and decoration ---------------------------------------------------

# what _whitespace changes; it finds at least everything the pass would change on the
# masked text (a placeholder is neither a space nor a letter, and masking only removes
# whitespace)
_UNTIDY_WHITESPACE = re.compile(r"[ \t]+$|(?<=\S)[ \t]{2,}|\n{3,}|[\r\u00a0]", re.M)


# plain substrings at least one of which each of those matches contains (a quick
# "no" for a long text without any: the regex then need not run)
_UNTIDY_HINTS = ("  ", "\t", " \n", "\n\n\n", "\r", "\u00a0", " ,", " .", " ;", " :", " !",
                 " ?")


def _untidy_whitespace(text: str) -> bool:
    if text != text.strip():
        return True
    if not any(hint in text for hint in _UNTIDY_HINTS):
        return False
    return _UNTIDY_WHITESPACE.search(text) is not None or any(
        _after_letter(text, m.start()) for m in _SPACES_BEFORE_PUNCT.finditer(text))


# each of these is about one token the whitespace pass saves: two spaces ("a  b"
# is "a", " ", " b" to tiktoken), a tab, trailing spaces, a run of blank lines, a
# carriage return, a non-breaking space. Spaces before punctuation are not
# counted: " ," is one token as "," is (on the QMSum transcripts, removing 350-3,337
# of them per transcript saved 0 tokens; this count was within 2 tokens of the
# tokenizer's on each of the 35 distinct transcripts). Indentation is counted
# although the pass keeps it: the estimate errs towards running the pass.
_TOKEN_SAVING_WHITESPACE = ("  ", "\t", " \n", "\n\n\n", "\r", "\u00a0")


def _whitespace_tokens_saved(text: str) -> int:
    """About how many tokens :func:`_whitespace` saves on ``text``: a few C-level
    substring counts, no tokenizer and no regex."""
    return sum(text.count(s) for s in _TOKEN_SAVING_WHITESPACE) + (text != text.strip())


def _whitespace(text: str, _unmask: Callable[[str], str]) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\u00a0", " ")
    text = re.sub(r"[ \t]+$", "", text, flags=re.M)
    text = re.sub(r"(?<=\S)[ \t]{2,}", " ", text)
    text = _drop_spaces_before_punct(text)
    text = re.sub(r"\n{3,}", "\n\n", text)
    return text.strip()


_RULE_LINE = re.compile(r"^[ \t]*#*[ \t]*([=\-*_~#])\1{2,}[ \t]*$")


def _decoration(text: str, _unmask: Callable[[str], str]) -> str:
    # horizontal rules and banner lines ("-----", "=====", "# ======", "***"), unless
    # they fence a protected span on the next / previous line (a "{context}" block)
    lines = text.split("\n")
    kept = []
    for i, line in enumerate(lines):
        if _RULE_LINE.match(line):
            near = [ln for ln in (lines[i - 1] if i else "", lines[i + 1] if i + 1 < len(lines)
                                  else "")]
            if not any(re.search(f"[{_P}]", ln) for ln in near):
                continue
        kept.append(line)
    text = "\n".join(kept)
    # markdown emphasis markers around plain words
    text = re.sub(r"\*\*([^*\n]{1,200}?)\*\*", r"\1", text)
    text = re.sub(r"(?<!\w)__([^_\n]{1,200}?)__(?!\w)", r"\1", text)
    # repeated punctuation
    text = re.sub(r"!{2,}", "!", text)
    text = re.sub(r"\?{2,}", "?", text)
    text = re.sub(r"\.{4,}", "...", text)
    return text


def _compact_json(spans: tuple[str, ...]) -> tuple[str, ...]:
    out = []
    for span in spans:
        if "\n" in span and span.lstrip()[:1] in "{[":
            try:
                value = json.loads(span)
            except ValueError:
                out.append(span)
                continue
            if isinstance(value, (dict, list)):
                out.append(json.dumps(value, ensure_ascii=False, separators=(",", ":")))
                continue
        out.append(span)
    return tuple(out)


def _keep(text: str, _unmask: Callable[[str], str]) -> str:
    return text


_LINE_OPENS_BRACKET = re.compile(r"(?m)^[ \t]*[\[{]")


def _may_hold_json(text: str) -> bool:
    """A JSON block to compact starts a line with a bracket (see ``_json_blocks``)."""
    return _LINE_OPENS_BRACKET.search(text) is not None


# --- filler, politeness, hedges, connectives ----------------------------------------

_FILLER = [
    _rule(r"I (?:really )?(?:want|would like|need|'d like) (?:for )?you to "
          r"(act|behave|pretend|serve"
          r"|function|work|respond|answer|reply|role-?play) (as|like)\b", r"\1 \2", start=True),
    _rule(r"I (?:really )?(?:want|would like|need|'d like) (?:for )?you to\s+", "", start=True),
    _rule(r"(?:Please )?imagine (?:that )?you are\b", "You are", start=True),
    _rule(r"(?:Your|The) (?:main |primary )?(?:task|job|goal|role|objective|mission|purpose)"
          r" (?:here )?(?:is|will be) to\s+", "", start=True),
    _rule(r"\bit will be your (?:job|task|role) to\s+", ""),
    _rule(r"\bit is your (?:job|task|role) to\s+", ""),
    _rule(r"My first (?:suggestion |specific )?(request|sentence|command|question|claim|prompt"
          r"|query|task|topic|message|input|word|statement)(?: for you)? (?:is|will be)\b"
          r"(?:[ \t]*:)?",
          r"First \1:", start=True),
    _rule(r"\b(I will|I'll|I am going to|I'm going to) (provide|give|send|supply) you with\b",
          r"I will \2"),
    _rule(r"\b(?:I will|I'll) (?:be )?(?:providing|giving) you with\b", "I will give"),
    _rule(r"\byou will need to\b", "you will"),
    _rule(r"You will also (?=[a-z])", "Also ", start=True),
    _rule(r"You (?:will|should|need to|are expected to|are going to|have to) (?!be\b|have\b|not\b"
          r"|never\b|only\b|always\b|also\b|receive\b|get\b|see\b|find\b|know\b|need\b)(?=[a-z])",
          "", start=True),
    _rule(r"(?:Please )?(?:note|remember|keep in mind|bear in mind|be aware)(?: that)?,?[ \t]+"
          r"(?=[a-z\ue000-\uf8ff])", "", start=True),
    _rule(r"It is (?:important|essential|crucial|vital) (?:to note |to remember )?that\s+", "",
          start=True),
    _rule(r"This (?:could|can|may|might) (?:include|involve)\b", "E.g.,", start=True),
    _rule(r"You should also be sure to\s+", "Also ", start=True),
    _rule(r"When it comes to (\w+ing|[\w-]+)\b", r"For \1", start=True),
    _rule(r"\b(?:which|that) (?:has|have) the potential to\b", "that can"),
    _rule(r"\bI would like (?:for )?you to\s+", ""),
    _rule(r"\bI want you to\s+", ""),
    _rule(r"\bI (?:need|would like|want) you to\s+", ""),
    # "You should only reply with X, and nothing else" -> "Only reply with X"
    _rule(r"(?:You|you) (?:should|will|are to|are going to|need to|have to) only\b", "Only",
          start=True),
    _rule(r"(\bonly\b[^.!?\n]{1,200}?),? and nothing else\b", r"\1"),
    _rule(r"(?:You are|You're) tasked with\s+", "Task: ", start=True),
    _rule(r"\byou are tasked with\b", "your task is"),
    _rule(r"(?:In this role|In this capacity|As such),? you (?:will|should)\s+(?=[a-z])", "",
          start=True),
    _rule(r"(?:Make|Be) sure (?:to|that you)\s+(?=[a-z])", "", start=True),
    _rule(r"\b(and|then|also|always) (?:make|be) sure (?:to|that you)\s+(?=[a-z])", r"\1 "),
    _rule(r"(?:Remember|Don't forget|Do not forget) to\s+(?=[a-z])", "", start=True),
    _rule(r"(?:Feel free|You are (?:free|welcome)) to\b", "You may", start=True),
    _rule(r"\bfeel free to\b", "you may"),
    _rule(r"(?:Do not|Don't) hesitate to\s+(?=[a-z])", "", start=True),
    _rule(r"It is (?:very |extremely |really )?(?:important|essential|crucial|vital|critical)"
          r" (?:for you )?to\s+(?=[a-z])", "", start=True),
    _rule(r"(?:Your|The) (?:response|responses|answer|answers|reply|replies|output) should"
          r" (?!not\b|never\b|only\b|always\b)", "", start=True),
    _rule(r"\b(provide|give|send) (me|you|us|them|him|her|the user) with\b", r"\1 \2"),
    _rule(r"\bprovide (me|you|us|them|the user) (?=(?:a|an|the|some|your|my)\b)", r"give \1 "),
    _rule(r"(?:Here (?:is|are)|The following (?:is|are)) (?:a |an |the |some )?(?:list of )?"
          r"(?=[^.!?\n]{1,80}:)", "", start=True),
]

_POLITENESS = [
    _rule(r"(?:Thank you|Thanks)(?: (?:so|very) much)?(?: in advance)?(?: for [^.!?\n" + _P
          + r"]{0,80})?[.!]?[ \t]*(?=$|\n)", "", start=True),
    _rule(r"(?:could|can|would|will) you(?: please| kindly)? (?!like\b|mind\b|be\b|have\b|know\b"
          r"|please\b)([a-z][^?.!\n]{3,300})\?", r"\1.", start=True),
    _rule(r"I would (?:really |greatly )?appreciate (?:it )?if you (?:could|would)\s+", "",
          start=True),
    _rule(r"\bplease,?[ \t]+(?=[a-z])", ""),
    _rule(r",?\s*please(?=[.!])", ""),
    _rule(r"\bkindly\s+(?=[a-z])", ""),
    _rule(r"\bif you (?:would be so kind|don't mind),?\s*", ""),
]

_HEDGES = [
    _rule(r"\b(?:basically|essentially|actually|literally|truly|definitely|certainly)\b,?[ \t]*",
          ""),
    _rule(r"\breally\s+(?=\w)", ""),
    _rule(r"(?:of course|needless to say|as you know|it goes without saying that),?[ \t]*", "",
          start=True),
    _rule(r"\bI think (?:that )?", "", start=True),
    _rule(r"\b(?:very|extremely|incredibly) (?!much\b|many\b|few\b|little\b|well\b|first\b"
          r"|last\b|end\b|beginning\b|same\b|own\b|best\b|least\b|most\b|thing\b|large\b"
          r"|small\b|high\b|low\b|long\b|short\b|good\b|bad\b|important\b|simple\b"
          r"|different\b|detailed\b|realistic\b)(?=[a-z]+\b)", ""),
    _rule(r"(?:To be honest|Honestly|Frankly|Simply put|In other words|At the end of the day|"
          r"In a nutshell|All in all),[ \t]*", "", start=True),
]

_CONNECTIVES = [
    _rule(r"\bin order to\b", "to"),
    _rule(r"\bso as to\b", "to"),
    _rule(r"\bin an effort to\b", "to"),
    _rule(r"\b(?:due|owing) to the fact that\b", "because"),
    _rule(r"\b(?:in spite|despite) of the fact that\b", "although"),
    _rule(r"\bdespite the fact that\b", "although"),
    _rule(r"\bin the event that\b", "if"),
    _rule(r"\bfor the purpose of\b", "for"),
    _rule(r"\bwith regards? to\b", "about"),
    _rule(r"\bin regards? to\b", "about"),
    _rule(r"\bprior to\b", "before"),
    _rule(r"\bsubsequent to\b", "after"),
    _rule(r"\bat (?:this|the present) (?:point in |moment in )?time\b", "now"),
    _rule(r"\bin the near future\b", "soon"),
    _rule(r"\ba (?:large|great|huge) number of\b", "many"),
    _rule(r"\bthe (?:vast )?majority of\b", "most"),
    _rule(r"\beach and every\b", "every"),
    _rule(r"(?:In addition|Additionally|Furthermore|Moreover),", "Also,", start=True),
    _rule(r"\bas well as\b", "and"),
    _rule(r"\b(is|are) able to\b", "can"),
    _rule(r"\bwill be able to\b", "can"),
    _rule(r"\b(?:has|have) the (?:ability|capability) to\b", "can"),
    _rule(r"\bmake use of\b", "use"),
    _rule(r"\butili[sz]e\b", "use"),
    _rule(r"\butili[sz]es\b", "uses"),
    _rule(r"\butili[sz]ing\b", "using"),
    _rule(r"\butili[sz]ed\b", "used"),
    _rule(r"\ba (?:wide )?(?:variety|range) of\b", "various"),
    _rule(r"\bin the form of\b", "as"),
    _rule(r"\bon a daily basis\b", "daily"),
    _rule(r"\bon a regular basis\b", "regularly"),
    _rule(r"\bwhether or not\b", "whether"),
    _rule(r"\bmake sure(?: that)?\b", "ensure"),
    _rule(r"\bmakes sure(?: that)?\b", "ensures"),
    _rule(r"\btake into (?:account|consideration)\b", "consider"),
    _rule(r"\btakes into (?:account|consideration)\b", "considers"),
    _rule(r"\bcome up with\b", "devise"),
    _rule(r"\bin a (?:timely|prompt) manner\b", "promptly"),
    _rule(r"\bin a clear and concise manner\b", "clearly and concisely"),
    _rule(r"\bas (?:soon|quickly) as possible\b", "promptly"),
    _rule(r"\ba number of\b", "several"),
    _rule(r"\bwith the help of\b", "with"),
    _rule(r"\bby means of\b", "by"),
    _rule(r"\bin the context of\b", "in"),
    _rule(r"\bin addition to\b", "besides"),
    _rule(r"\bin accordance with\b", "per"),
    _rule(r"\bon the basis of\b", "based on"),
    _rule(r"\bwith the (?:goal|aim|purpose|intention) of\b", "for"),
    _rule(r"\bin such a way that\b", "so that"),
    _rule(r"\bin a way that\b", "so that"),
    _rule(r"\bfor the sake of\b", "for"),
    _rule(r"\bat all times\b", "always"),
    _rule(r"\b(?:is|are|am) going to (?=(?:be|act|help|provide|give|write|create|ask|send|receive"
          r"|play|pretend|respond|answer|reply|generate|use|make|work|need|have|explain|review"
          r"|analy[sz]e|describe|tell|show|list)\b)", "will "),
    _rule(r"\bthe fact that\b", "that"),
    _rule(r"\bit is possible (?:for you )?to\b", "you can"),
    _rule(r"\bhave the option to\b", "can"),
    _rule(r"\bis capable of\b", "can"),
    _rule(r"\bare capable of\b", "can"),
    _rule(r"\bin an? (simp)le (?:way|manner)\b", r"\1ly"),
    _rule(r"\bin an? (clear|concise|professional|creative|respectful|humorous|informative"
          r"|engaging|natural|polite|friendly|formal|casual|concise|logical|systematic"
          r"|objective|accurate|efficient) (?:way|manner)\b", r"\1ly"),
    _rule(r"\bfirst and foremost\b", "first"),
    _rule(r"\bone and only\b", "only"),
    _rule(r"\bup to date\b", "current"),
    _rule(r"\bup-to-date\b", "current"),
    _rule(r"\bcarry out\b", "do"),
    _rule(r"\bcarries out\b", "does"),
]


# contractions: one token instead of two ("do not" -> "don't"); never at a clause end
# ("who you are." stays) nor after a wh-word ("what it is and ..." stays)
_NOT_AFTER_WH = r"(?<!\bwhat )(?<!\bwho )(?<!\bhow )(?<!\bwhere )(?<!\bwhatever )(?<!\bhere )"
_CONTRACTIONS = [
    _rule(r"\b(do|does|did|is|are|was|were|should|would|could|has|have|had) not\b(?= [a-z])",
          r"\1n't"),
    _rule(r"\bwill not\b(?= [a-z])", "won't"),
    _rule(_NOT_AFTER_WH + r"\bI am\b(?= [a-z])(?! (?:and|or|but|not|so|if)\b)", "I'm"),
    _rule(_NOT_AFTER_WH + r"\b(I|you|we|they|it|he|she|that|there) will\b(?= [a-z])"
          r"(?! (?:and|or|but|not|so|if)\b)", r"\1'll"),
    _rule(_NOT_AFTER_WH + r"\b(you|we|they) are\b(?= [a-z])(?! (?:and|or|but|not|so|if|in|at"
          r"|on|to|with|for|from|now|here|there|today)\b)", r"\1're"),
    _rule(_NOT_AFTER_WH + r"\b(it|that|there|he|she) is\b(?= [a-z])(?! (?:and|or|but|not|so"
          r"|if|in|at|on|to|with|for|from|now|here|there|today)\b)", r"\1's"),
    _rule(r"\blet us\b(?= [a-z])", "let's"),
]


def _contractions(text: str, _unmask: Callable[[str], str]) -> str:
    return _run_rules(_CONTRACTIONS, text)


def _filler(text: str, _unmask: Callable[[str], str]) -> str:
    return _run_rules(_FILLER, text)


def _politeness(text: str, _unmask: Callable[[str], str]) -> str:
    return _run_rules(_POLITENESS, text)


def _hedges(text: str, _unmask: Callable[[str], str]) -> str:
    return _run_rules(_HEDGES, text)


def _connectives(text: str, _unmask: Callable[[str], str]) -> str:
    return _run_rules(_CONNECTIVES, text)


# --- sentence-level passes ---------------------------------------------------------

_SPLIT = re.compile(r"(?<=[.!?])([\"')\]]?)([ \t]+)(?=[A-Z\"'(\[" + _P + r"])")


def split_sentences(text: str) -> list[tuple[str, str]]:
    """``(sentence, separator)`` pairs whose concatenation is ``text``."""
    out: list[tuple[str, str]] = []
    for line in re.split(r"(\n+)", text):
        if not line:
            continue
        if line.startswith("\n"):
            if out:
                out[-1] = (out[-1][0], out[-1][1] + line)
            else:
                out.append(("", line))
            continue
        last = 0
        for m in _SPLIT.finditer(line):
            out.append((line[last:m.start(2)], m.group(2)))
            last = m.end(2)
        out.append((line[last:], ""))
    return out


def _join(parts: list[tuple[str, str]]) -> str:
    return "".join(s + sep for s, sep in parts)


def _key(sentence: str, unmask: Callable[[str], str]) -> str:
    return " ".join(re.findall(r"[^\W_]+", unmask(sentence).lower()))


def _drop(parts: list[tuple[str, str]], index: int) -> None:
    """Remove sentence ``index``, keeping the line structure around it."""
    _sentence, sep = parts[index]
    if index > 0 and "\n" in sep and "\n" not in parts[index - 1][1]:
        parts[index - 1] = (parts[index - 1][0], sep)
    elif index > 0 and "\n" in sep:
        prev_sep = parts[index - 1][1]
        parts[index - 1] = (parts[index - 1][0], max(prev_sep, sep, key=len))
    del parts[index]


_LABEL = re.compile(r"^\s*(?:[-*]\s+)?[\w ]{1,30}:\s")


def _duplicates(text: str, unmask: Callable[[str], str]) -> str:
    parts = split_sentences(text)
    seen: set[str] = set()
    i = 0
    while i < len(parts):
        sentence = parts[i][0]
        key = _key(sentence, unmask)
        # a repeated sentence that holds protected text (a variable slot, a quote) or is
        # a labelled line ("Output: ...") is structure, e.g. one line of each example
        structural = bool(re.search(f"[{_P}]", sentence)) or bool(_LABEL.match(sentence))
        if len(key.split()) >= 4 and key in seen and not structural:
            _drop(parts, i)
            continue
        seen.add(key)
        i += 1
    return _join(parts)


_MERGEABLE = re.compile(r"(?i)^(do not|don't|never|always|you must not|you must never"
                        r"|you must|you should never|you should always)\s+([^.!?\n]+?)\s*([.!])$")
_SUBORDINATE = re.compile(r"(?i)\b(unless|if|when|except|until|but|or|and|because|while)\b|[,;:"
                          + _P + "]")


def _stated(before: dict[str, list[frozenset[str]]], keyword: str,
            words: frozenset[str]) -> bool:
    return any(words <= earlier for earlier in before.get(keyword, ()))


def _constraints(text: str, unmask: Callable[[str], str]) -> str:
    parts = split_sentences(text)
    # 1. a constraint sentence every clause of which an earlier sentence already states.
    # Clauses end at sentence ends, so the earlier sentences' clauses are read once, in
    # batches, when a candidate needs them (not the whole text so far per sentence).
    before: dict[str, list[frozenset[str]]] = {}
    kept: list[tuple[str, str]] = []
    read = 0  # kept[:read] are in ``before``
    for sentence, sep in parts:
        if kept and _MERGEABLE.match(sentence.strip()):
            clauses = constraint_clauses(unmask(sentence))
            if clauses:
                for keyword, words in constraint_clauses(unmask(_join(kept[read:]))):
                    before.setdefault(keyword, []).append(words)
                read = len(kept)
                if all(_stated(before, k, w) for k, w in clauses):
                    kept.append((sentence, sep))
                    _drop(kept, len(kept) - 1)
                    read = len(kept)
                    continue
        kept.append((sentence, sep))
    parts = kept
    # 2. adjacent short constraints with the same opening: "Do not X. Do not Y." -> "Do not X or Y."
    i = 0
    while i + 1 < len(parts):
        a, sep = parts[i]
        b, sep_b = parts[i + 1]
        ma, mb = _MERGEABLE.match(a.strip()), _MERGEABLE.match(b.strip())
        if (ma and mb and "\n" not in sep and ma.group(1).lower() == mb.group(1).lower()
                and not _SUBORDINATE.search(ma.group(2)) and not _SUBORDINATE.search(mb.group(2))
                and len(ma.group(2).split()) <= 8 and len(mb.group(2).split()) <= 8):
            joiner = " and " if "always" in ma.group(1).lower() else " or "
            lead = a[: len(a) - len(a.lstrip())]
            merged = f"{lead}{ma.group(1)} {ma.group(2)}{joiner}{mb.group(2)}{mb.group(3)}"
            parts[i] = (merged, sep_b)
            del parts[i + 1]
            continue
        i += 1
    return _join(parts)


PASSES: dict[str, Pass] = {
    p.name: p for p in (
        Pass("whitespace", _whitespace, False,
             "runs of spaces, trailing spaces and blank lines outside protected text",
             may_change=_untidy_whitespace, lossless=True, saves_about=_whitespace_tokens_saved),
        Pass("decoration", _decoration, False,
             "banner / rule lines, **bold** markers, repeated punctuation"),
        Pass("json", _keep, False,
             "JSON examples re-serialised without indentation (checked: same parsed value)",
             _compact_json, may_change=_may_hold_json, lossless=True),
        Pass("duplicates", _duplicates, False,
             "sentences repeated verbatim (4+ words; case and punctuation ignored; not lines "
             "holding protected text or 'Label: ...' lines)"),
        Pass("filler", _filler, True,
             "boilerplate openers: 'I want you to act as' -> 'Act as', 'My first request is'"),
        Pass("politeness", _politeness, True,
             "please / kindly / thank-you lines; 'Can you X?' -> 'X.'"),
        Pass("hedges", _hedges, True, "basically, actually, really, of course, ..."),
        Pass("connectives", _connectives, True,
             "verbose connectives: 'in order to' -> 'to', 'utilize' -> 'use', ..."),
        Pass("constraints", _constraints, False,
             "a constraint stated again is dropped; 'Do not X. Do not Y.' -> 'Do not X or Y.'"),
        Pass("contractions", _contractions, True,
             "'do not' -> 'don't', 'I will' -> 'I'll', 'you are' -> 'you're' (one token for two)"),
    )
}
SAFE_PASSES: tuple[str, ...] = ("whitespace", "decoration", "json", "duplicates", "filler",
                                "politeness",
                                "hedges", "connectives", "constraints", "contractions")
WHITESPACE_PASSES: tuple[str, ...] = ("whitespace",)
