"""One contract for every cache store: SQLite, Redis and PostgreSQL (real servers).

* put/get round-trips an entry; an expired one is a miss;
* tenants are isolated, including look-alike names (case, whitespace, a NUL, a
  Redis glob, key separators, zero-width characters): each gets its own answer
  back and a search never crosses tenants;
* ``invalidate`` removes one tenant's entries only; an empty or missing tenant is
  an error that deletes nothing (``all_tenants=True`` says "everyone" on purpose);
* a network store whose server hangs (SIGSTOP) times out: each call through the
  cache returns as a pass-through within about its timeout (0.25 s by default),
  with one warning for the outage.
"""

from __future__ import annotations

import threading
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest

from tokenlean.cache import Entry, ResponseCache, SQLiteStore
from tokenlean.core import (
    FunctionProvider,
    InvalidRequestError,
    Pipeline,
    Request,
    Response,
    TokenleanError,
    TokenleanWarning,
    Usage,
)

pytestmark = pytest.mark.server

#: tenant names that differ from "acme" by what a careless key or pattern would drop
LOOKALIKES = ("acme", "Acme", "acme ", " acme", "acme\x00", "acme:", "acme:*", "*", "acme*",
              "acme\u200b", "ac", "acmeacme", "default", "a:b", "a", "ä")
DIM = 8
#: the slowest a call through a hung store may take (its timeout is 0.25 s)
HUNG_CALL_BOUND_S = 1.0


def _vector(seed: int = 0) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal(DIM).astype(np.float32)
    return v / np.linalg.norm(v)


def _entry(tenant: str, key: str = "k", *, model: str = "m", created_at: float = 10.0,
           expires_at: float | None = None) -> Entry:
    return Entry(id=key, tenant=tenant, model=model, context="ctx", query="q",
                 response=f'{{"tenant": {tenant!r}}}', created_at=created_at,
                 expires_at=expires_at)


