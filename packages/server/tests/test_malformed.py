"""Every malformed request gets a 4xx in its API's error shape, on a connection that stays
usable: the fixed corpus of the reliability bench, one case at a time."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tokenlean.bench._reliability_server import (
    KEY_A,
    KEY_B,
    Case,
    Connection,
    case_headers,
    fixed_cases,
    follow_up,
)
from tokenlean.server import ServerThread

MODEL = "tiny-llama"
CASES = fixed_cases(MODEL)


@pytest.fixture(scope="module")
def keyed(make_server: Any) -> Iterator[ServerThread]:
    with make_server(app_options={"api_keys": {KEY_A: "tenant-a", KEY_B: "tenant-b"}}
                     ) as running:
        yield running


def check_shape(case: Case, body: Any) -> None:
    if case.path.startswith("/v1/messages"):
        assert body["type"] == "error" and isinstance(body["error"]["type"], str)
        assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    else:
        assert set(body["error"]) == {"message", "type", "param", "code"}
        assert isinstance(body["error"]["message"], str) and body["error"]["message"]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_malformed_request_gets_4xx_and_the_connection_serves_on(keyed: ServerThread,
                                                                 case: Case) -> None:
    with Connection(keyed.host, keyed.port) as conn:
        reply = conn.request("POST", case.path, case.body, case_headers(case, KEY_A))
        assert reply.status == case.status if case.status else 400 <= reply.status < 500, \
            reply.body[:300]
        check_shape(case, reply.json())
        assert len(reply.body) < 2000  # messages quote values briefly, never the whole body
        assert conn.open
        assert follow_up(conn, case.path, MODEL, KEY_A).status == 200
        assert conn.requests == 2  # both on one connection


def test_the_corpus_covers_every_endpoint() -> None:
    assert {c.path for c in CASES} == {"/v1/chat/completions", "/v1/completions",
                                       "/v1/messages", "/v1/messages/count_tokens"}
