"""The engine: one thread that prefills and decodes every request, batched.

Continuous batching: requests wait in a bounded queue; between two decode steps
the engine admits waiting requests (up to ``max_batch`` sequences in flight),
prefills each on its own (reusing cached prefix KV), then joins it to the
running batch. The batch keeps one KV tensor per layer, left-padded so all rows
end at the same column, with a 2-D attention mask that hides the padding and
per-row position ids; rows leave the batch as soon as they finish, and padding
columns no row needs any more are trimmed. One forward pass per step decodes one
token for every row.

The HTTP side never touches the model: it submits a prompt with a *sink* (a
callable the engine thread calls with :class:`Started`, :class:`Delta`,
:class:`Finished` or :class:`Failed` events) and may cancel the returned
:class:`Ticket` at any time (a client that disconnects).
"""

from __future__ import annotations

import asyncio
import random
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from tokenlean.backend.kv import cache_from_pairs, cache_pairs, forward_with_cache, new_cache
from tokenlean.core import ConfigError, InvalidRequestError

from ._early import DEFAULT_STOP_CONFIDENCE, EarlyStop, at_boundary
from ._metrics import Metrics
from ._prefix import PrefixCache

__all__ = [
    "Delta",
    "Engine",
    "EngineClosed",
    "Event",
    "EventStream",
    "Failed",
    "Finished",
    "Generation",
    "PromptTooLong",
    "QueueFull",
    "SamplingParams",
    "Started",
    "Ticket",
]


class QueueFull(Exception):
    """The engine's waiting queue is full; retry later (HTTP 429)."""


class EngineClosed(Exception):
    """The engine is shut down (HTTP 503)."""


class PromptTooLong(InvalidRequestError):
    """A prompt has more tokens than the caller's limit (HTTP 400)."""

    def __init__(self, tokens: int, limit: int) -> None:
        super().__init__(f"the prompt has {tokens} tokens; this server accepts at most {limit} "
                         f"(shorten the messages)")
        self.tokens, self.limit = tokens, limit


_SURROGATE = re.compile("[\ud800-\udfff]")


