"""The rewriter: passes in order, invariants enforced per pass, meaning measured."""

from __future__ import annotations

import asyncio
import difflib
import hashlib
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from tokenlean.core import ConfigError, InvalidRequestError, count_tokens

from ._passes import PASSES as _SAFE_PASS_TABLE
from ._passes import SAFE_PASSES, WHITESPACE_PASSES, Pass, split_sentences
from ._protect import Masked, Violation, check_invariants, find_variables, mask
from ._similarity import SimilarityScorer, default_scorer
from ._structural import STRUCTURAL_PASS_LIST, STRUCTURAL_PASSES

__all__ = [
    "DEFAULT_MAX_CHARS",
    "DEFAULT_SIMILARITY_FLOOR",
    "FIRST_SIGHT_MAX_CHARS",
    "MAX_BACK_OFF_SCORES",
    "PASS_DESCRIPTIONS",
    "STRUCTURAL_SIMILARITY_FLOOR",
    "PassReport",
    "RewriteResult",
    "TemplateRewriter",
    "diff",
    "rewrite",
]

Mode = Literal["safe", "whitespace", "all"]
PASSES: dict[str, Pass] = {**_SAFE_PASS_TABLE, **{p.name: p for p in STRUCTURAL_PASS_LIST}}
_MODE_PASSES: dict[str, tuple[str, ...]] = {
    "safe": SAFE_PASSES, "whitespace": WHITESPACE_PASSES, "all": SAFE_PASSES + STRUCTURAL_PASSES}
# Chosen on the tuning part of templates_prompts_chat_dev.jsonl (docs/benchmarks/templates.md):
# safe rewrites there mostly score 0.87-1.0 with MiniLM; a rewrite below the floor is
# backed off pass by pass until it is above it.
DEFAULT_SIMILARITY_FLOOR = 0.85
# mode="all" (safe + structural passes): labelled, telegraphic text moves MiniLM further from
# the prose original while keeping its content; floor chosen on the same tuning split.
STRUCTURAL_SIMILARITY_FLOOR = 0.80
# A template is instructions an app wrote; a longer system message is mostly retrieved
# context. Above this many characters only the lossless passes (whitespace, JSON
# compaction) run, no meaning check is needed, and the result is not memoised.
DEFAULT_MAX_CHARS = 20_000
# The pipeline layer's first_sight_max_chars: MiniLM reads a 2,000-character text in
# about two chunks (tens of milliseconds on a CPU); a longer one waits until it repeats.
FIRST_SIGHT_MAX_CHARS = 2_000
# meaning checks a rewrite below the floor may take to back off (latest pass first)
MAX_BACK_OFF_SCORES = 2


@dataclass(frozen=True, slots=True)
class PassReport:
    """What one pass did to one template."""

    name: str
    saved_tokens: int
    applied: bool
    skipped: str | None = None  # why the pass was skipped (an invariant, similarity)
    partial: bool = False  # applied to some sentences only (others would break an invariant)


@dataclass(frozen=True, slots=True)
class RewriteResult:
    """A rewrite and its evidence: tokens, per-pass savings, similarity, invariants.

    ``tokens_before`` / ``tokens_after`` and ``variables`` are worked out when first
    read (a pipeline never reads them: it counts the prompt itself), so a long text
    the passes leave alone costs only the test that says so."""

    original: str
    text: str
    model: str
    passes: tuple[PassReport, ...]
    similarity: float | None
    violations: tuple[Violation, ...] = ()
    notes: tuple[str, ...] = field(default=())

    @property
    def tokens_before(self) -> int:
        return _tokens(self.original, self.model)

    @property
    def tokens_after(self) -> int:
        return self.tokens_before if self.text == self.original else _tokens(self.text,
                                                                             self.model)

    @property
    def variables(self) -> tuple[str, ...]:
        """The original's variable slots, in order of first appearance."""
        return find_variables(self.original)

    @property
    def saved_tokens(self) -> int:
        return self.tokens_before - self.tokens_after

    @property
    def saved_ratio(self) -> float:
        return self.saved_tokens / self.tokens_before if self.tokens_before else 0.0

    @property
    def changed(self) -> bool:
        return self.text != self.original

    def diff(self, *, style: Literal["words", "unified"] = "words") -> str:
        """The change, as inline word edits (``[-old-]{+new+}``) or a unified line diff."""
        return diff(self.original, self.text, style=style)


