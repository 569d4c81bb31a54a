"""Fixtures shared by the budget tests: a real redis-server per module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    pytest.importorskip("redis")
    from tokenlean.bench._servers import redis_server

    with redis_server() as redis:
        if redis is None:
            pytest.skip("redis-server not installed")
        yield redis.url
