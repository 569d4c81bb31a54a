"""Prefix KV cache: requests that share a prompt prefix reuse its keys and values.

The prompt is cut into fixed blocks of ``block_size`` tokens. Each block is keyed
by a hash chain ``h_i = sha256(h_{i-1} || tokens of block i)`` seeded with the
tenant's salt, so a block's key names the *whole* prefix up to it (and two
tenants never share an entry). A lookup walks the chain from the start and
returns the KV of the longest cached run of blocks; a store adds the blocks a
prefill computed. Eviction is least-recently-used by block, with a budget in
tokens. Lookups touch blocks deepest-first, so a prefix's first blocks are
always at least as recent as its later ones and eviction trims prefixes from
their tail, never leaving an unreachable middle.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tokenlean.core import ConfigError

__all__ = ["PrefixCache", "PrefixCacheStats"]

KV = list[tuple[Any, Any]]  # per layer (keys, values), each [1, heads, tokens, head_dim]


@dataclass(frozen=True, slots=True)
class PrefixCacheStats:
    """Counters since start: lookups that reused at least one block are hits."""

    hits: int
    misses: int
    hit_tokens: int
    stored_tokens: int
    capacity_tokens: int
    evicted_blocks: int


def _chain(salt: str, tokens: Sequence[int], block_size: int, blocks: int) -> list[bytes]:
    keys: list[bytes] = []
    digest = hashlib.sha256(b"tokenlean-prefix\x00" + salt.encode("utf-8")).digest()
    for i in range(blocks):
        block = tokens[i * block_size:(i + 1) * block_size]
        digest = hashlib.sha256(digest + b"".join(int(t).to_bytes(4, "little") for t in block)
                                ).digest()
        keys.append(digest)
    return keys


class PrefixCache:
    """LRU cache of prompt-prefix KV blocks, shared by all requests of one engine.

    ``capacity_tokens`` bounds memory: each cached token costs
    ``2 * layers * kv_heads * head_dim * dtype bytes`` (46 KB for SmolLM2-135M
    in float32). ``capacity_tokens=0`` disables the cache.
    """

    def __init__(self, *, capacity_tokens: int = 8192, block_size: int = 16) -> None:
        if isinstance(capacity_tokens, bool) or not isinstance(capacity_tokens, int) \
                or capacity_tokens < 0:
            raise ConfigError(f"capacity_tokens must be an int >= 0, got {capacity_tokens!r}")
        if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1:
            raise ConfigError(f"block_size must be an int >= 1, got {block_size!r}")
        self.capacity_tokens = capacity_tokens
        self.block_size = block_size
        self._blocks: OrderedDict[bytes, KV] = OrderedDict()
        self._lock = threading.Lock()
        self._hits = self._misses = self._hit_tokens = self._evicted = 0

    @property
    def enabled(self) -> bool:
        return self.capacity_tokens >= self.block_size

    def __len__(self) -> int:
        return len(self._blocks)

    def stats(self) -> PrefixCacheStats:
        with self._lock:
            return PrefixCacheStats(self._hits, self._misses, self._hit_tokens,
                                    len(self._blocks) * self.block_size, self.capacity_tokens,
                                    self._evicted)

    def lookup(self, tokens: Sequence[int], *, salt: str = "", limit: int | None = None
               ) -> tuple[int, list[KV]]:
        """The number of leading tokens found and their KV blocks (in order).

        At most ``limit`` tokens are matched (the engine passes ``len(prompt) - 1``
        so that at least one token is left to compute the next-token logits).
        Counts a hit when at least one block matched, else a miss.
        """
        usable = len(tokens) if limit is None else min(limit, len(tokens))
        found: list[tuple[bytes, KV]] = []
        if self.enabled and usable >= self.block_size:
            keys = _chain(salt, tokens, self.block_size, usable // self.block_size)
            with self._lock:
                for key in keys:
                    kv = self._blocks.get(key)
                    if kv is None:
                        break
                    found.append((key, kv))
                for key, _ in reversed(found):  # deepest first: the head stays most recent
                    self._blocks.move_to_end(key)
        with self._lock:
            if found:
                self._hits += 1
                self._hit_tokens += len(found) * self.block_size
            else:
                self._misses += 1
        return len(found) * self.block_size, [kv for _, kv in found]

    def store(self, tokens: Sequence[int], kv: KV, *, salt: str = "", start_block: int = 0) -> int:
        """Add the full blocks of ``tokens`` whose KV is in ``kv`` (sliced per block).

        ``kv`` holds the keys/values of ``tokens`` position by position (batch 1,
        no padding). Blocks before ``start_block`` are assumed cached already.
        Returns the number of blocks added.
        """
        if not self.enabled:
            return 0
        n_blocks = len(tokens) // self.block_size
        if n_blocks <= start_block:
            return 0
        keys = _chain(salt, tokens, self.block_size, n_blocks)
        added = 0
        with self._lock:
            for i in range(start_block, n_blocks):
                if keys[i] in self._blocks:
                    continue
                lo, hi = i * self.block_size, (i + 1) * self.block_size
                self._blocks[keys[i]] = [(k[:, :, lo:hi].clone(), v[:, :, lo:hi].clone())
                                         for k, v in kv]
                added += 1
            for i in reversed(range(n_blocks)):  # keep head blocks the most recent
                self._blocks.move_to_end(keys[i])
            while len(self._blocks) * self.block_size > self.capacity_tokens:
                self._blocks.popitem(last=False)
                self._evicted += 1
        return added

    def clear(self) -> None:
        with self._lock:
            self._blocks.clear()
