"""RedisStore against a real redis-server started on a free loopback port."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time

import pytest

from tokenlean.cache import RedisStore, ResponseCache
from tokenlean.core import Pipeline, TokenleanWarning

pytestmark = pytest.mark.server

REDIS = shutil.which("redis-server")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def redis_url(tmp_path):
    if REDIS is None:
        pytest.skip("redis-server binary not found (scripts/setup.sh apt-installs redis-server)")
    port = _free_port()
    proc = subprocess.Popen(
        [REDIS, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(tmp_path),
         "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                pytest.fail("redis-server did not start")
            time.sleep(0.05)
    yield f"redis://127.0.0.1:{port}/0", proc
    proc.terminate()
    proc.wait(timeout=10)


def test_exact_hits_shared_between_cache_instances(redis_url, model, ask):
    url, _ = redis_url
    one = ResponseCache(store=RedisStore(url), semantic=False)
    two = ResponseCache(store=RedisStore(url), semantic=False)
    Pipeline(provider=model.provider(), layers=[one]).run(ask("shared question"))
    hit = Pipeline(provider=model.provider(), layers=[two]).run(ask("shared question"))
    assert hit.response.cached and model.calls == 1
    assert not Pipeline(provider=model.provider(), layers=[two]).run(
        ask("shared question", tenant="someone-else")).response.cached
    one.close()
    two.close()


def test_ttl_is_enforced_by_the_server(redis_url, model, ask):
    url, _ = redis_url
    store = RedisStore(url)
    cache = ResponseCache(store=store, semantic=False, ttl_s=0.3)
    pipe = Pipeline(provider=model.provider(), layers=[cache])
    pipe.run(ask("short-lived"))
    name = next(iter(store._scan("default")))
    assert 0 < store._r.pttl(name) <= 300
    assert pipe.run(ask("short-lived")).response.cached
    time.sleep(0.45)
    assert store.count() == 0  # gone from the server, not only filtered
    assert not pipe.run(ask("short-lived")).response.cached


def test_invalidate_by_tenant_and_model(redis_url, model, ask):
    url, _ = redis_url
    cache = ResponseCache(store=RedisStore(url), semantic=False)
    pipe = Pipeline(provider=model.provider(), layers=[cache])
    pipe.run(ask("a", tenant="t1"))
    pipe.run(ask("b", tenant="t1", model="gpt-4o"))
    pipe.run(ask("c", tenant="t2"))
    assert cache.invalidate(tenant="t1", model="gpt-4o") == 1
    assert cache.invalidate(tenant="t1") == 1
    assert cache.store.count() == 1
    assert pipe.run(ask("c", tenant="t2")).response.cached


def test_corrupt_entry_is_a_miss_and_removed(redis_url, model, ask):
    url, _ = redis_url
    store = RedisStore(url)
    cache = ResponseCache(store=store, semantic=False)
    pipe = Pipeline(provider=model.provider(), layers=[cache])
    pipe.run(ask("q"))
    name = next(iter(store._scan("default")))
    store._r.hset(name, "response", "{broken")
    assert not pipe.run(ask("q")).response.cached
    assert pipe.run(ask("q")).response.cached


def test_server_going_away_is_one_warning_and_pass_through(redis_url, model, ask):
    url, proc = redis_url
    cache = ResponseCache(store=RedisStore(url, timeout_s=0.2), semantic=False)
    pipe = Pipeline(provider=model.provider(), layers=[cache])
    pipe.run(ask("q"))
    proc.terminate()
    proc.wait(timeout=10)
    with pytest.warns(TokenleanWarning, match="uncached") as caught:
        for _ in range(3):
            assert not pipe.run(ask("q")).response.cached
    assert len(caught) == 1 and model.calls == 4
