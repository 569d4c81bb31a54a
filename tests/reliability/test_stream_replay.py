"""A cached replay streams chunk for chunk like the original, with the original usage.

Through the real ``Pipeline.stream`` / ``astream``, with a real cache on SQLite,
Redis and PostgreSQL, and two real streaming providers: our own server over HTTP
(``OpenAICompatibleProvider``, tiny model) and an in-process streaming provider
whose chunks are deliberately odd (multi-byte, whitespace-only, one character).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from typing import Any

import pytest

from tokenlean.cache import ResponseCache
from tokenlean.cache._keys import keys_for
from tokenlean.core import (
    Chunk,
    OpenAICompatibleProvider,
    Pipeline,
    Request,
    Response,
    Usage,
)

ODD_CHUNKS = ("Bon", "jour ", "🙂", " ", "\n\n", "naïve ", "数据", "x", " end.")


class OddStreamer:
    """A streaming provider: complete/acomplete/stream/astream, chunks as given."""

    name = "odd-streamer"

    def __init__(self, chunks: tuple[str, ...] = ODD_CHUNKS) -> None:
        self.chunks, self.calls = chunks, 0

    def _final(self, request: Request) -> Response:
        self.calls += 1
        return Response(text="".join(self.chunks), model=request.model,
                        usage=Usage(input_tokens=21, output_tokens=len(self.chunks),
                                    cache_read_tokens=5, reasoning_tokens=1))

    def complete(self, request: Request) -> Response:
        return self._final(request)

    async def acomplete(self, request: Request) -> Response:
        return self._final(request)

    def stream(self, request: Request) -> Iterator[Chunk]:
        for text in self.chunks:
            yield Chunk(text=text)
        yield Chunk(response=self._final(request))

    async def astream(self, request: Request) -> AsyncIterator[Chunk]:
        for text in self.chunks:
            await asyncio.sleep(0)
            yield Chunk(text=text)
        yield Chunk(response=self._final(request))


def _ask(text: str, tenant: str = "default") -> Request:
    return Request(messages=[{"role": "user", "content": text}], model="gpt-4o-mini",
                   tenant=tenant, max_tokens=16, temperature=0)  # repeatable: cacheable


def _collect(chunks: list[Chunk]) -> tuple[list[str], Response]:
    *body, last = chunks
    assert last.response is not None and all(c.response is None for c in body)
    return [c.text for c in body], last.response


async def _acollect(stream: AsyncIterator[Chunk]) -> tuple[list[str], Response]:
    return _collect([c async for c in stream])


def _assert_same_stream(original: tuple[list[str], Response],
                        replay: tuple[list[str], Response]) -> None:
    (texts, first), (again, hit) = original, replay
    assert not first.cached and hit.cached
    assert again == texts  # chunk for chunk
    assert hit.text == first.text == "".join(texts)
    assert hit.usage == first.usage  # the original usage rides along with the replay
    assert (hit.finish_reason, hit.model) == (first.finish_reason, first.model)


def _make_store(kind: str, request: pytest.FixtureRequest) -> Any:
    if kind == "sqlite":
        return request.getfixturevalue("tmp_path") / "cache.sqlite"
    if kind == "redis":
        from tokenlean.cache import RedisStore

        return RedisStore(request.getfixturevalue("redis_server").url)
    from tokenlean.cache import PostgresStore

    return PostgresStore(request.getfixturevalue("postgres_server").dsn, dim=256,
                         table=f"replay_{abs(hash(request.node.nodeid)) % 10**9}")


STORES = ["sqlite", pytest.param("redis", marks=pytest.mark.server),
          pytest.param("postgres", marks=pytest.mark.server)]


@pytest.mark.parametrize("kind", STORES)
def test_sync_replay_is_chunk_for_chunk(kind: str, request: pytest.FixtureRequest) -> None:
    provider = OddStreamer()
    cache = ResponseCache(store=_make_store(kind, request), semantic=False)
    pipe = Pipeline(provider=provider, layers=[cache])
    original = _collect(list(pipe.stream(_ask("say hello oddly"))))
    assert original[0] == list(ODD_CHUNKS)
    replay = _collect(list(pipe.stream(_ask("say hello oddly"))))
    _assert_same_stream(original, replay)
    assert provider.calls == 1
    # the non-streaming path serves the same entry, whole
    assert pipe.run(_ask("say hello oddly")).response.text == original[1].text
    # another tenant never gets the replay
    assert not _collect(list(pipe.stream(_ask("say hello oddly", tenant="other"))))[1].cached
    cache.close()


@pytest.mark.parametrize("kind", STORES)
async def test_async_replay_is_chunk_for_chunk(kind: str, request: pytest.FixtureRequest) -> None:
    provider = OddStreamer()
    cache = ResponseCache(store=_make_store(kind, request), semantic=False)
    pipe = Pipeline(provider=provider, layers=[cache])
    original = await _acollect(pipe.astream(_ask("say hello oddly, async")))
    replay = await _acollect(pipe.astream(_ask("say hello oddly, async")))
    _assert_same_stream(original, replay)
    # a replay stored by the async path is replayed the same by the sync one
    _assert_same_stream(original, _collect(list(pipe.stream(_ask("say hello oddly, async")))))
    assert provider.calls == 1
    cache.close()


def _stopping(provider: OpenAICompatibleProvider, question: str) -> Request:
    """A greedy request to our server that ends on a stop sequence (finish_reason
    "stop", so the cache stores it): the tiny random model never says EOS, so
    the stop is a piece of what it says when asked without one."""
    probe = Request(messages=[{"role": "user", "content": question}], model="gpt-4o-mini",
                    max_tokens=16, temperature=0)
    said = [c.text for c in provider.stream(probe) if c.text]
    return Request(messages=probe.messages, model=probe.model, max_tokens=16, temperature=0,
                   stop=[said[6]])


@pytest.mark.server
@pytest.mark.parametrize("kind", STORES)
def test_replay_of_our_server_stream(kind: str, request: pytest.FixtureRequest,
                                     local_server: Any) -> None:
    provider = OpenAICompatibleProvider(base_url=local_server.url + "/v1", name="local")
    cache = ResponseCache(store=_make_store(kind, request), semantic=False)
    pipe = Pipeline(provider=provider, layers=[cache])
    for question in ("tell me a story", "what is a cache"):
        ask = _stopping(provider, question)
        original = _collect(list(pipe.stream(ask)))
        assert original[1].finish_reason == "stop" and len(original[0]) >= 5
        assert original[1].usage.output_tokens >= 5
        _assert_same_stream(original, _collect(list(pipe.stream(ask))))
    cache.close()


@pytest.mark.server
async def test_async_replay_of_our_server_stream(tmp_path: Any, local_server: Any) -> None:
    provider = OpenAICompatibleProvider(base_url=local_server.url + "/v1", name="local")
    cache = ResponseCache(store=tmp_path / "c.sqlite", semantic=False)
    pipe = Pipeline(provider=provider, layers=[cache])
    ask = _stopping(provider, "explain streaming")
    original = await _acollect(pipe.astream(ask))
    assert original[1].finish_reason == "stop" and len(original[0]) >= 5
    _assert_same_stream(original, await _acollect(pipe.astream(ask)))
    cache.close()


def test_entries_without_chunks_replay_as_one_chunk(tmp_path: Any) -> None:
    """Backward compatibility: an entry stored before chunks were kept (or by a
    non-streamed call) replays as one chunk of its whole text."""
    provider = OddStreamer()
    cache = ResponseCache(store=tmp_path / "c.sqlite", semantic=False)
    pipe = Pipeline(provider=provider, layers=[cache])
    first = pipe.run(_ask("not streamed")).response  # stored without chunks
    texts, hit = _collect(list(pipe.stream(_ask("not streamed"))))
    assert texts == [first.text] and hit.cached and hit.usage == first.usage
    # an old-format row (written by the previous release: no "chunks" key)
    list(pipe.stream(_ask("old row")))
    store, keys = cache.store, keys_for(_ask("old row"))
    entry = store.get(keys.tenant, keys.exact, 0.0)
    blob = json.loads(entry.response)
    assert blob.pop("chunks") == list(ODD_CHUNKS)
    store.put(replace(entry, response=json.dumps(blob)), None)
    texts, hit = _collect(list(pipe.stream(_ask("old row"))))
    assert texts == ["".join(ODD_CHUNKS)] and hit.cached
    # a row whose chunks do not add up to its text is corrupt: a miss, and deleted
    blob["chunks"] = ["nope"]
    store.put(replace(entry, response=json.dumps(blob)), None)
    texts, miss = _collect(list(pipe.stream(_ask("old row"))))
    assert not miss.cached and texts == list(ODD_CHUNKS)
    cache.close()