@dataclass(frozen=True, slots=True, kw_only=True)
class SamplingParams:
    """How to generate: ``temperature=0`` is greedy; ``seed`` makes sampling repeatable.

    ``soft_max_tokens`` (None: off) turns on early stopping: once the answer has at
    least that many tokens, it ends at the first sentence or paragraph boundary
    after which the model's ``P(eos)`` is at least ``stop_confidence`` (see
    ``_early.py``). ``max_tokens`` stays the hard limit.
    """

    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    soft_max_tokens: int | None = None
    stop_confidence: float = DEFAULT_STOP_CONFIDENCE

    def __post_init__(self) -> None:
        if isinstance(self.max_tokens, bool) or not isinstance(self.max_tokens, int) \
                or self.max_tokens < 1:
            raise InvalidRequestError(
                f"max_tokens must be an integer >= 1, got {self.max_tokens!r}")
        if not 0 <= self.temperature <= 2:
            raise InvalidRequestError(
                f"temperature must be between 0 and 2, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise InvalidRequestError(f"top_p must be in (0, 1], got {self.top_p}")
        if any(not isinstance(s, str) or not s for s in self.stop):
            raise InvalidRequestError("each stop sequence must be a non-empty string")
        soft = self.soft_max_tokens
        if soft is not None and (isinstance(soft, bool) or not isinstance(soft, int) or soft < 0):
            raise InvalidRequestError(f"soft_max_tokens must be an integer >= 0, got {soft!r}")
        confidence = self.stop_confidence
        if isinstance(confidence, bool) or not isinstance(confidence, (int, float)) \
                or not 0 <= confidence <= 1:
            raise InvalidRequestError(
                f"stop_confidence must be a number in [0, 1], got {confidence!r}")


@dataclass(frozen=True, slots=True)
class Started:
    """The prompt is prefilled; ``cached_tokens`` of it came from the prefix cache."""

    prompt_tokens: int
    cached_tokens: int


@dataclass(frozen=True, slots=True)
class Delta:
    """New text (never splits a UTF-8 character or a possible stop sequence)."""

    text: str


@dataclass(frozen=True, slots=True)
class Finished:
    """The end of a generation; ``early`` is set when the request had a soft budget (an
    early stop has ``reason="stop"`` and ``early.at_token`` set)."""

    reason: Literal["stop", "length", "cancelled"]
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    stop_sequence: str | None = None
    early: EarlyStop | None = None


@dataclass(frozen=True, slots=True)
class Failed:
    message: str


Event = Started | Delta | Finished | Failed


@dataclass(frozen=True, slots=True)
class Generation:
    """A whole generation, as :meth:`Engine.generate` returns it."""

    text: str
    finish: Finished
    ttft_s: float
    total_s: float


class Ticket:
    """A submitted request; ``cancel()`` drops it from the queue or the batch."""

    def __init__(self) -> None:
        self._cancelled = threading.Event()
        self.submitted_at = time.perf_counter()

    def cancel(self) -> None:
        self._cancelled.set()

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()


class EventStream:
    """The events of one generation, for ``async for``; ``aclose()`` cancels it."""

    def __init__(self, ticket: Ticket, queue: asyncio.Queue[Event]) -> None:
        self.ticket = ticket
        self._queue = queue
        self._over = False

    def __aiter__(self) -> EventStream:
        return self

    async def __anext__(self) -> Event:
        if self._over:
            raise StopAsyncIteration
        event = await self._queue.get()
        if isinstance(event, (Finished, Failed)):
            self._over = True
        return event

    async def aclose(self) -> None:
        self._over = True
        self.ticket.cancel()

    async def __aenter__(self) -> EventStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


@dataclass(eq=False)
class _Seq:
    ticket: Ticket
    prompt: list[int]
    params: SamplingParams
    salt: str
    sink: Callable[[Event], None]
    generator: Any = None
    generated: list[int] = field(default_factory=list)
    sent: int = 0  # characters of the decoded text already sent
    cached: int = 0
    done: bool = False
    at_boundary: bool = False  # the answer ends at a boundary, at or past its soft budget
    checked: int = 0  # boundaries whose P(eos) was checked
    max_eos: float | None = None


def find_surrogate(text: str) -> int:
    """Index of the first lone surrogate in ``text`` (``"\\ud800"`` from JSON), or -1."""
    if text.isascii():
        return -1
    found = _SURROGATE.search(text)
    return -1 if found is None else found.start()


def _check_unicode(text: Any) -> None:
    """A tokenizer cannot take a lone surrogate: say so (a 400, not a TypeError)."""
    if isinstance(text, str) and find_surrogate(text) >= 0:
        raise InvalidRequestError("the text contains an unpaired surrogate (U+D800-U+DFFF): "
                                  "send valid Unicode")


def _left_pad(t: Any, n: int) -> Any:
    import torch

    if n <= 0:
        return t
    pad = torch.zeros((*t.shape[:2], n, t.shape[3]), dtype=t.dtype, device=t.device)
    return torch.cat([pad, t], dim=2)


class Engine:
    """Batched generation over one HF causal LM (full-attention decoder).

    ``model`` and ``tokenizer`` are what ``tokenlean.backend.load_model``
    returns (any ``transformers`` causal LM and its tokenizer work).
    """

    def __init__(self, model: Any, tokenizer: Any, *, max_batch: int = 8, max_queue: int = 64,
                 prefix_cache: PrefixCache | None = None, metrics: Metrics | None = None,
                 threads: int | None = None) -> None:
        for name, value, low in (("max_batch", max_batch, 1), ("max_queue", max_queue, 0)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigError(f"{name} must be an integer >= {low}, got {value!r}")
        config = model.config.get_text_config(decoder=True)
        kinds = set(getattr(config, "layer_types", None) or ["full_attention"])
        if kinds != {"full_attention"}:
            raise ConfigError(f"the server decodes full-attention models only; this one has "
                              f"layers of kinds {sorted(kinds)}")
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.max_batch = max_batch
        self.max_queue = max_queue
        self.prefix_cache = prefix_cache if prefix_cache is not None else PrefixCache()
        self.metrics = metrics if metrics is not None else Metrics()
        self.threads = threads
        self.context_length = int(getattr(config, "max_position_embeddings", 0) or 2048)
        self.device = next(model.parameters()).device
        eos: set[int] = set()
        for source in (getattr(model, "generation_config", None), config, tokenizer):
            ids = getattr(source, "eos_token_id", None)
            eos.update([ids] if isinstance(ids, int) else (ids or []))
        self.stop_ids = frozenset(int(i) for i in eos)
        self._stop_index: Any = None  # the stop ids as a tensor, made on first use
        self._waiting: deque[_Seq] = deque()
        self._rows: list[_Seq] = []
        self._used = 0  # batch slots taken: rows plus admitted sequences being prefilled
        self._cache: Any = None  # DynamicCache of the running batch
        self._mask: Any = None  # [rows, columns] attention mask
        self._cv = threading.Condition()
        self._closing = False
        self._thread: threading.Thread | None = None

    # -- tokenization (pure helpers the HTTP layer calls) ------------------------------

    def encode_chat(self, messages: Sequence[dict[str, Any]], *, limit: int | None = None
                    ) -> list[int]:
        """Token ids of a chat, rendered with the tokenizer's chat template.

        More than ``limit`` tokens raise :class:`PromptTooLong`.
        """
        if not getattr(self.tokenizer, "chat_template", None):
            raise InvalidRequestError("this model's tokenizer has no chat template; use "
                                      "/v1/completions with a plain prompt instead")
        for m in messages:
            _check_unicode(m.get("content"))
        try:
            text = self.tokenizer.apply_chat_template(list(messages), tokenize=False,
                                                      add_generation_prompt=True)
        except Exception as exc:  # jinja errors: e.g. a template that rejects a role order
            raise InvalidRequestError(f"the model's chat template rejected these messages: "
                                      f"{exc}") from None
        return self.encode_text(text, special=False, limit=limit)

    def encode_text(self, text: str, *, special: bool = True, limit: int | None = None
                    ) -> list[int]:
        """Token ids of ``text``; more than ``limit`` raise :class:`PromptTooLong`.

        A fast (Rust) tokenizer encodes through its batch call, which releases the
        GIL, and a prompt over ``limit`` is refused before its ids become a Python
        list: a multi-megabyte prompt on a worker thread does not stall the others.
        """
        _check_unicode(text)
        backend = self._fast_backend()
        if backend is not None:
            encode = getattr(backend, "encode_batch_fast", backend.encode_batch)
            encoding = encode([text], add_special_tokens=special)[0]
            if limit is not None and len(encoding) > limit:
                raise PromptTooLong(len(encoding), limit)
            return list(encoding.ids)
        ids = list(self.tokenizer(text, add_special_tokens=special)["input_ids"])
        if limit is not None and len(ids) > limit:
            raise PromptTooLong(len(ids), limit)
        return ids

    def _fast_backend(self) -> Any:
        """The tokenizer's Rust ``tokenizers.Tokenizer`` when calling it directly gives what
        ``tokenizer(text)`` gives (no truncation or padding configured on it, special tokens
        matched as the tokenizer matches them); else None."""
        backend = getattr(self.tokenizer, "backend_tokenizer", None)
        if backend is None or getattr(backend, "truncation", True) is not None \
                or getattr(backend, "padding", True) is not None:
            return None
        split = bool(getattr(self.tokenizer, "split_special_tokens", False))
        return backend if getattr(backend, "encode_special_tokens", None) == split else None

    def check_fits(self, prompt_tokens: int, max_tokens: int) -> None:
        if prompt_tokens + max_tokens > self.context_length:
            raise InvalidRequestError(
                f"this model's context is {self.context_length} tokens; the prompt has "
                f"{prompt_tokens} and max_tokens asks for {max_tokens} more: shorten the prompt "
                f"or lower max_tokens to at most {max(self.context_length - prompt_tokens, 0)}")

    # -- life cycle ---------------------------------------------------------------------

    def start(self) -> Engine:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="tokenlean-engine",
                                            daemon=True)
            self._thread.start()
        return self

    def close(self, timeout: float = 10.0) -> None:
        with self._cv:
            self._closing = True
            self._cv.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)

    def __enter__(self) -> Engine:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def queue_depth(self) -> int:
        return len(self._waiting)

    @property
    def active(self) -> int:
        return len(self._rows)

    # -- submitting ---------------------------------------------------------------------

    def submit(self, prompt: Sequence[int], params: SamplingParams, *,
               sink: Callable[[Event], None], salt: str = "") -> Ticket:
        """Queue a generation; events go to ``sink`` (called on the engine thread)."""
        if not prompt:
            raise InvalidRequestError("the prompt is empty")
        self.check_fits(len(prompt), params.max_tokens)
        seq = _Seq(Ticket(), list(prompt), params, salt, sink)
        with self._cv:
            if self._closing:
                raise EngineClosed("the engine is shut down")
            free_slots = max(self.max_batch - self._used, 0)
            if len(self._waiting) >= self.max_queue + free_slots:
                self.metrics.rejected.inc()
                raise QueueFull(f"the server is busy: {len(self._waiting)} requests wait for "
                                f"{self.max_batch} batch slots; retry shortly")
            self._waiting.append(seq)
            self.metrics.queue_depth.set(len(self._waiting))
            self._cv.notify_all()
        return seq.ticket

    def stream(self, prompt: Sequence[int], params: SamplingParams, *, salt: str = ""
               ) -> EventStream:
        """Submit now (so a full queue raises here) and return the async events.

        Call from a running event loop; ``aclose()`` (or leaving an ``async with``)
        cancels the generation if it is still running.
        """
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Event] = asyncio.Queue()

        def sink(event: Event) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, event)

        return EventStream(self.submit(prompt, params, sink=sink, salt=salt), queue)

    def generate(self, prompt: Sequence[int], params: SamplingParams, *, salt: str = ""
                 ) -> Generation:
        """Blocking: the whole generation (for scripts, benchmarks and tests)."""
        import queue as _queue

        events: _queue.Queue[Event] = _queue.Queue()
        ticket = self.submit(prompt, params, sink=events.put, salt=salt)
        parts: list[str] = []
        ttft = 0.0
        while True:
            event = events.get()
            if isinstance(event, Started):
                ttft = time.perf_counter() - ticket.submitted_at
            elif isinstance(event, Delta):
                parts.append(event.text)
            elif isinstance(event, Failed):
                raise RuntimeError(event.message)
            else:
                return Generation("".join(parts), event, ttft,
                                  time.perf_counter() - ticket.submitted_at)

    # -- the engine thread --------------------------------------------------------------

    def _run(self) -> None:
        import torch

        if self.threads:
            torch.set_num_threads(self.threads)
        with torch.inference_mode():
            while True:
                with self._cv:
                    while not self._closing and not self._waiting and not self._rows:
                        self._cv.wait()
                    if self._closing:
                        break
                    for seq in [q for q in self._waiting if q.ticket.cancelled]:
                        self._waiting.remove(seq)  # gave up while waiting
                        self._finish(seq, "cancelled")
                    admit: list[_Seq] = []
                    while self._waiting and len(self._rows) + len(admit) < self.max_batch:
                        admit.append(self._waiting.popleft())
                    self._used = len(self._rows) + len(admit)
                    self.metrics.queue_depth.set(len(self._waiting))
                for seq in admit:
                    if seq.ticket.cancelled:
                        self._finish(seq, "cancelled")
                        continue
                    try:
                        self._prefill(seq)
                    except Exception as exc:  # one bad request must not stop the engine
                        self._fail(seq, f"generation failed: {type(exc).__name__}: {exc}")
                self._drop_finished()
                if self._rows:
                    try:
                        self._decode_step()
                    except Exception as exc:
                        for seq in self._rows:
                            self._fail(seq, f"generation failed: {type(exc).__name__}: {exc}")
                        self._drop_finished()
                with self._cv:
                    self._used = len(self._rows)
                self.metrics.active.set(len(self._rows))
        with self._cv:
            for seq in [*self._waiting, *self._rows]:
                self._fail(seq, "the server is shutting down")
            self._waiting.clear()
            self._rows.clear()

    def _emit(self, seq: _Seq, event: Event) -> None:
        try:
            seq.sink(event)
        except Exception:  # the listener is gone (event loop closed): stop working for it
            seq.ticket.cancel()

    def _fail(self, seq: _Seq, message: str) -> None:
        if not seq.done:
            seq.done = True
            self.metrics.finished.labels("error").inc()
            self._emit(seq, Failed(message))

    def _finish(self, seq: _Seq, reason: Literal["stop", "length", "cancelled"],
                stop_sequence: str | None = None, eos_probability: float | None = None
                ) -> None:
        seq.done = True
        n = len(seq.generated)
        self.metrics.finished.labels(reason).inc()
        self.metrics.completion_tokens.inc(n)
        early = None
        if seq.params.soft_max_tokens is not None:
            early = EarlyStop(seq.params.soft_max_tokens, seq.params.stop_confidence,
                              seq.checked, seq.max_eos,
                              n if eos_probability is not None else None, eos_probability)
            if eos_probability is not None:
                self.metrics.early_stops.inc()
        self._emit(seq, Finished(reason, len(seq.prompt), n, seq.cached, stop_sequence, early))

    def _prefill(self, seq: _Seq) -> None:
        import torch

        prompt = seq.prompt
        n = len(prompt)
        cached, blocks = self.prefix_cache.lookup(prompt, salt=seq.salt, limit=n - 1)
        if cached:
            self.metrics.prefix_hits.inc()
            self.metrics.cached_tokens.inc(cached)
            layers = len(blocks[0])
            cache = cache_from_pairs(self.model, [
                (torch.cat([b[i][0] for b in blocks], dim=2),
                 torch.cat([b[i][1] for b in blocks], dim=2)) for i in range(layers)])
        else:
            self.metrics.prefix_misses.inc()
            cache = new_cache(self.model)
        positions = torch.arange(cached, n, device=self.device)
        out = forward_with_cache(self.model, cache,
                                 input_ids=torch.tensor([prompt[cached:]], device=self.device),
                                 position_ids=positions[None], cache_position=positions,
                                 logits_to_keep=1)
        kv = cache_pairs(cache)
        self.prefix_cache.store(prompt, kv, salt=seq.salt,
                                start_block=cached // self.prefix_cache.block_size)
        self.metrics.prefix_cache_tokens.set(self.prefix_cache.stats().stored_tokens)
        seq.cached = cached
        self.metrics.prompt_tokens.inc(n)
        self.metrics.ttft.observe(time.perf_counter() - seq.ticket.submitted_at)
        if seq.params.temperature > 0:
            seed = seq.params.seed if seq.params.seed is not None else random.getrandbits(63)
            seq.generator = torch.Generator(device="cpu").manual_seed(seed)
        self._emit(seq, Started(n, cached))
        self._next(seq, out.logits[0, -1])
        if not seq.done:
            self._join(seq, kv)

    def _join(self, seq: _Seq, kv: list[tuple[Any, Any]]) -> None:
        import torch

        length = kv[0][0].shape[2]
        if not self._rows:
            self._rows = [seq]
            self._mask = torch.ones((1, length), dtype=torch.long, device=self.device)
            self._cache = cache_from_pairs(self.model, kv)
            return
        width = self._mask.shape[1]
        row_mask = torch.ones((1, length), dtype=torch.long, device=self.device)
        if length < width:
            kv = [(_left_pad(k, width - length), _left_pad(v, width - length)) for k, v in kv]
            row_mask = torch.cat([torch.zeros((1, width - length), dtype=torch.long,
                                              device=self.device), row_mask], dim=1)
        elif length > width:
            grow = length - width
            for layer in self._cache.layers:
                layer.keys = _left_pad(layer.keys, grow)
                layer.values = _left_pad(layer.values, grow)
            self._mask = torch.cat([torch.zeros((self._mask.shape[0], grow), dtype=torch.long,
                                                device=self.device), self._mask], dim=1)
        for layer, (k, v) in zip(self._cache.layers, kv, strict=True):
            layer.keys = torch.cat([layer.keys, k], dim=0)
            layer.values = torch.cat([layer.values, v], dim=0)
        self._mask = torch.cat([self._mask, row_mask], dim=0)
        self._rows.append(seq)

    def _decode_step(self) -> None:
        import torch

        rows, width = len(self._rows), self._mask.shape[1]
        self.metrics.batch_size.observe(rows)
        ids = torch.tensor([[seq.generated[-1]] for seq in self._rows], device=self.device)
        positions = self._mask.sum(dim=1, keepdim=True)
        self._mask = torch.cat([self._mask, torch.ones((rows, 1), dtype=torch.long,
                                                       device=self.device)], dim=1)
        out = forward_with_cache(self.model, self._cache, input_ids=ids,
                                 attention_mask=self._mask, position_ids=positions,
                                 cache_position=torch.tensor([width], device=self.device))
        logits = out.logits[:, -1, :]
        for i, seq in enumerate(self._rows):
            if not seq.done:
                self._next(seq, logits[i])

    def _drop_finished(self) -> None:
        for seq in self._rows:
            if not seq.done and seq.ticket.cancelled:
                self._finish(seq, "cancelled")
        keep = [i for i, seq in enumerate(self._rows) if not seq.done]
        if len(keep) == len(self._rows):
            return
        if not keep:
            self._rows, self._cache, self._mask = [], None, None
            return
        import torch

        index = torch.tensor(keep, device=self.device)
        mask = self._mask.index_select(0, index)
        lead = int((mask.sum(dim=0) == 0).long().cumprod(dim=0).sum())  # all-padding columns
        for layer in self._cache.layers:
            layer.keys = layer.keys.index_select(0, index)[:, :, lead:]
            layer.values = layer.values.index_select(0, index)[:, :, lead:]
        self._mask = mask[:, lead:]
        self._rows = [self._rows[i] for i in keep]

    def _next(self, seq: _Seq, logits: Any) -> None:
        """One step of ``seq`` from its next-token logits: sample a token; unless it ends
        the answer anyway, end the answer early if it is at a boundary past its soft
        budget and ``P(eos)`` reaches its threshold."""
        token = self._sample(seq, logits)
        if seq.at_boundary and token not in self.stop_ids:
            p = self._eos_probability(logits)
            seq.checked += 1
            seq.max_eos = p if seq.max_eos is None else max(seq.max_eos, p)
            if p >= seq.params.stop_confidence:
                self._send(seq, self._text(seq.generated))
                self._finish(seq, "stop", eos_probability=p)
                return
        self._accept(seq, token)

    def _eos_probability(self, logits: Any) -> float:
        """``P(eos)`` at temperature 1: the softmax mass of every end-of-sequence id."""
        import torch

        if not self.stop_ids:
            return 0.0
        if self._stop_index is None:
            self._stop_index = torch.tensor(sorted(self.stop_ids), device=logits.device)
        logits = logits.float()
        return float(torch.exp(torch.logsumexp(logits.index_select(0, self._stop_index), 0)
                               - torch.logsumexp(logits, 0)))

    def _text(self, ids: list[int]) -> str:
        return str(self.tokenizer.decode(ids, skip_special_tokens=True,
                                         clean_up_tokenization_spaces=False))

    def _sample(self, seq: _Seq, logits: Any) -> int:
        import torch

        params = seq.params
        if params.temperature == 0:
            return int(torch.argmax(logits))
        probs = torch.softmax(logits.float() / params.temperature, dim=-1)
        if params.top_p < 1:
            sorted_probs, order = torch.sort(probs, descending=True)
            beyond = torch.cumsum(sorted_probs, dim=-1) - sorted_probs > params.top_p
            sorted_probs[beyond] = 0
            probs = torch.zeros_like(probs).scatter_(0, order, sorted_probs)
        return int(torch.multinomial(probs, 1, generator=seq.generator))

    def _accept(self, seq: _Seq, token: int) -> None:
        """Record one generated token; send the text that is now safe; finish if due."""
        seq.generated.append(token)
        eos = token in self.stop_ids
        text = self._text(seq.generated[:-1] if eos else seq.generated)
        stops = seq.params.stop
        if stops:
            start = max(0, seq.sent - max(len(s) for s in stops) + 1)
            found = [(i, s) for s in stops if (i := text.find(s, start)) >= 0]
            if found:
                at, stop = min(found)
                self._send(seq, text[:at])
                self._finish(seq, "stop", stop)
                return
        last = eos or len(seq.generated) >= seq.params.max_tokens
        if last:
            self._send(seq, text)
            self._finish(seq, "stop" if eos else "length")
            return
        soft = seq.params.soft_max_tokens
        seq.at_boundary = soft is not None and len(seq.generated) >= soft and at_boundary(text)
        end = len(text)
        if text.endswith("\ufffd"):  # half a UTF-8 character: wait for the rest
            end -= 1
        hold = 0
        for s in stops:  # keep back a tail that may grow into a stop sequence
            for k in range(min(len(s) - 1, end), hold, -1):
                if text[:end].endswith(s[:k]):
                    hold = k
                    break
        self._send(seq, text[:end - hold])

    def _send(self, seq: _Seq, text: str) -> None:
        if len(text) > seq.sent:
            chunk, seq.sent = text[seq.sent:], len(text)
            self._emit(seq, Delta(chunk))
