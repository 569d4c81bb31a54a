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

The label log (``add_labels``/``labels_after``, see ``tokenlean.cache._labels``):

* labels come back in the order added, with ``seq`` >= 1 and strictly increasing
  (a reader starts at 0), ``labels_after(seq)`` gives only newer ones, at most
  ``limit``; scopes (look-alike names included) are isolated; labels are not
  entries (``count``/``invalidate`` do not see them);
* trimming: every store trims a scope to exactly its ``keep`` newest labels on
  any ``add_labels`` of 64 or more labels, and on at least every 64th call
  (Redis trims on every call), so between trims a scope holds at most
  ``keep + 64`` single-label appends; ``seq`` keeps growing across trims;
* another store object on the same file/server sees the labels (processes share
  them), and concurrent writers never leave a gap a tailing reader would skip;
* a hung Redis/PostgreSQL makes ``add_labels``/``labels_after`` raise (an outage
  for the cache, not a :class:`TokenleanError`) within about the timeout.
"""

from __future__ import annotations

import json
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
    """``make_store(**options)``: a fresh, empty store of the parametrized kind;
    ``make_store(like=store, **options)``: another store object on the same file,
    prefix or table as ``store`` (what a second process would open)."""
    made: list[Any] = []
    if kind == "sqlite":
        def make(like: Any, **kw: Any) -> Any:
            path = like.path if like is not None else tmp_path / f"{uuid.uuid4().hex}.sqlite"
            return SQLiteStore(path, **kw)
    elif kind == "redis":
        from tokenlean.cache import RedisStore

        server = request.getfixturevalue("redis_server")

        def make(like: Any, **kw: Any) -> Any:
            prefix = like.prefix if like is not None else f"t{uuid.uuid4().hex}"
            return RedisStore(server.url, prefix=prefix, **kw)
    else:
        from tokenlean.cache import PostgresStore

        server = request.getfixturevalue("postgres_server")

        def make(like: Any, **kw: Any) -> Any:
            table = like.table if like is not None else f"t{uuid.uuid4().hex}"
            return PostgresStore(server.dsn, dim=DIM, table=table, **kw)

    def tracked(like: Any = None, **kw: Any) -> Any:
        store = make(like, **kw)
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


# ---- the label log ---------------------------------------------------------------

#: what the stores promise about trimming (see the module docstring)
TRIM_EVERY = 64
KEEP = 1_000_000  # "keep everything" in the tests that do not trim


def _bodies(n: int, start: int = 0, tag: str = "b") -> list[str]:
    """Label-like bodies (short JSON), distinct and in a known order."""
    return [json.dumps({"tag": tag, "i": i}, separators=(",", ":"))
            for i in range(start, start + n)]


def _all_labels(store: Any, scope: str) -> list[tuple[int, str]]:
    return store.labels_after(scope, 0, 10_000_000)


def test_label_log_round_trips_in_order_with_growing_seq(make_store) -> None:
    store = make_store()
    bodies = _bodies(7)
    store.add_labels("s", bodies[:3], KEEP)
    store.add_labels("s", [], KEEP)  # nothing to add: a no-op
    store.add_labels("s", bodies[3:6], KEEP)
    got = _all_labels(store, "s")
    assert [b for _, b in got] == bodies[:6]
    seqs = [seq for seq, _ in got]
    assert seqs[0] >= 1 and all(a < b for a, b in zip(seqs, seqs[1:], strict=False)), seqs
    for n, (seq, _) in enumerate(got):  # after a seq: exactly the newer ones
        assert store.labels_after("s", seq, 100) == got[n + 1:]
    assert store.labels_after("s", 0, 2) == got[:2]  # the limit, paging on
    assert store.labels_after("s", got[1][0], 2) == got[2:4]
    assert store.labels_after("s", got[3][0], 100) == got[4:]
    assert store.labels_after("s", 0, 0) == []
    store.add_labels("s", bodies[6:], KEEP)
    newer = store.labels_after("s", seqs[-1], 100)
    assert [b for _, b in newer] == bodies[6:] and newer[0][0] > seqs[-1]
    assert store.labels_after("s", newer[-1][0], 100) == []
    assert store.labels_after("nobody", 0, 100) == []
    # labels are not cache entries
    assert store.count() == 0
    assert store.invalidate(all_tenants=True) == 0


def test_label_scopes_never_see_each_other(make_store, kind: str) -> None:
    store = make_store()
    scopes = _storable(kind)  # the look-alike names, as scopes
    for n, scope in enumerate(scopes):
        store.add_labels(scope, _bodies(2, tag=f"{n}"), KEEP)
    for n, scope in enumerate(scopes):
        assert [b for _, b in _all_labels(store, scope)] == _bodies(2, tag=f"{n}"), scope


def test_label_log_keeps_the_newest(make_store) -> None:
    store = make_store()
    keep, bodies = 10, _bodies(100 + TRIM_EVERY + TRIM_EVERY)
    store.add_labels("other", _bodies(5, tag="other"), keep)
    # an append of 64 or more trims: exactly the newest `keep` remain
    store.add_labels("s", bodies[:100], keep)
    got = _all_labels(store, "s")
    assert [b for _, b in got] == bodies[90:100]
    last = got[-1][0]
    # single appends: trimmed at least every 64th call, always a suffix of what was added
    for i in range(100, 100 + TRIM_EVERY):
        store.add_labels("s", [bodies[i]], keep)
        held = [b for _, b in _all_labels(store, "s")]
        assert keep <= len(held) <= keep + TRIM_EVERY, (i, len(held))
        assert held == bodies[i + 1 - len(held):i + 1]
    store.add_labels("s", bodies[100 + TRIM_EVERY:], keep)
    got = _all_labels(store, "s")
    assert [b for _, b in got] == bodies[-keep:]
    assert got[0][0] > last  # seq keeps growing across trims
    # trimming a scope never touches another
    assert [b for _, b in _all_labels(store, "other")] == _bodies(5, tag="other")


def test_label_log_is_shared_between_store_objects(make_store) -> None:
    first = make_store()
    second = make_store(like=first)  # another process on the same file/server
    bodies = _bodies(6)
    first.add_labels("s", bodies[:3], KEEP)
    seen = second.labels_after("s", 0, 100)
    assert [b for _, b in seen] == bodies[:3]
    second.add_labels("s", bodies[3:], KEEP)
    newer = first.labels_after("s", seen[-1][0], 100)
    assert [b for _, b in newer] == bodies[3:] and newer[0][0] > seen[-1][0]
    third = make_store(like=first)  # a restarted process picks the log up
    assert _all_labels(third, "s") == seen + newer


def test_concurrent_writers_leave_no_gap_a_reader_skips(make_store) -> None:
    """Two writers append while a reader tails the log by its last seq: the reader
    ends with every label, each writer's in its order (no seq committed late)."""
    first = make_store(timeout_s=10.0)
    writers = [first, make_store(like=first, timeout_s=10.0)]
    reader = make_store(like=first, timeout_s=10.0)
    calls, per_call = 40, 3
    errors: list[BaseException] = []

    def write(n: int) -> None:
        try:
            for c in range(calls):
                writers[n].add_labels("s", _bodies(per_call, c * per_call, tag=f"w{n}"), KEEP)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(n,), daemon=True) for n in range(2)]
    for thread in threads:
        thread.start()
    got: list[tuple[int, str]] = []
    last, done = 0, False
    while not done:
        done = not any(thread.is_alive() for thread in threads)  # then one last read
        for seq, body in reader.labels_after("s", last, 7):
            got.append((seq, body))
            last = seq
        time.sleep(0.001)
    while more := reader.labels_after("s", last, 1000):
        got += more
        last = more[-1][0]
    assert not errors, errors
    for n in range(2):
        mine = [b for _, b in got if f'"w{n}"' in b]
        assert mine == _bodies(calls * per_call, tag=f"w{n}"), n
    assert got == _all_labels(reader, "s")


