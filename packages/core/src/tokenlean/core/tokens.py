"""Token counting that never downloads and never silently returns 0.

* OpenAI models: tiktoken with the ``cl100k_base`` / ``o200k_base`` rank files
  shipped inside this package (hash-checked), picked by model family.
* Local models: the model's own Hugging Face tokenizer
  (:func:`register_tokenizer` or :class:`HFTokenizer`).
* Anthropic and unknown models: an *approximation* with ``cl100k_base``,
  flagged ``exact=False`` so reports can say so. Claude's tokenizer is not
  public; Anthropic's ``count_tokens`` API is the exact (online) answer.

Chat messages are counted the way OpenAI bills them (the formula in OpenAI's
cookbook, verified against the API there): every message costs 3 tokens of
framing plus its role, content and name tokens (a name costs 1 extra), and
every reply is primed with 3 more.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache, lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from .errors import ConfigError, InvalidRequestError
from .types import Message

if TYPE_CHECKING:
    import tiktoken

__all__ = [
    "HFTokenizer",
    "TiktokenTokenizer",
    "TokenCount",
    "Tokenizer",
    "count_messages",
    "count_tokens",
    "message_fields",
    "get_tokenizer",
    "register_tokenizer",
]

_ENCODINGS_DIR = Path(__file__).parent / "_encodings"
_ENDOFTEXT, _ENDOFPROMPT = "<|endoftext|>", "<|endofprompt|>"
# Constants as tiktoken_ext.openai_public defines them (MIT, OpenAI).
_ENCODING_SPECS: dict[str, dict[str, Any]] = {
    "cl100k_base": {
        "sha256": "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
        "pat_str": r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s""",  # noqa: E501 - tiktoken's pattern, verbatim
        "special_tokens": {_ENDOFTEXT: 100257, "<|fim_prefix|>": 100258,
                           "<|fim_middle|>": 100259, "<|fim_suffix|>": 100260,
                           _ENDOFPROMPT: 100276},
    },
    "o200k_base": {
        "sha256": "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
        "pat_str": "|".join([
            r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
            r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
            r"""\p{N}{1,3}""",
            r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
            r"""\s*[\r\n]+""",
            r"""\s+(?!\S)""",
            r"""\s+""",
        ]),
        "special_tokens": {_ENDOFTEXT: 199999, _ENDOFPROMPT: 200018},
    },
}

# Longest prefix wins. Provider prefixes ("openai/", "azure/") are stripped first.
_O200K_PREFIXES = ("gpt-4o", "chatgpt-4o", "gpt-4.1", "gpt-4.5", "gpt-5", "o1", "o3", "o4",
                   "gpt-oss", "omni-moderation", "codex")
_CL100K_PREFIXES = ("gpt-4", "gpt-3.5", "gpt-35", "text-embedding-3", "text-embedding-ada-002")
_APPROX_ENCODING = "cl100k_base"

TOKENS_PER_MESSAGE = 3
TOKENS_PER_NAME = 1
REPLY_PRIMING_TOKENS = 3


@dataclass(frozen=True, slots=True)
class TokenCount:
    """A count and how much to trust it."""

    tokens: int
    exact: bool
    method: str


@runtime_checkable
class Tokenizer(Protocol):
    """Anything that turns text into token ids."""

    name: str
    exact: bool

    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids: list[int]) -> str: ...


class TiktokenTokenizer:
    """A tiktoken encoding loaded from the rank files shipped with tokenlean."""

    def __init__(self, encoding: str, *, exact: bool = True) -> None:
        self._encoding = _load_encoding(encoding)
        self.name = encoding if exact else f"approx:{encoding}"
        self.exact = exact

    def encode(self, text: str) -> list[int]:
        return self._encoding.encode(text, disallowed_special=())

    def decode(self, ids: list[int]) -> str:
        return self._encoding.decode(ids)

    def count(self, text: str) -> int:
        return len(self.encode(text))


class HFTokenizer:
    """A Hugging Face tokenizer from a local folder (or an already-loaded one)."""

    def __init__(self, source: str | Path | Any, *, name: str | None = None) -> None:
        if isinstance(source, (str, Path)):
            from ._optional import require

            transformers = require("transformers", extra="backend", feature="HF tokenizers")
            source = transformers.AutoTokenizer.from_pretrained(str(source), local_files_only=True)
        self._tokenizer = source
        self.name = name or f"hf:{getattr(source, 'name_or_path', 'tokenizer')}"
        self.exact = True

    def encode(self, text: str) -> list[int]:
        return list(self._tokenizer.encode(text, add_special_tokens=False))

    def decode(self, ids: list[int]) -> str:
        return str(self._tokenizer.decode(ids))

    def count(self, text: str) -> int:
        return len(self.encode(text))


_load_lock = threading.Lock()


