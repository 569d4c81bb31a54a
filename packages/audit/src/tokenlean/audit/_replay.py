"""The parts the audit plugs into the real :class:`~tokenlean.core.Pipeline`.

* :class:`ReplayProvider` stands in for the model: it answers each request with
  the answer the log recorded for it, as a provider would have sent it back
  through ``lean()`` (cut at the request's ``max_tokens`` when a layer lowered
  the cap below the logged request's).
* :class:`MemoryLedger` collects the pipeline's :class:`CallRecord` rows.
* :class:`PricedAs` prices every call as one model, whatever model it names,
  so a log of mixed models is priced as if it had all gone to ``--price-as``
  (the request keeps its own model: it is part of the cache key).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal

from tokenlean.core import (
    CallRecord,
    ConfigError,
    Cost,
    PriceTable,
    Request,
    Response,
    TokenleanWarning,
    Usage,
    count_messages,
    get_tokenizer,
)

from ._prefix import PrefixCache

__all__ = ["MemoryLedger", "PricedAs", "ReplayProvider"]


class PricedAs(PriceTable):
    """A price table that prices every call as ``model`` (a known model: else ConfigError)."""

    def __init__(self, model: str) -> None:
        super().__init__()
        self.model = model
        with warnings.catch_warnings():  # an unknown model is reported as a ConfigError
            warnings.simplefilter("ignore", TokenleanWarning)
            known = super().rates(model=model)
        if known is None:
            raise ConfigError(f"no price known for {model!r}; pass --price-as with a model "
                              "genai-prices knows, e.g. gpt-4o")

    def price(self, usage: Usage, *, model: str, provider: str | None = None) -> Cost | None:
        return super().price(usage, model=self.model)

    def rates(self, *, model: str, provider: str | None = None) -> tuple[Decimal, Decimal] | None:
        return super().rates(model=self.model)

    def cache_rates(self) -> tuple[Decimal, Decimal]:
        """USD per input token read from the provider's prompt cache and per token written
        to it (base tier; the input rate where the database has no cache price)."""
        rates = {}
        for kind, usage in (("read", Usage(input_tokens=1000, cache_read_tokens=1000)),
                            ("write", Usage(input_tokens=1000, cache_write_tokens=1000))):
            cost = super().price(usage, model=self.model)
            assert cost is not None  # the model's price is known (checked at construction)
            rates[kind] = cost.input_usd / 1000
        return rates["read"], rates["write"]


class MemoryLedger:
    """The ledger the audit's pipeline writes to: its records, in call order."""

    def __init__(self) -> None:
        self._records: list[CallRecord] = []

    def record(self, record: CallRecord) -> None:
        self._records.append(record)

    def records(self) -> Iterator[CallRecord]:
        return iter(tuple(self._records))

    def __len__(self) -> int:
        return len(self._records)


@dataclass(frozen=True, slots=True)
class _Logged:
    text: str
    finish_reason: str
    output_tokens: int
    max_tokens: int | None  # the logged request's own cap


class ReplayProvider:
    """Answers each request with its logged answer (see :meth:`expect`).

    Usage is counted with ``count_model``'s tokenizer, the one the pipeline
    measures savings with: the prompt as it reaches the provider, and the
    answer. When a layer set a ``max_tokens`` below the logged request's (or the
    logged request had none), an answer longer than that cap is cut at it and
    ends with ``finish_reason="length"``, as the model would have stopped.
    With a ``prefix_cache``, the usage also says how many prompt tokens the
    provider's prompt cache would have read and written (:mod:`._prefix`).
    """

    name = "replay"

    def __init__(self, *, count_model: str, prefix_cache: PrefixCache | None = None) -> None:
        self.count_model = count_model
        self.prefix_cache = prefix_cache
        self._tokenizer = get_tokenizer(count_model)
        self._answers: dict[str, _Logged] = {}

    def expect(self, request: Request, text: str, *, finish_reason: str | None = None,
               output_tokens: int | None = None) -> None:
        """The answer to give ``request`` (matched by ``request_id``) when it arrives.

        ``output_tokens`` stands in for the answer's length when the log kept
        its usage but not its text.
        """
        tokens = len(self._tokenizer.encode(text)) if text or output_tokens is None \
            else output_tokens
        self._answers[request.request_id] = _Logged(text, finish_reason or "stop", tokens,
                                                    request.max_tokens)

    def logged_output_tokens(self, request: Request) -> int:
        """Length of the logged answer :meth:`expect` holds for ``request``."""
        return self._answers[request.request_id].output_tokens

    def forget(self, request: Request) -> None:
        """Drop the answer held for ``request`` (the call never reached the provider)."""
        self._answers.pop(request.request_id, None)

    def _answer(self, request: Request) -> Response:
        logged = self._answers.pop(request.request_id, None)
        if logged is None:
            raise ConfigError(f"the replay has no logged answer for request "
                              f"{request.request_id!r}")
        text, finish, output = logged.text, logged.finish_reason, logged.output_tokens
        cap = request.max_tokens
        lowered = cap is not None and (logged.max_tokens is None or cap < logged.max_tokens)
        if lowered and cap is not None and output > cap:
            ids = self._tokenizer.encode(text)
            text = self._tokenizer.decode(ids[:cap]) if ids else text
            output, finish = cap, "length"
        prompt = count_messages(request.messages, model=self.count_model,
                                tools=request.tools).tokens
        read, write = (0, 0) if self.prefix_cache is None else self.prefix_cache.bill(
            request.messages, request.tools, prompt_tokens=prompt)
        return Response(text=text, finish_reason=finish, model=request.model,
                        usage=Usage(input_tokens=prompt, output_tokens=output,
                                    cache_read_tokens=read, cache_write_tokens=write))

    def complete(self, request: Request) -> Response:
        return self._answer(request)

    async def acomplete(self, request: Request) -> Response:
        return self._answer(request)
