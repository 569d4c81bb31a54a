import pytest
import torch

from tokenlean.core import ConfigError
from tokenlean.server import PrefixCache


def kv_for(tokens: list[int], layers: int = 2) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Fake KV whose every entry encodes (layer, position, token) so slices can be checked."""
    out = []
    for layer in range(layers):
        k = torch.tensor([[float(layer * 1000 + t) for t in tokens]]).view(1, 1, len(tokens), 1)
        out.append((k, -k))
    return out


def joined(blocks: list, layer: int) -> list[float]:
    return torch.cat([b[layer][0] for b in blocks], dim=2).flatten().tolist()


def test_lookup_returns_the_longest_cached_block_run() -> None:
    cache = PrefixCache(capacity_tokens=64, block_size=4)
    tokens = list(range(10))
    assert cache.store(tokens, kv_for(tokens)) == 2  # blocks [0:4] and [4:8]; 2 tokens left over
    n, blocks = cache.lookup(list(range(9)) + [99])
    assert n == 8
    assert joined(blocks, 1) == [1000.0 + t for t in range(8)]
    n, _ = cache.lookup([0, 1, 2, 3, 4, 5, 77, 7, 8])  # differs inside the second block
    assert n == 4
    n, _ = cache.lookup([5, 1, 2, 3, 4, 5, 6, 7])  # differs in the first token: nothing
    assert n == 0
    stats = cache.stats()
    assert (stats.hits, stats.misses, stats.hit_tokens) == (2, 1, 12)


def test_limit_leaves_tokens_to_compute() -> None:
    cache = PrefixCache(capacity_tokens=64, block_size=4)
    tokens = list(range(8))
    cache.store(tokens, kv_for(tokens))
    assert cache.lookup(tokens, limit=7)[0] == 4
    assert cache.lookup(tokens)[0] == 8


def test_salt_isolates_tenants() -> None:
    cache = PrefixCache(capacity_tokens=64, block_size=4)
    tokens = list(range(8))
    cache.store(tokens, kv_for(tokens), salt="tenant-a")
    assert cache.lookup(tokens, salt="tenant-b")[0] == 0
    assert cache.lookup(tokens, salt="tenant-a")[0] == 8


def test_lru_evicts_the_tail_of_the_least_recent_prefix() -> None:
    cache = PrefixCache(capacity_tokens=16, block_size=4)
    a, b = list(range(8)), list(range(100, 108))
    cache.store(a, kv_for(a))
    cache.store(b, kv_for(b))
    assert len(cache) == 4
    cache.lookup(a)  # a is now the most recent
    c = list(range(200, 204))
    cache.store(c, kv_for(c))  # one block must go: b's tail, not its head
    assert cache.lookup(a)[0] == 8
    assert cache.lookup(b)[0] == 4
    assert cache.stats().evicted_blocks == 1


def test_disabled_cache_stores_nothing() -> None:
    cache = PrefixCache(capacity_tokens=0)
    tokens = list(range(64))
    assert cache.store(tokens, kv_for(tokens)) == 0
    assert cache.lookup(tokens)[0] == 0


@pytest.mark.parametrize("kwargs", [{"capacity_tokens": -1}, {"block_size": 0},
                                    {"capacity_tokens": True}])
def test_bad_options_are_config_errors(kwargs: dict) -> None:
    with pytest.raises(ConfigError):
        PrefixCache(**kwargs)