@cache
def _load_encoding(name: str) -> tiktoken.Encoding:
    import tiktoken
    from tiktoken.load import load_tiktoken_bpe

    spec = _ENCODING_SPECS.get(name)
    if spec is None:
        raise ConfigError(f"unknown encoding {name!r}; shipped: {sorted(_ENCODING_SPECS)}")
    path = _ENCODINGS_DIR / f"{name}.tiktoken"
    with _load_lock:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if digest != spec["sha256"]:
            raise ConfigError(f"{path} is corrupt (sha256 {digest}); reinstall tokenlean-core")
        ranks = load_tiktoken_bpe(str(path), expected_hash=spec["sha256"])
    return tiktoken.Encoding(name=name, pat_str=spec["pat_str"], mergeable_ranks=ranks,
                             special_tokens=spec["special_tokens"])


_registry: dict[str, Tokenizer] = {}


def register_tokenizer(model: str, tokenizer: Tokenizer) -> None:
    """Count ``model``'s tokens with ``tokenizer`` (e.g. a local model's HF tokenizer)."""
    if not isinstance(tokenizer, Tokenizer):
        raise ConfigError("tokenizer must have name, exact, encode() and decode()")
    _registry[model] = tokenizer


def _bare_model(model: str) -> str:
    return model.rsplit("/", 1)[-1].lower()


def encoding_for_model(model: str) -> tuple[str, bool]:
    """The tiktoken encoding for ``model`` and whether the count will be exact."""
    bare = _bare_model(model)
    if bare.startswith(_O200K_PREFIXES):
        return "o200k_base", True
    if bare.startswith(_CL100K_PREFIXES):
        return "cl100k_base", True
    return _APPROX_ENCODING, False


@lru_cache(maxsize=256)
def _tiktoken_for(model: str) -> TiktokenTokenizer:
    encoding, exact = encoding_for_model(model)
    return TiktokenTokenizer(encoding, exact=exact)


def get_tokenizer(model: str) -> Tokenizer:
    """The tokenizer tokenlean uses for ``model`` (registered ones first)."""
    if not isinstance(model, str) or not model:
        raise InvalidRequestError("model must be a non-empty string")
    return _registry.get(model) or _tiktoken_for(model)


# A long text is often counted more than once per call (the pipeline counts the prompt,
# a layer counts the message it rewrites): its count is kept for the next asking.
_MEMO_FROM_CHARS = 2_000
_MEMO_SIZE = 16
_memo: OrderedDict[tuple[int, str], tuple[Tokenizer, int]] = OrderedDict()
_memo_lock = threading.Lock()


def _token_len(tokenizer: Tokenizer, text: str) -> int:
    if len(text) < _MEMO_FROM_CHARS:
        return len(tokenizer.encode(text))
    key = (id(tokenizer), text)
    with _memo_lock:
        known = _memo.get(key)
        if known is not None and known[0] is tokenizer:
            _memo.move_to_end(key)
            return known[1]
    n = len(tokenizer.encode(text))
    with _memo_lock:
        _memo[key] = (tokenizer, n)
        while len(_memo) > _MEMO_SIZE:
            _memo.popitem(last=False)
    return n


def count_tokens(text: str, *, model: str) -> TokenCount:
    """Tokens in ``text`` for ``model``; ``exact`` is False for approximations."""
    if not isinstance(text, str):
        raise InvalidRequestError(f"text must be a string, got {type(text).__name__}")
    tokenizer = get_tokenizer(model)
    return TokenCount(_token_len(tokenizer, text), tokenizer.exact, tokenizer.name)


def message_fields(message: Message) -> tuple[list[str], bool]:
    """The strings OpenAI tokenizes for a message, and whether that count is exact."""
    fields = [message.role, message.text]
    exact = isinstance(message.content, str) or all(
        p.get("type") == "text" for p in message.content
    )
    if message.tool_calls:
        # The wire format of tool calls is not documented; count their JSON.
        fields.append(json.dumps([dict(c) for c in message.tool_calls], separators=(",", ":")))
        exact = False
    if message.tool_call_id:
        fields.append(message.tool_call_id)
    return fields, exact


def count_messages(
    messages: Iterable[Message | Mapping[str, Any]], *, model: str,
    tools: Iterable[Mapping[str, Any]] = (),
) -> TokenCount:
    """Prompt tokens of a chat as OpenAI bills it (see module docstring).

    Non-text content parts (images, audio) and tool definitions are priced by
    rules OpenAI does not publish exactly; when present the count includes
    their JSON text and is flagged ``exact=False``.
    """
    tokenizer = get_tokenizer(model)
    exact = tokenizer.exact
    total = 0
    count = 0
    for raw in messages:
        message = raw if isinstance(raw, Message) else Message.from_openai(raw)
        fields, fields_exact = message_fields(message)
        exact = exact and fields_exact
        total += TOKENS_PER_MESSAGE + sum(_token_len(tokenizer, f) for f in fields)
        if message.name:
            total += TOKENS_PER_NAME + len(tokenizer.encode(message.name))
        count += 1
    if count == 0:
        raise InvalidRequestError("count_messages needs at least one message")
    tool_list = [dict(t) for t in tools]
    if tool_list:
        total += len(tokenizer.encode(json.dumps(tool_list, separators=(",", ":"))))
        exact = False
    total += REPLY_PRIMING_TOKENS
    return TokenCount(total, exact, tokenizer.name)