def diff(before: str, after: str, *, style: Literal["words", "unified"] = "words") -> str:
    """Word-level (``[-removed-]{+added+}``) or unified line diff of two texts."""
    if style == "unified":
        return "".join(difflib.unified_diff(before.splitlines(keepends=True),
                                            after.splitlines(keepends=True),
                                            fromfile="original", tofile="rewrite"))
    if style != "words":
        raise ConfigError("style must be 'words' or 'unified'")
    a = re.findall(r"\s+|[^\s]+", before)
    b = re.findall(r"\s+|[^\s]+", after)
    out: list[str] = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if op == "equal":
            out.append("".join(a[i1:i2]))
            continue
        old, new = "".join(a[i1:i2]), "".join(b[j1:j2])
        if old.strip():
            out.append(f"[-{old}-]")
        if new.strip():
            out.append(f"{{+{new}+}}")
        elif not old.strip() or new:
            out.append(new)
    return "".join(out)


@dataclass
class _State:
    masked: Masked
    text: str  # masked text after the passes taken so far
    reports: list[PassReport]


def _tokens(text: str, model: str) -> int:
    return count_tokens(text, model=model).tokens


def _apply_pass(p: Pass, original: str, state: _State, model: str) -> None:
    """Apply ``p`` to ``state`` if it keeps every invariant; record what happened."""
    if p.apply_spans is not None:
        _apply_span_pass(p, p.apply_spans, original, state, model)
        return
    unmask = state.masked.unmask
    current = state.text
    candidate = p.apply(current, unmask)
    if candidate == current:
        state.reports.append(PassReport(p.name, 0, False))
        return
    partial = False
    violations = check_invariants(original, unmask(candidate))
    if violations and p.local:
        # sentence by sentence: keep each sentence's edit only if it is clean on its own
        pieces: list[str] = []
        for sentence, sep in split_sentences(current):
            edited = p.apply(sentence, unmask) if sentence.strip() else sentence
            if edited != sentence and check_invariants(unmask(sentence), unmask(edited)):
                edited = sentence
            pieces.append(edited + sep)
        candidate = "".join(pieces)
        partial = True
        violations = check_invariants(original, unmask(candidate)) if candidate != current else []
        if candidate == current:
            state.reports.append(PassReport(p.name, 0, False, skipped="invariant", partial=True))
            return
    if violations:
        state.reports.append(PassReport(p.name, 0, False, skipped=f"invariant: {violations[0]}"))
        return
    saved = _tokens(unmask(current), model) - _tokens(unmask(candidate), model)
    if saved < 0:
        state.reports.append(PassReport(p.name, 0, False, skipped="no token saving"))
        return
    state.text = candidate
    state.reports.append(PassReport(p.name, saved, True, partial=partial))


def _apply_span_pass(p: Pass, spans: Callable[[tuple[str, ...]], tuple[str, ...]],
                     original: str, state: _State, model: str) -> None:
    new = Masked(state.masked.text, spans(state.masked.originals))
    if new.originals == state.masked.originals:
        state.reports.append(PassReport(p.name, 0, False))
        return
    before, after = state.masked.unmask(state.text), new.unmask(state.text)
    violations = check_invariants(original, after)
    if violations:
        state.reports.append(PassReport(p.name, 0, False, skipped=f"invariant: {violations[0]}"))
        return
    saved = _tokens(before, model) - _tokens(after, model)
    if saved < 0:
        state.reports.append(PassReport(p.name, 0, False, skipped="no token saving"))
        return
    state.masked = new
    state.reports.append(PassReport(p.name, saved, True))


def _run_passes(original: str, masked: Masked, passes: Sequence[Pass], model: str,
                skip: frozenset[str] = frozenset()) -> _State:
    state = _State(masked, masked.text, [])
    for p in passes:
        if p.name in skip:
            state.reports.append(PassReport(p.name, 0, False, skipped="similarity"))
            continue
        _apply_pass(p, original, state, model)
    return state


