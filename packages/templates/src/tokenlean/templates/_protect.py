"""What a rewrite may never touch, and the checks that prove it did not.

Protected spans (variables, code, quoted strings, URLs, numbers, JSON / XML
examples, dotted names) are *masked* before a pass runs: each becomes one
private-use character, so the regex rules of the passes cannot reach inside.
Independently of the masking, :func:`check_invariants` compares the original
and the rewrite on the unmasked text, so a bug in a pass still cannot slip a
broken template through.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = [
    "CONSTRAINT_KEYWORDS",
    "Masked",
    "Violation",
    "check_invariants",
    "constraint_clauses",
    "find_variables",
    "mask",
    "protected_spans",
]

_PUA_START = 0xE000
_PUA_END = 0xF8FF  # inclusive; 6,400 placeholders per template
PLACEHOLDER_CLASS = "\ue000-\uf8ff"

# --- block-level protected spans --------------------------------------------------
_FENCE = re.compile(r"(?ms)^[ \t]*(```|~~~).*?(?:^[ \t]*\1[^\n]*$|\Z)")
_FENCE_INLINE = re.compile(r"```.*?(?:```|\Z)", re.S)
_XML_BLOCK = re.compile(r"(?s)<([A-Za-z][\w:.-]*)(?:\s[^<>]*)?>.*?</\1\s*>")
_TAG = re.compile(r"</?[A-Za-z][\w:.-]*(?:\s[^<>\n]*)?/?>")
# --- inline protected spans -------------------------------------------------------
_INLINE_CODE = re.compile(r"`[^`\n]+`")
_VARIABLES = re.compile(
    r"\$\{[^{}\n]{1,120}\}"          # ${Name:default} (prompts.chat)
    r"|\{\{[^{}\n]{1,120}\}\}"       # {{ var }} (mustache / jinja2) or f-string escape
    r"|\{%[^\n]{0,200}?%\}"          # {% jinja tag %}
    r"|\{[^{}\n\"]{1,80}\}"          # {name} / {like this}
    r"|\[[A-Z][A-Z0-9 _/-]{1,60}\]"  # [PLACEHOLDER] style slots
)
_QUOTES = re.compile(
    r'"[^"\n]{0,2000}"'              # "..."
    r"|\u201c[^\u201d\n]{0,2000}\u201d"  # “...”
    r"|\u2018[^\u2019\n]{0,2000}\u2019(?!\w)"  # ‘...’
    r"|(?<![\w'])'[^'\n]{1,300}'(?![\w'])"  # '...' (not an apostrophe)
)
_URL = re.compile(r"(?i)\b(?:https?://|ftp://|www\.)[^\s<>\"'`]+[^\s<>\"'`.,;:!?)\]}]"
                  r"|\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b")
_DOTTED = re.compile(r"[^\s\"'`(){}\[\]<>]*\w[.:/\\_]\w[^\s\"'`(){}\[\]<>]*")
_NUMBER = re.compile(r"(?<![\w.])[-+]?\d+(?:[.,:/]\d+)*(?:%|st|nd|rd|th|[kKmMbB]\b)?")

CONSTRAINT_KEYWORDS: tuple[str, ...] = (
    "must", "never", "only", "not", "no", "always", "cannot", "without", "avoid",
    "required", "forbidden", "exactly", "strictly",
)
_NEG_CONTRACTIONS = re.compile(r"(?i)\b(do|does|did|is|are|was|were|should|would|could|must"
                               r"|have|has|had|wo|ca|need)n[\u2019']t\b")
_CLAUSE_END = re.compile(r"[.;!?\n:,(\u2014]|\s-\s|\s\u2013\s")
_KEYWORD_RE = re.compile(r"(?i)\b(" + "|".join(CONSTRAINT_KEYWORDS) + r")\b")
_WORD = re.compile(r"[^\W_]+(?:['\u2019][^\W_]+)?")
_NEUTRAL = frozenset(
    "a an the to of and or with you your yours i me my we our us it its that this these those"
    " in on at for be is are was were will shall should would can could do does did any"
    " please".split()
)


@dataclass(frozen=True, slots=True)
class Violation:
    """One invariant a rewrite broke: ``kind`` and the original text it lost."""

    kind: str
    item: str

    def __str__(self) -> str:
        return f"{self.kind}: {self.item!r:.80}"


def _json_blocks(text: str) -> list[tuple[int, int]]:
    """Spans of JSON values (objects / arrays) that start a line and parse, or
    brace-balanced multi-line blocks that look like JSON examples."""
    spans: list[tuple[int, int]] = []
    decoder = json.JSONDecoder()
    for m in re.finditer(r"(?m)^[ \t]*([\[{])", text):
        start = m.start(1)
        if spans and start < spans[-1][1]:
            continue
        try:
            value, end = decoder.raw_decode(text, start)
        except ValueError:
            block_end = _balanced_end(text, start)
            if block_end is None or "\n" not in text[start:block_end]:
                continue
            spans.append((start, block_end))
            continue
        if isinstance(value, (dict, list)) and value:
            spans.append((start, end))
    return spans


def _balanced_end(text: str, start: int) -> int | None:
    opener = text[start]
    closer = "}" if opener == "{" else "]"
    depth = 0
    in_string = False
    i = start
    while i < len(text):
        ch = text[i]
        if in_string:
            if ch == "\\":
                i += 2
                continue
            if ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch == opener:
            depth += 1
        elif ch == closer:
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    return None


def protected_spans(text: str) -> list[tuple[int, int, str]]:
    """Non-overlapping ``(start, end, kind)`` spans of ``text`` no pass may change."""
    taken: list[tuple[int, int, str]] = []

    def free(a: int, b: int) -> bool:
        return all(b <= s or a >= e for s, e, _ in taken)

    def add(spans: Iterable[tuple[int, int]], kind: str) -> None:
        for a, b in spans:
            if b > a and free(a, b):
                taken.append((a, b, kind))

    add(((m.start(), m.end()) for m in _FENCE.finditer(text)), "code")
    add(((m.start(), m.end()) for m in _FENCE_INLINE.finditer(text)), "code")
    add(_json_blocks(text), "json")
    add(((m.start(), m.end()) for m in _XML_BLOCK.finditer(text)
         if "\n" in m.group(0) or len(m.group(0)) > 40), "xml")
    add(((m.start(), m.end()) for m in _INLINE_CODE.finditer(text)), "code")
    add(((m.start(), m.end()) for m in _VARIABLES.finditer(text)), "variable")
    add(((m.start(), m.end()) for m in _URL.finditer(text)), "url")
    add(((m.start(), m.end()) for m in _QUOTES.finditer(text)), "quote")
    add(((m.start(), m.end()) for m in _TAG.finditer(text)), "xml")
    add(((m.start(), m.end()) for m in _DOTTED.finditer(text)), "name")
    add(((m.start(), m.end()) for m in _NUMBER.finditer(text)), "number")
    taken.sort()
    return taken


@dataclass(frozen=True, slots=True)
class Masked:
    """``text`` with each protected span replaced by one private-use character."""

    text: str
    originals: tuple[str, ...]

    def unmask(self, masked: str) -> str:
        return re.sub(f"[{PLACEHOLDER_CLASS}]",
                      lambda m: self.originals[ord(m.group(0)) - _PUA_START]
                      if ord(m.group(0)) - _PUA_START < len(self.originals) else m.group(0),
                      masked)


def mask(text: str) -> Masked | None:
    """Mask ``text``; None when it already uses private-use characters or has too
    many protected spans (the rewriter then leaves it alone)."""
    if re.search(f"[{PLACEHOLDER_CLASS}]", text):
        return None
    spans = protected_spans(text)
    if len(spans) > _PUA_END - _PUA_START + 1:
        return None
    pieces: list[str] = []
    originals: list[str] = []
    last = 0
    for start, end, _kind in spans:
        pieces.append(text[last:start])
        pieces.append(chr(_PUA_START + len(originals)))
        originals.append(text[start:end])
        last = end
    pieces.append(text[last:])
    return Masked("".join(pieces), tuple(originals))


def find_variables(template: str) -> tuple[str, ...]:
    """The variable slots of ``template`` as written (``{x}``, ``{{ x }}``,
    ``${Name:default}``, ``[PLACEHOLDER]``), in order of first appearance.

    For LangChain f-string templates use the framework's own parser; this one
    recognises every common syntax so that none of them is ever rewritten.
    """
    seen: dict[str, None] = {}
    for start, end, kind in protected_spans(template):
        if kind == "variable":
            seen.setdefault(template[start:end], None)
    return tuple(seen)


def _normalise(text: str) -> str:
    return _NEG_CONTRACTIONS.sub(lambda m: m.group(1) + " not", text).lower().replace("\u2019", "'")


def constraint_clauses(text: str) -> list[tuple[str, frozenset[str]]]:
    """Each explicit constraint as ``(keyword, content words of its clause)``.

    The clause runs from the keyword to the next clause boundary; the content
    words are the clause's words minus a short list of function words. A
    rewrite keeps a constraint when it has a clause with the same keyword whose
    content words include these (merging "do not X. do not Y." into "do not X
    or Y" keeps both).
    """
    norm = _normalise(_strip_protected(text))
    out: list[tuple[str, frozenset[str]]] = []
    for m in _KEYWORD_RE.finditer(norm):
        tail = norm[m.end():]
        stop = _CLAUSE_END.search(tail)
        clause = tail[: stop.start()] if stop else tail
        words = frozenset(w for w in _WORD.findall(clause) if w not in _NEUTRAL)
        out.append((m.group(1), words))
    return out


def _strip_protected(text: str) -> str:
    """Protected spans replaced by a neutral token so that quoted text does not
    count as a constraint of the prompt (it is checked verbatim anyway)."""
    spans = protected_spans(text)
    pieces: list[str] = []
    last = 0
    for start, end, _ in spans:
        pieces.append(text[last:start])
        pieces.append(" x" + str(abs(hash(text[start:end])) % 10**8) + " ")
        last = end
    pieces.append(text[last:])
    return "".join(pieces)


def _json_kept(item: str, rewrite: str) -> bool:
    """A JSON example may be re-serialised: kept when one parses to the same value."""
    try:
        value = json.loads(item)
    except ValueError:
        return False
    for start, end in _json_blocks(rewrite):
        try:
            if json.loads(rewrite[start:end]) == value:
                return True
        except ValueError:
            continue
    return False


def check_invariants(original: str, rewrite: str) -> list[Violation]:
    """Every invariant ``rewrite`` breaks with respect to ``original`` (empty: all kept).

    * every protected item of the original (variable, code, quoted string, URL,
      number, JSON / XML example, dotted name) appears verbatim in the rewrite;
    * the rewrite introduces no variable the original did not have;
    * every explicit constraint clause (must / never / only / not / no /
      always / ...) is still covered (see :func:`constraint_clauses`).
    """
    violations: list[Violation] = []
    seen: set[str] = set()
    for start, end, kind in protected_spans(original):
        item = original[start:end]
        if item in seen:
            continue
        seen.add(item)
        if item not in rewrite and not (kind == "json" and _json_kept(item, rewrite)):
            violations.append(Violation(kind, item))
    before_vars = set(find_variables(original))
    for var in find_variables(rewrite):
        if var not in before_vars and var not in original:
            violations.append(Violation("new variable", var))
    after = constraint_clauses(rewrite)
    for keyword, words in constraint_clauses(original):
        if not any(k == keyword and words <= w for k, w in after):
            violations.append(Violation("constraint", f"{keyword} {' '.join(sorted(words))}"))
    return violations