@pytest.fixture(params=["sqlite", "redis", "postgres"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def make_store(kind: str, request: pytest.FixtureRequest, tmp_path) -> Iterator[Callable[..., Any]]:
    """``make_store(**options)``: a fresh, empty store of the parametrized kind."""
    made: list[Any] = []
    if kind == "sqlite":
        def make(**kw: Any) -> Any:
            return SQLiteStore(tmp_path / f"{uuid.uuid4().hex}.sqlite", **kw)
    elif kind == "redis":
        from tokenlean.cache import RedisStore

        server = request.getfixturevalue("redis_server")

        def make(**kw: Any) -> Any:
            return RedisStore(server.url, prefix=f"t{uuid.uuid4().hex}", **kw)
    else:
        from tokenlean.cache import PostgresStore

        server = request.getfixturevalue("postgres_server")

        def make(**kw: Any) -> Any:
            return PostgresStore(server.dsn, dim=DIM, table=f"t{uuid.uuid4().hex}", **kw)

    def tracked(**kw: Any) -> Any:
        store = make(**kw)
        made.append(store)
        return store

    yield tracked
    for store in made:
        store.close()


def test_put_get_round_trip_and_expiry(make_store) -> None:
    store = make_store()
    store.put(_entry("acme", expires_at=50.0), _vector())
    got = store.get("acme", "k", now=20.0)
    assert got is not None and got.tenant == "acme" and got.response == _entry("acme").response
    assert store.get("acme", "k", now=60.0) is None  # expired
    assert store.get("acme", "other", now=20.0) is None


def _storable(kind: str) -> tuple[str, ...]:
    """The look-alike tenants ``kind`` can hold (PostgreSQL text cannot hold a NUL)."""
    return tuple(t for t in LOOKALIKES if kind != "postgres" or "\x00" not in t)


def test_lookalike_tenants_never_see_each_other(make_store, kind: str) -> None:
    store = make_store()
    tenants = _storable(kind)
    for tenant in tenants:
        store.put(_entry(tenant), _vector())
    for tenant in tenants:
        got = store.get(tenant, "k", now=20.0)
        assert got is not None and got.tenant == tenant, (tenant, got)
        assert store.count(tenant) == 1, tenant
        found = store.search(tenant, "ctx", _vector(), 50, -1.0, 20.0)
        assert all(e.tenant == tenant for e, _ in found), (tenant, found)
        if kind != "redis":  # Redis serves exact hits only
            assert len(found) == 1
    assert store.get("nobody", "k", now=20.0) is None


def test_a_tenant_postgres_cannot_hold_is_a_clear_error(postgres_server) -> None:
    from tokenlean.cache import PostgresStore

    store = PostgresStore(postgres_server.dsn, dim=DIM, table=f"t{uuid.uuid4().hex}")
    with pytest.raises(InvalidRequestError, match="NUL"):
        store.put(_entry("acme\x00"), _vector())
    with pytest.raises(InvalidRequestError, match="NUL"):
        store.get("acme\x00", "k", now=1.0)
    store.put(Entry(id="k", tenant="acme", model="m", context="ctx", query="a\x00b",
                    response="{}", created_at=1.0), _vector())
    assert store.get("acme", "k", now=2.0).query == "a\ufffdb"
    store.close()


def test_invalidate_removes_one_tenant_only(make_store, kind: str) -> None:
    store = make_store()
    tenants = _storable(kind)
    for tenant in tenants:
        store.put(_entry(tenant, "k1"), _vector())
        store.put(_entry(tenant, "k2", model="other", created_at=1.0), _vector(1))
    assert store.invalidate(tenant="*") == 2  # the glob-looking name is a name, not a glob
    assert store.invalidate(tenant="acme", model="other") == 1
    assert store.invalidate(tenant="Acme", older_than=5.0) == 1
    for tenant in tenants:
        expected = {"*": 0, "acme": 1, "Acme": 1}.get(tenant, 2)
        assert store.count(tenant) == expected, tenant
    assert store.get("acme", "k1", now=20.0) is not None


@pytest.mark.parametrize("tenant", ["", None])
def test_invalidate_without_a_tenant_is_an_error_and_deletes_nothing(make_store, tenant) -> None:
    store = make_store()
    for name in ("acme", "globex"):
        store.put(_entry(name), _vector())
    with pytest.raises(InvalidRequestError, match="tenant") as caught:
        store.invalidate(tenant=tenant)
    assert isinstance(caught.value, TokenleanError)
    with pytest.raises(InvalidRequestError, match="tenant"):
        store.invalidate(tenant=tenant, model="m")
    assert store.count("acme") == 1 and store.count("globex") == 1
    with pytest.raises(InvalidRequestError, match="all_tenants"):
        store.invalidate(tenant="acme", all_tenants=True)  # one or the other
    assert store.invalidate(all_tenants=True) == 2  # everyone, said on purpose
    assert store.count() == 0


def test_cache_invalidate_without_a_tenant_is_an_error(make_store) -> None:
    cache = ResponseCache(store=make_store(), semantic=False)
    cache.store.put(_entry("acme"), None)
    for tenant in ("", None):
        with pytest.raises(InvalidRequestError, match="tenant"):
            cache.invalidate(tenant=tenant)
    assert cache.store.count("acme") == 1
    assert cache.invalidate(all_tenants=True) == 1


def _answer(request: Request) -> Response:
    return Response(text=f"answer to {request.last_user_text}", model=request.model,
                    usage=Usage(input_tokens=10, output_tokens=5))


def _timed_call(pipe: Pipeline, request: Request) -> tuple[float, Response | None]:
    """(seconds, response) of one call, run in a thread so a hung store cannot hang
    the test (None: it did not return within 10 s)."""
    out: list[Response] = []
    thread = threading.Thread(target=lambda: out.append(pipe.run(request).response),
                              daemon=True)
    started = time.monotonic()
    thread.start()
    thread.join(10)
    return time.monotonic() - started, (out[0] if out else None)


@pytest.mark.parametrize("server_kind", ["redis", "postgres"])
def test_a_hung_server_times_out_as_pass_through(server_kind: str, request) -> None:
    server = request.getfixturevalue(f"{server_kind}_server")
    if server_kind == "redis":
        from tokenlean.cache import RedisStore

        store: Any = RedisStore(server.url)
    else:
        from tokenlean.cache import PostgresStore

        store = PostgresStore(server.dsn, dim=DIM, table=f"t{uuid.uuid4().hex}")
    assert store.timeout_s <= 0.25  # the default
    cache = ResponseCache(store=store, semantic=False)
    pipe = Pipeline(provider=FunctionProvider(_answer), layers=[cache])
    ask = Request(messages=[{"role": "user", "content": "q"}], model="gpt-4o", temperature=0)
    pipe.run(ask)
    assert pipe.run(ask).response.cached
    server.pause()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            timings = [_timed_call(pipe, ask) for _ in range(3)]
    finally:
        server.resume()
    latencies = [t for t, _ in timings]
    print(server_kind, "call latencies while hung:", [round(t, 3) for t in latencies])
    assert all(r is not None and not r.cached for _, r in timings), timings
    assert max(latencies) < HUNG_CALL_BOUND_S, latencies
    tokenlean = [w for w in caught if issubclass(w.category, TokenleanWarning)]
    assert len(tokenlean) == 1, [str(w.message) for w in caught]
    deadline = time.monotonic() + 10
    while not pipe.run(ask).response.cached:  # back to hits once the server answers
        assert time.monotonic() < deadline, "the store did not recover"
        time.sleep(0.1)
    cache.close()