class TemplateRewriter:
    """Rewrites prompt templates with the safe passes, memoised per template text.

    ``mode="safe"`` runs every safe pass; ``"whitespace"`` only the whitespace
    pass; ``"all"`` the safe passes then the opt-in structural ones (markdown,
    structure, telegraphic); ``passes=`` picks passes by name (see
    :data:`PASS_DESCRIPTIONS`).
    Every pass is checked against the invariants (variables, code, quotes,
    numbers, URLs, JSON / XML examples, explicit constraints) and skipped for a
    template it would break; the whole rewrite must stay above
    ``similarity_floor`` (MiniLM cosine; default :data:`DEFAULT_SIMILARITY_FLOOR`,
    or :data:`STRUCTURAL_SIMILARITY_FLOOR` with ``mode="all"``), else passes are
    backed off one at a time, latest first. ``scorer=None`` turns the meaning
    check off (the result's ``similarity`` is then None). A rewrite that only the
    lossless passes (whitespace, JSON compaction) changed needs no meaning check
    (similarity 1.0). A text longer than ``max_chars`` (default
    :data:`DEFAULT_MAX_CHARS`; ``None``: no limit) gets the lossless passes only
    and is not memoised (a lossless pass that would save under 0.5% of such a
    text's tokens, estimated at 4 characters a token, is skipped): the work on one
    text stays bounded. A rewrite below the
    floor backs off with at most :data:`MAX_BACK_OFF_SCORES` more meaning checks.

    ``first_sight_max_chars`` (default None: off; the pipeline layer sets
    :data:`FIRST_SIGHT_MAX_CHARS`) defers the meaning check of a text longer than
    this until the text repeats: seen for the first time it gets the lossless
    passes only, seen again (an app's template is sent on every call) every pass,
    memoised. A text that never repeats, such as a system message that carries
    retrieved context, never pays a meaning check (hundreds of milliseconds of
    MiniLM on a CPU) for a saving of a few tokens on one call. Only applies with a
    scorer; the last 4 * ``cache_size`` texts seen are remembered by digest.
    """

    def __init__(self, *, mode: Mode = "safe", passes: Sequence[str] | None = None,
                 model: str = "gpt-4o", similarity_floor: float | None = None,
                 scorer: SimilarityScorer | Literal["minilm"] | None = "minilm",
                 cache_size: int = 4096, max_chars: int | None = DEFAULT_MAX_CHARS,
                 first_sight_max_chars: int | None = None) -> None:
        if mode not in _MODE_PASSES:
            raise ConfigError(f"mode must be one of {sorted(_MODE_PASSES)} ('all' adds the "
                              "structural passes to the safe ones)")
        if similarity_floor is None:
            similarity_floor = (STRUCTURAL_SIMILARITY_FLOOR if mode == "all"
                                else DEFAULT_SIMILARITY_FLOOR)
        names = tuple(passes) if passes is not None else _MODE_PASSES[mode]
        unknown = [n for n in names if n not in PASSES]
        if unknown:
            raise ConfigError(f"unknown passes {unknown}; known: {list(PASSES)}")
        if isinstance(similarity_floor, bool) or not isinstance(similarity_floor, (int, float)) \
                or not 0.0 <= similarity_floor <= 1.0:
            raise ConfigError("similarity_floor must be a number between 0 and 1")
        if scorer is not None and scorer != "minilm" and not isinstance(scorer, SimilarityScorer):
            raise ConfigError("scorer must be 'minilm', None, or have name and similarities()")
        if not isinstance(model, str) or not model:
            raise ConfigError("model must be a model name, e.g. 'gpt-4o'")
        if not isinstance(cache_size, int) or cache_size < 0:
            raise ConfigError("cache_size must be a non-negative integer")
        if max_chars is not None and (isinstance(max_chars, bool)
                                      or not isinstance(max_chars, int) or max_chars < 1):
            raise ConfigError("max_chars must be a positive integer or None (no limit)")
        limit = first_sight_max_chars
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int)
                                  or limit < 0):
            raise ConfigError("first_sight_max_chars must be a non-negative integer or None "
                              "(every text gets every pass the first time it is seen)")
        self.mode = mode
        self.passes: tuple[Pass, ...] = tuple(PASSES[n] for n in names)
        self.model = model
        self.similarity_floor = float(similarity_floor)
        self._scorer_option = scorer
        self._cache: OrderedDict[str, RewriteResult] = OrderedDict()
        self._cache_size = cache_size
        self.max_chars = max_chars
        self.first_sight_max_chars = first_sight_max_chars
        self._seen: OrderedDict[bytes, None] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def scorer(self) -> SimilarityScorer | None:
        if self._scorer_option == "minilm":
            return default_scorer()
        return self._scorer_option

    # -- public API ------------------------------------------------------------------
    def rewrite(self, template: str) -> RewriteResult:
        """The rewrite of one template (memoised: a repeat costs a dict lookup)."""
        return self.rewrite_many([template])[0]

    async def arewrite(self, template: str) -> RewriteResult:
        """Async twin of :meth:`rewrite` (the work runs in a thread)."""
        cached = self.cached(template)
        if cached is not None:
            return cached
        return await asyncio.to_thread(self.rewrite, template)

    def rewrite_many(self, templates: Sequence[str]) -> list[RewriteResult]:
        """Rewrite several templates, scoring their meaning in one batch."""
        if isinstance(templates, str):
            raise InvalidRequestError("rewrite_many takes a list of templates, not one string")
        for t in templates:
            if not isinstance(t, str):
                raise InvalidRequestError(f"a template must be a string, got {type(t).__name__}")
        found: dict[str, RewriteResult] = {}
        todo = []
        for t in dict.fromkeys(templates):
            hit = self.cached(t)
            if hit is None:
                todo.append(t)
            else:
                found[t] = hit
        deferred = {t for t in todo if self._first_sight(t)}
        for result in self._rewrite_uncached(todo, deferred) if todo else []:
            if result.original not in deferred:
                self._store(result)
            found[result.original] = result
        return [found[t] for t in templates]

    # -- memo --------------------------------------------------------------------------
    def cached(self, template: str) -> RewriteResult | None:
        """The memoised rewrite of ``template``, or None if it was not rewritten yet."""
        with self._lock:
            result = self._cache.get(template)
            if result is not None:
                self._cache.move_to_end(template)
            return result

    def _store(self, result: RewriteResult) -> None:
        if self._cache_size == 0 or self._too_long(result.original):
            return
        with self._lock:
            self._cache[result.original] = result
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)

    def _first_sight(self, template: str) -> bool:
        """Whether ``template`` gets the lossless passes only because it is long and
        seen for the first time (see ``first_sight_max_chars``); remembers it."""
        limit = self.first_sight_max_chars
        if limit is None or len(template) <= limit or self._too_long(template) \
                or self._scorer_option is None:
            return False
        digest = hashlib.blake2b(template.encode("utf-8", "surrogatepass"),
                                 digest_size=16).digest()
        with self._lock:
            if digest in self._seen:
                self._seen.move_to_end(digest)
                return False
            self._seen[digest] = None
            while len(self._seen) > 4 * max(self._cache_size, 1):
                self._seen.popitem(last=False)
            return True

    # -- the work ----------------------------------------------------------------------
    def _passes_for(self, template: str, first_sight: bool = False,
                    ) -> tuple[tuple[Pass, ...], list[PassReport]]:
        """The passes to run on ``template``, and reports for those it leaves out."""
        if first_sight:
            return (tuple(p for p in self.passes if p.lossless),
                    [PassReport(p.name, 0, False, skipped="first sight: runs when the text "
                                "repeats (first_sight_max_chars)")
                     for p in self.passes if not p.lossless])
        if not self._too_long(template):
            return self.passes, []
        reason = f"longer than max_chars ({self.max_chars})"
        run = tuple(p for p in self.passes if p.lossless and (
            p.saves_about is None or p.saves_about(template) * 200 * 4 >= len(template)))
        return run, [PassReport(p.name, 0, False, skipped=reason if not p.lossless
                                else "would save under 0.5% of a long text's tokens")
                     for p in self.passes if p not in run]

    def _too_long(self, template: str) -> bool:
        return self.max_chars is not None and len(template) > self.max_chars

    @staticmethod
    def _unchanged(template: str, passes: Sequence[Pass]) -> bool:
        """True when none of ``passes`` can change ``template`` (each has a cheap test
        that says so): no masking, no checks, no meaning score needed."""
        return all(p.may_change is not None and not p.may_change(template) for p in passes)

    def _draft(self, template: str, first_sight: bool = False,
               ) -> tuple[str, Masked | None, _State | None]:
        passes, left_out = self._passes_for(template, first_sight)
        if self._unchanged(template, passes):
            as_is = Masked(template, ())
            return template, as_is, _State(as_is, template, [
                *(PassReport(p.name, 0, False) for p in passes), *left_out])
        masked = mask(template)
        if masked is None:
            return template, None, None
        state = _run_passes(template, masked, passes, self.model)
        state.reports.extend(left_out)
        return template, masked, state

    def _rewrite_uncached(self, templates: Sequence[str],
                          first_sight: frozenset[str] | set[str] = frozenset(),
                          ) -> list[RewriteResult]:
        drafts = [self._draft(t, t in first_sight) for t in templates]
        scorer = self.scorer
        finals = [t if state is None else state.masked.unmask(state.text)
                  for t, _m, state in drafts]
        sims: list[float | None] = [None] * len(drafts)
        if scorer is not None:
            lossless = {p.name for p in PASSES.values() if p.lossless}
            changed = [i for i, (t, f) in enumerate(zip(templates, finals, strict=True))
                       if t != f and not self._only(drafts[i][2], lossless)]
            scores = scorer.similarities([(templates[i], finals[i]) for i in changed]) \
                if changed else []  # nothing to score: the model is not even loaded
            for i, s in zip(changed, scores, strict=True):
                sims[i] = s
            for i in range(len(drafts)):
                if sims[i] is None:  # unchanged, or changed by lossless passes only
                    sims[i] = 1.0
        results = []
        for i, (t, masked, state) in enumerate(drafts):
            notes: list[str] = []
            if masked is None or state is None:
                notes.append("left unchanged: the template uses private-use characters")
                results.append(self._result(t, t, [], 1.0 if scorer else None, notes))
                continue
            sim = sims[i]
            if scorer is not None and sim is not None and sim < self.similarity_floor:
                state, sim = self._back_off(t, masked, state, scorer)
                notes.append("passes backed off to stay above the similarity floor")
            results.append(self._result(t, state.masked.unmask(state.text), state.reports, sim,
                                        notes))
        return results

    @staticmethod
    def _only(state: _State | None, names: set[str]) -> bool:
        """Whether every pass applied in ``state`` is one of ``names``."""
        return state is not None and all(r.name in names for r in state.reports if r.applied)

    def _back_off(self, original: str, masked: Masked, state: _State,
                  scorer: SimilarityScorer) -> tuple[_State, float]:
        """Drop applied passes, latest first, until the rewrite is above the floor. At
        most :data:`MAX_BACK_OFF_SCORES` more meaning checks (each embeds the whole
        text); then only the lossless passes stay, which need none."""
        lossless = {p.name for p in self.passes if p.lossless}
        skip: set[str] = set()
        applied = [r.name for r in state.reports if r.applied and r.name not in lossless]
        for name in reversed(applied[-MAX_BACK_OFF_SCORES:]):
            skip.add(name)
            state = _run_passes(original, masked, self.passes, self.model, frozenset(skip))
            text = state.masked.unmask(state.text)
            if text == original or self._only(state, lossless):
                return state, 1.0
            sim = scorer.similarities([(original, text)])[0]
            if sim >= self.similarity_floor:
                return state, sim
        meaning = frozenset(p.name for p in self.passes if not p.lossless)
        return _run_passes(original, masked, self.passes, self.model, meaning), 1.0

    def _result(self, original: str, text: str, reports: Sequence[PassReport],
                similarity: float | None, notes: list[str]) -> RewriteResult:
        violations = tuple(check_invariants(original, text))
        if violations:  # cannot happen when every pass was checked; never ship one anyway
            notes.append(f"rewrite rejected: {violations[0]}")
            text, reports = original, [PassReport(r.name, 0, False, skipped="invariant")
                                       for r in reports]
            similarity = 1.0 if similarity is not None else None
        return RewriteResult(
            original=original,
            text=text,
            model=self.model,
            passes=tuple(reports),
            similarity=similarity,
            violations=violations,
            notes=tuple(notes),
        )


_default_rewriters: dict[tuple[str, str], TemplateRewriter] = {}
_default_lock = threading.Lock()


def _shared(mode: Mode, model: str) -> TemplateRewriter:
    with _default_lock:
        key = (mode, model)
        if key not in _default_rewriters:
            _default_rewriters[key] = TemplateRewriter(mode=mode, model=model)
        return _default_rewriters[key]


def rewrite(template: str, *, mode: Mode = "safe", model: str = "gpt-4o") -> RewriteResult:
    """Rewrite one template with a shared, memoised :class:`TemplateRewriter`."""
    if not isinstance(template, str):
        raise InvalidRequestError(f"template must be a string, got {type(template).__name__}")
    return _shared(mode, model).rewrite(template)


PASS_DESCRIPTIONS: dict[str, str] = {name: p.description for name, p in PASSES.items()}