def test_a_label_scope_postgres_cannot_hold_is_a_clear_error(postgres_server) -> None:
    from tokenlean.cache import PostgresStore

    store = PostgresStore(postgres_server.dsn, dim=DIM, table=f"t{uuid.uuid4().hex}")
    with pytest.raises(InvalidRequestError, match="NUL"):
        store.add_labels("s\x00", ["{}"], KEEP)
    with pytest.raises(InvalidRequestError, match="NUL"):
        store.add_labels("s", ["{}", "a\x00"], KEEP)
    with pytest.raises(InvalidRequestError, match="NUL"):
        store.labels_after("s\x00", 0, 10)
    assert store.labels_after("s", 0, 10) == []  # nothing of the refused batch was added
    store.close()


def _timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    """(seconds, what ``fn()`` returned or raised) of one call, run in a thread so a
    hung store cannot hang the test (None: it did not return within 10 s)."""
    out: list[Any] = []

    def run() -> None:
        try:
            out.append(fn())
        except Exception as exc:
            out.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    started = time.monotonic()
    thread.start()
    thread.join(10)
    return time.monotonic() - started, (out[0] if out else None)


@pytest.mark.parametrize("server_kind", ["redis", "postgres"])
def test_a_hung_server_times_out_label_calls(server_kind: str, request) -> None:
    server = request.getfixturevalue(f"{server_kind}_server")
    if server_kind == "redis":
        from tokenlean.cache import RedisStore

        store: Any = RedisStore(server.url, prefix=f"t{uuid.uuid4().hex}")
    else:
        from tokenlean.cache import PostgresStore

        store = PostgresStore(server.dsn, dim=DIM, table=f"t{uuid.uuid4().hex}")
    assert store.timeout_s <= 0.25  # the default
    store.add_labels("s", _bodies(2), KEEP)
    assert len(store.labels_after("s", 0, 10)) == 2
    server.pause()
    try:
        timings = []
        for n in range(2):
            timings.append(_timed(lambda n=n: store.add_labels("s", _bodies(1, 100 + n), KEEP)))
            timings.append(_timed(lambda: store.labels_after("s", 0, 10)))
    finally:
        server.resume()
    print(server_kind, "label call latencies while hung:", [round(t, 3) for t, _ in timings])
    for seconds, outcome in timings:
        assert isinstance(outcome, Exception) and not isinstance(outcome, TokenleanError), outcome
        assert seconds < HUNG_CALL_BOUND_S, timings
    deadline = time.monotonic() + 10
    while True:  # works again once the server answers
        try:
            store.add_labels("s", _bodies(1, 200), KEEP)
            break
        except Exception:
            assert time.monotonic() < deadline, "the store did not recover"
            time.sleep(0.1)
    # (a call that timed out may still land once the server resumes: not asserted)
    assert _bodies(1, 200)[0] in [b for _, b in store.labels_after("s", 0, 100)]
    store.close()


