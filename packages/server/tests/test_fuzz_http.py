"""HTTP fuzzing of both APIs against the real server on loopback (hypothesis).

Each example is a request built from a valid one: fields set to generated JSON
(lone surrogates, huge and non-finite numbers, deep nesting, wrong types), fields
dropped, bytes inserted or cut, and odd headers (media types, keys, tenant,
Origin, Host). It must get an answer below 500, and a valid request on the *same*
keep-alive connection must then succeed. Derandomized by default (profile
``ci``); ``-m fuzz`` explores with random seeds and more examples.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tokenlean.bench._reliability_server import (
    KEY_A,
    KEY_B,
    PATHS,
    Connection,
    Raw,
    body_bytes,
    follow_up,
    valid_body,
)
from tokenlean.server import ServerThread

MODEL = "tiny-llama"
FIELDS = ("model", "messages", "prompt", "system", "max_tokens", "max_completion_tokens",
          "temperature", "top_p", "top_k", "seed", "stop", "stop_sequences", "stream",
          "stream_options", "n", "tools", "role", "content", "type", "text")
pytestmark = pytest.mark.fuzz


def _settings(examples: int) -> settings:
    # max(own count, the profile's): the fuzz profile (-m fuzz) explores with more examples
    return settings(max_examples=max(examples, settings.default.max_examples), deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


texts = st.text(st.characters(categories=("Cs", "Cc", "Lu", "Ll", "Nd", "Zs", "So", "Po")),
                max_size=12)
leaves = st.one_of(
    st.none(), st.booleans(), texts, st.sampled_from(["user", "assistant", "system", "text"]),
    # small ints (a valid max_tokens stays cheap) or far out of range
    st.integers(-3, 5), st.integers(min_value=2**31), st.integers(max_value=-(2**31)),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([Raw("9" * 5000), Raw("NaN"), Raw("-Infinity"), Raw("1e999"),
                     Raw("[" * 5000 + "]" * 5000), Raw('{"a":' * 3000 + "1" + "}" * 3000)]),
)
values = st.recursive(leaves, lambda inner: st.one_of(
    st.lists(inner, max_size=4),
    st.dictionaries(st.one_of(st.sampled_from(FIELDS), texts), inner, max_size=4),
    st.builds(lambda role, content: [{"role": role, "content": content}], inner, inner),
), max_leaves=12)
header_values = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF,
                                      exclude_characters="\x7f"), max_size=30)
# well-formed HTTP (one Host, as HTTP/1.1 requires): odd values, not broken framing, which
# the HTTP parser refuses (400, connection closed) before the app sees a byte
headers = st.lists(st.tuples(st.sampled_from([
    "authorization", "x-api-key", "x-tokenlean-tenant", "anthropic-version", "origin", "host",
    "accept", "content-encoding", "x-other"]), header_values), max_size=3,
    unique_by=lambda header: header[0])
content_types = st.sampled_from([
    "application/json", "application/json; charset=utf-8", "text/plain", "",
    "application/json; charset=utf-16", "application/merge-patch+json", "*/*",
    "APPLICATION/JSON", "application/json; charset"])


@st.composite
def requests(draw: Any) -> tuple[str, bytes, list[tuple[str, str]]]:
    path = draw(st.sampled_from(PATHS))
    body: dict[str, Any] = valid_body(path, MODEL)
    for name, value, drop in draw(st.lists(st.tuples(st.sampled_from(FIELDS), values,
                                                     st.booleans()), min_size=1, max_size=3)):
        if drop:
            body.pop(name, None)
        else:
            body[name] = value
    raw = body_bytes(body)
    if draw(st.booleans()):
        at = draw(st.integers(0, len(raw)))
        cut = draw(st.integers(0, 6))
        raw = raw[:at] + draw(st.binary(max_size=4)) + raw[at + cut:]
    sent = [("content-type", draw(content_types))] + draw(headers)
    if not any(name in ("authorization", "x-api-key") for name, _ in sent):
        sent.append(("authorization", f"Bearer {KEY_A}"))
    return path, raw, [(k, v.strip()) for k, v in sent]


@pytest.fixture(scope="module")
def keyed(make_server: Any) -> Iterator[ServerThread]:
    with make_server(app_options={"api_keys": {KEY_A: "tenant-a", KEY_B: "tenant-b"},
                                  "default_max_tokens": 2}) as running:
        yield running


def check(server: ServerThread, request: tuple[str, bytes, list[tuple[str, str]]]) -> None:
    path, raw, sent = request
    with Connection(server.host, server.port) as conn:
        reply = conn.request("POST", path, raw, sent)
        assert reply.status < 500, reply.body[:300]
        assert conn.open, f"the server closed the connection after a {reply.status}"
        assert follow_up(conn, path, MODEL, KEY_A).status == 200
        assert conn.requests == 2


@given(request=requests())
@_settings(60)
@example(request=("/v1/messages/count_tokens", body_bytes({
    "model": MODEL, "system": "a\ud800b", "messages": [{"role": "user", "content": "x"}]}),
    [("content-type", "application/json"), ("x-api-key", KEY_B)]))
@example(request=("/v1/chat/completions", b'{"model": "tiny-llama", "max_tokens": '
                  + b"9" * 5000 + b', "messages": [{"role": "user", "content": "x"}]}',
                  [("content-type", "application/json"), ("authorization", f"Bearer {KEY_A}")]))
def test_malformed_requests_get_4xx_and_the_connection_serves_on(
        keyed: ServerThread, request: tuple[str, bytes, list[tuple[str, str]]]) -> None:
    check(keyed, request)


@pytest.mark.slow
@given(request=requests())
@_settings(1000)
def test_malformed_requests_long(keyed: ServerThread,
                                 request: tuple[str, bytes, list[tuple[str, str]]]) -> None:
    check(keyed, request)
