"""What a rewrite may never touch, and the checks that prove it did not.

Protected spans (variables, code, quoted strings, URLs, numbers, JSON / XML
examples, dotted names) are *masked* before a pass runs: each becomes one
private-use character, so the regex rules of the passes cannot reach inside.
Independently of the masking, :func:`check_invariants` compares the original
and the rewrite on the unmasked text, so a bug in a pass still cannot slip a
broken template through.

Every function here is linear in the text (a prompt can be a 300k-character
RAG context with tens of thousands of numbers): spans of one kind are merged
with the spans already taken in one sorted sweep, JSON blocks are matched in
one pass over the brackets, and the kept items of a rewrite are looked up from
a moving position (they keep their order), falling back to a whole search only
for an item that moved.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import lru_cache
from heapq import merge
from itertools import accumulate

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


_JSON_START = re.compile(r"(?m)^[ \t]*([\[{])")
# what a bracket scan looks at: brackets, quotes, escapes and line ends (a JSON
# string never spans a line, so a line end also ends an unclosed string)
_BRACKET_EVENT = re.compile(r'[\[\]{}"\\\n]')


@lru_cache(maxsize=8)
def _json_blocks(text: str) -> tuple[tuple[int, int], ...]:
    """Spans of JSON values (objects / arrays) that start a line and parse, or
    bracket-balanced multi-line blocks that look like JSON examples."""
    spans: list[tuple[int, int]] = []
    decoder = json.JSONDecoder()
    balanced: dict[int, int] | None = None
    for m in _JSON_START.finditer(text):
        start = m.start(1)
        if spans and start < spans[-1][1]:
            continue
        try:
            value, end = decoder.raw_decode(text, start)
        except ValueError:
            if balanced is None:
                balanced = _balanced_ends(text)
            block_end = balanced.get(start)
            if block_end is None or "\n" not in text[start:block_end]:
                continue
            spans.append((start, block_end))
            continue
        if isinstance(value, (dict, list)) and value:
            spans.append((start, end))
    return tuple(spans)


def _balanced_ends(text: str) -> dict[int, int]:
    """For each ``{`` / ``[`` outside a string, the index just past the ``}`` / ``]``
    that closes it (each kind counted on its own), in one pass over the brackets."""
    ends: dict[int, int] = {}
    open_at: dict[str, list[int]] = {"{": [], "[": []}
    closes = {"}": "{", "]": "["}
    in_string = False
    skip_to = -1  # an escaped character
    for m in _BRACKET_EVENT.finditer(text):
        i, ch = m.start(), m.group()
        if i < skip_to:
            continue
        if ch == "\n":
            in_string = False
        elif in_string:
            if ch == "\\":
                skip_to = i + 2
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in open_at:
            open_at[ch].append(i)
        elif ch in closes and open_at[closes[ch]]:
            ends[open_at[closes[ch]].pop()] = i + 1
    return ends


def _free_of(taken: list[tuple[int, int, str]], spans: Iterable[tuple[int, int]],
             kind: str) -> list[tuple[int, int, str]]:
    """The spans (as ``kind``) that overlap neither a span in ``taken`` (sorted,
    non-overlapping) nor an earlier span of their own batch: one sorted sweep."""
    free: list[tuple[int, int, str]] = []
    i, batch_end = 0, 0
    for a, b in sorted(spans):
        if b <= a or a < batch_end:
            continue
        while i < len(taken) and taken[i][1] <= a:  # taken spans that end before this one
            i += 1
        if i < len(taken) and taken[i][0] < b:
            continue
        free.append((a, b, kind))
        batch_end = b
    return free


def protected_spans(text: str) -> list[tuple[int, int, str]]:
    """Non-overlapping ``(start, end, kind)`` spans of ``text`` no pass may change,
    sorted. Kinds take precedence in the order of :data:`_KINDS` (code over JSON
    over ...)."""
    return list(_protected_spans(text))


def _xml_blocks(text: str) -> Iterable[tuple[int, int]]:
    return (m.span() for m in _XML_BLOCK.finditer(text)
            if "\n" in m.group(0) or len(m.group(0)) > 40)


def _matches(pattern: re.Pattern[str]) -> Callable[[str], Iterable[tuple[int, int]]]:
    return lambda text: (m.span() for m in pattern.finditer(text))


# each kind's spans, in order of precedence: a span is kept when it overlaps none
# taken before it
_KINDS: tuple[tuple[str, Callable[[str], Iterable[tuple[int, int]]]], ...] = (
    ("code", _matches(_FENCE)),
    ("code", _matches(_FENCE_INLINE)),
    ("json", lambda text: _json_blocks(text)),
    ("xml", _xml_blocks),
    ("code", _matches(_INLINE_CODE)),
    ("variable", _matches(_VARIABLES)),
    ("url", _matches(_URL)),
    ("quote", _matches(_QUOTES)),
    ("xml", _matches(_TAG)),
    ("name", _matches(_DOTTED)),
    ("number", _matches(_NUMBER)),
)
# only the kinds up to "variable" decide which variables are kept (later ones cannot
# shadow them): find_variables looks no further
_UP_TO_VARIABLES = [kind for kind, _ in _KINDS].index("variable") + 1


@lru_cache(maxsize=8)
def _protected_spans(text: str, kinds: int = len(_KINDS)) -> tuple[tuple[int, int, str], ...]:
    """The spans of the first ``kinds`` kinds of :data:`_KINDS`."""
    taken: list[tuple[int, int, str]] = []
    for kind, spans in _KINDS[:kinds]:
        free = _free_of(taken, spans(text), kind)
        if free:
            taken = list(merge(taken, free))
    return tuple(taken)


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
    spans = _protected_spans(text)
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
    for start, end, kind in _protected_spans(template, _UP_TO_VARIABLES):
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
        stop = _CLAUSE_END.search(norm, m.end())
        clause = norm[m.end():stop.start() if stop else len(norm)]
        words = frozenset(w for w in _WORD.findall(clause) if w not in _NEUTRAL)
        out.append((m.group(1), words))
    return out


def _strip_protected(text: str) -> str:
    """Protected spans replaced by a neutral token so that quoted text does not
    count as a constraint of the prompt (it is checked verbatim anyway)."""
    pieces: list[str] = []
    last = 0
    for start, end, _ in _protected_spans(text):
        pieces.append(text[last:start])
        pieces.append(" x" + str(abs(hash(text[start:end])) % 10**8) + " ")
        last = end
    pieces.append(text[last:])
    return "".join(pieces)


def _canonical_json(text: str) -> str | None:
    try:
        return json.dumps(json.loads(text), sort_keys=True)
    except ValueError:
        return None


@lru_cache(maxsize=2)
def _json_values(text: str) -> frozenset[str]:
    """The values of ``text``'s JSON blocks, canonically serialised."""
    return frozenset(v for start, end in _json_blocks(text)
                     if (v := _canonical_json(text[start:end])) is not None)