def test_the_false_hit_bound_is_learned_once_and_shared_through_the_store(
        make_store, kind: str) -> None:
    """Issue #21: a cache learns its bound from misses; a second cache on the same store
    (another process) starts with what the first learned and serves at once. Redis has
    no vector search (exact hits only), so there the bound never sees a candidate."""
    from tokenlean.cache.testing import known_cosine_embedder

    emb = known_cosine_embedder(dim=DIM, name="contract")

    def ask(text: str) -> Request:
        return Request(messages=({"role": "user", "content": text},), model="m",
                       tenant="acme", temperature=0)

    def cache(store: Any) -> ResponseCache:
        return ResponseCache(store=store, embedder=emb, guard=None, min_score=0.5,
                             max_false_hit_rate=0.1, seed=0)

    first = cache(make_store())
    for k in range(60):  # each a miss until the bound opens: the answer agrees, a label
        stored, query = ask(f"q{k}"), ask(f"q{k} ~0.99 #{k}")
        first.update(stored, Response(text=f"a{k}", usage=Usage(output_tokens=1)))
        if first.lookup(query) is None:
            first.update(query, Response(text=f"a{k}", usage=Usage(output_tokens=1)))
    learned = first.bound_stats()
    second = cache(make_store(like=first.store))
    shared = second.bound_stats()
    if kind == "redis":
        assert learned["labelled"] == 0 and shared["thresholds"]["new"] is None
        return
    assert learned["thresholds"]["new"] is not None and 0 < learned["labelled"] < 60
    assert shared["labelled"] == learned["labelled"]
    assert shared["thresholds"] == learned["thresholds"]
    second.update(ask("fresh"), Response(text="f", usage=Usage(output_tokens=1)))
    served = [second.lookup(ask(f"fresh ~0.99 #{i}")) for i in range(10)]
    assert sum(hit is not None for hit in served) >= 7  # some may be explored