def _json_kept(item: str, rewrite: str) -> bool:
    """A JSON example may be re-serialised: kept when one parses to the same value."""
    value = _canonical_json(item)
    return value is not None and value in _json_values(rewrite)


class _InOrder:
    """Finds items in ``text`` from where the previous one was found: linear when
    the items keep their order (a rewrite keeps the original's), a whole search
    for an item that moved."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.at = 0

    def __contains__(self, item: str) -> bool:
        found = self.text.find(item, self.at)
        if found >= 0:
            self.at = found + len(item)
            return True
        return item in self.text


def _constraints_kept(original: str, rewrite: str) -> list[Violation]:
    """A violation for each constraint clause of ``original`` that no clause of
    ``rewrite`` with the same keyword covers (see :func:`constraint_clauses`)."""
    after: dict[str, list[frozenset[str]]] = {}
    for keyword, words in constraint_clauses(rewrite):
        after.setdefault(keyword, []).append(words)
    exact = {(k, w) for k, ws in after.items() for w in ws}
    violations = []
    for keyword, words in constraint_clauses(original):
        if (keyword, words) in exact or any(words <= w for w in after.get(keyword, ())):
            continue
        violations.append(Violation("constraint", f"{keyword} {' '.join(sorted(words))}"))
    return violations


# kinds whose items can hold whitespace (the URL, name and number patterns exclude it)
_MAY_HOLD_WHITESPACE = frozenset({"code", "json", "xml", "quote", "variable"})
_WHITESPACE = re.compile(r"\s")


def _whitespace_only(original: str, rewrite: str) -> bool:
    """True when ``rewrite`` is ``original`` with whitespace removed, collapsed or
    replaced, and nothing else: the same characters otherwise, no word split by new
    whitespace (each word of the rewrite is whole words of the original), every
    protected item that holds whitespace still there verbatim (one without any lies
    in one word, which survives whole) and no new variable. Constraint clauses read
    words and boundaries that such a change keeps, so this settles every invariant
    at the cost of a few C-level scans (the whitespace pass of a long RAG context
    would otherwise pay the full check)."""
    before, after = original.split(), rewrite.split()
    if "".join(before) != "".join(after):
        return False
    if not set(accumulate(map(len, after))) <= set(accumulate(map(len, before))):
        return False
    kept = _InOrder(rewrite)
    for start, end, kind in _protected_spans(original):
        if (kind in _MAY_HOLD_WHITESPACE and _WHITESPACE.search(original, start, end)
                and original[start:end] not in kept):
            return False
    return set(find_variables(rewrite)) <= set(find_variables(original))


def check_invariants(original: str, rewrite: str) -> list[Violation]:
    """Every invariant ``rewrite`` breaks with respect to ``original`` (empty: all kept).

    * every protected item of the original (variable, code, quoted string, URL,
      number, JSON / XML example, dotted name) appears verbatim in the rewrite;
    * the rewrite introduces no variable the original did not have;
    * every explicit constraint clause (must / never / only / not / no /
      always / ...) is still covered (see :func:`constraint_clauses`).
    """
    return list(_violations(original, rewrite))


@lru_cache(maxsize=4)  # a rewriter checks a pass's result, then the final text: often one
def _violations(original: str, rewrite: str) -> tuple[Violation, ...]:
    if rewrite == original or _whitespace_only(original, rewrite):
        return ()
    violations: list[Violation] = []
    seen: set[str] = set()
    kept = _InOrder(rewrite)
    for start, end, kind in _protected_spans(original):
        item = original[start:end]
        if item in seen:
            continue
        seen.add(item)
        if item not in kept and not (kind == "json" and _json_kept(item, rewrite)):
            violations.append(Violation(kind, item))
    before_vars = set(find_variables(original))
    for var in find_variables(rewrite):
        if var not in before_vars and var not in original:
            violations.append(Violation("new variable", var))
    return (*violations, *_constraints_kept(original, rewrite))
