"""API keys, tenants, Host and Origin checks: the real server, real HTTP, both SDKs."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import openai
import pytest

from tokenlean.bench._reliability_server import Connection, body_bytes, valid_body
from tokenlean.core import ConfigError
from tokenlean.server import ServerThread, default_allowed_hosts, parse_api_keys

MODEL = "tiny-llama"
KEYS = {"key-acme-0001": "acme", "key-globex-01": "globex"}
SYSTEM = "You answer questions about the attached policy document. " * 10
JSON = [("content-type", "application/json")]


@pytest.fixture(scope="module")
def keyed(make_server: Any) -> Iterator[ServerThread]:
    with make_server(app_options={"api_keys": KEYS}) as running:
        yield running


def chat(url: str, key: str, question: str, system: str = SYSTEM, **headers: str) -> Any:
    client = openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0)
    return client.chat.completions.create(
        model=MODEL, max_tokens=2, temperature=0, extra_headers=headers,
        messages=[{"role": "system", "content": system}, {"role": "user", "content": question}])


def cached(out: Any) -> int:
    return int(out.usage.prompt_tokens_details.cached_tokens)


def test_parse_api_keys() -> None:
    keys = parse_api_keys(["k1-secret=acme", " k2-secret ", "c2VjcmV0Cg==", "k3=a=b-c"])
    assert keys["k1-secret"] == "acme"
    assert keys["c2VjcmV0Cg=="].startswith("key-")  # base64 padding is part of the key
    assert keys["k3=a"] == "b-c"  # the tenant follows the last '='
    assert re.fullmatch(r"key-[0-9a-f]{12}", keys["k2-secret"])
    assert len({keys["k2-secret"], keys["c2VjcmV0Cg=="]}) == 2  # each bare key: own tenant
    assert parse_api_keys(["k1-secret=acme", "k1-secret=acme"]) == {"k1-secret": "acme"}
    for bad in (["k1=acme", "k1=globex"], ["has space"], ["a,b"], [""], ["k\u00e9y"]):
        with pytest.raises(ConfigError):
            parse_api_keys(bad)


def test_default_allowed_hosts() -> None:
    assert default_allowed_hosts("127.0.0.1") == ("localhost", "127.0.0.1", "[::1]")
    assert default_allowed_hosts("::1") == default_allowed_hosts("localhost")
    assert default_allowed_hosts("192.168.1.5")[-1] == "192.168.1.5"
    assert default_allowed_hosts("0.0.0.0")[-2:] == ("0.0.0.0/0", "::/0")


def test_keys_are_required_in_each_apis_error_shape(keyed: ServerThread) -> None:
    with pytest.raises(openai.AuthenticationError) as e:
        chat(keyed.url, "wrong-key", "Hi?")
    assert e.value.code == "invalid_api_key"
    claude = anthropic.Anthropic(base_url=keyed.url, api_key="wrong-key", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError) as a:
        claude.messages.create(model=MODEL, max_tokens=2,
                               messages=[{"role": "user", "content": "Hi"}])
    assert a.value.body["error"]["type"] == "authentication_error"  # type: ignore[index]
    missing = httpx.post(keyed.url + "/v1/chat/completions",
                         json=valid_body("/v1/chat/completions", MODEL))
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
    assert "Authorization: Bearer" in missing.json()["error"]["message"]
    for path in ("/v1/models", "/metrics"):
        assert httpx.get(keyed.url + path).status_code == 401
    assert httpx.get(keyed.url + "/health").status_code == 200  # probes need no key
    # the right keys, in each SDK's own header
    assert chat(keyed.url, "key-acme-0001", "Hi?", "Be brief."
                ).usage.completion_tokens >= 1
    ok = anthropic.Anthropic(base_url=keyed.url, api_key="key-globex-01", max_retries=0)
    assert ok.messages.create(model=MODEL, max_tokens=2,
                              messages=[{"role": "user", "content": "Hi"}]).usage
    assert ok.messages.count_tokens(model=MODEL, messages=[
        {"role": "user", "content": "Hi"}]).input_tokens > 0
    listed = openai.OpenAI(base_url=keyed.url + "/v1", api_key="key-acme-0001").models.list()
    assert [m.id for m in listed] == [MODEL, "gpt-4o-mini"]


def test_the_prefix_cache_tenant_comes_from_the_key(keyed: ServerThread) -> None:
    first = chat(keyed.url, "key-acme-0001", "What is covered?")
    again = chat(keyed.url, "key-acme-0001", "Who signs it?")
    other = chat(keyed.url, "key-globex-01", "Who signs it?",
                 **{"x-tokenlean-tenant": "acme"})  # claiming acme's tenant changes nothing
    assert cached(first) == 0 and cached(again) >= 96
    assert cached(other) == 0
    claude = anthropic.Anthropic(base_url=keyed.url, api_key="key-acme-0001", max_retries=0)
    msg = claude.messages.create(model=MODEL, max_tokens=2, system=SYSTEM,
                                 messages=[{"role": "user", "content": "Is it long?"}])
    assert (msg.usage.cache_read_input_tokens or 0) >= 96


def test_without_keys_the_tenant_header_is_ignored_unless_trusted(
        server: ServerThread, make_server: Any) -> None:
    """The documented default: no keys, one shared namespace whatever the header says."""
    system = "Shared namespace check: " + SYSTEM

    def ask(url: str, tenant: str) -> Any:
        client = openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0)
        return client.chat.completions.create(
            model=MODEL, max_tokens=2, temperature=0, extra_headers={"x-tokenlean-tenant": tenant},
            messages=[{"role": "system", "content": system}, {"role": "user", "content": "Hi?"}])

    ask(server.url, "acme")
    assert cached(ask(server.url, "globex")) >= 96
    with make_server(app_options={"trust_tenant_header": True}) as trusting:
        ask(trusting.url, "acme")
        assert cached(ask(trusting.url, "acme")) >= 96
        assert cached(ask(trusting.url, "globex")) == 0


def test_a_trusted_header_splits_the_keys_own_tenant(make_server: Any) -> None:
    with make_server(app_options={"api_keys": KEYS, "trust_tenant_header": True}) as s:
        chat(s.url, "key-acme-0001", "One?", **{"x-tokenlean-tenant": "alice"})
        assert cached(chat(s.url, "key-acme-0001", "Two?",
                           **{"x-tokenlean-tenant": "alice"})) >= 96
        assert cached(chat(s.url, "key-acme-0001", "Two?",
                           **{"x-tokenlean-tenant": "bob"})) == 0
        # globex claiming "alice" lands in globex/alice, not acme/alice
        assert cached(chat(s.url, "key-globex-01", "Two?",
                           **{"x-tokenlean-tenant": "alice"})) == 0


def request(server: ServerThread, path: str, headers: list[tuple[str, str]],
            follow_headers: list[tuple[str, str]] = JSON) -> Any:
    """``headers``' reply; then a valid request must work on the same connection."""
    with Connection(server.host, server.port) as conn:
        reply = conn.request("POST", path, body_bytes(valid_body(path, MODEL)), headers)
        follow = conn.request("POST", path, body_bytes(valid_body(path, MODEL)), follow_headers)
        assert follow.status == 200 and conn.open  # the same connection serves on
    return reply


@pytest.mark.parametrize(("headers", "status", "code"), [
    ([("host", "evil.example")], 403, "host_not_allowed"),
    ([("host", "localhost.evil.example:8000")], 403, "host_not_allowed"),
    ([("host", "127.0.0.1.nip.io")], 403, "host_not_allowed"),
    ([("host", "localhost:1234")], 200, None),
    ([("host", "[::1]:8000")], 200, None),
    ([("host", "LOCALHOST")], 200, None),
    ([("origin", "https://evil.example")], 403, "origin_not_allowed"),
    ([("origin", "null")], 403, "origin_not_allowed"),
])
def test_host_and_origin_allow_lists(server: ServerThread, headers: list[tuple[str, str]],
                                     status: int, code: str | None) -> None:
    reply = request(server, "/v1/chat/completions", [*JSON, *headers])
    assert reply.status == status
    if code is not None:
        assert reply.json()["error"]["code"] == code
    anthropic_reply = request(server, "/v1/messages", [*JSON, *headers])
    assert anthropic_reply.status == status
    if status != 200:
        assert anthropic_reply.json()["error"]["type"] == "permission_error"


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded",
                                          "multipart/form-data; boundary=x", None,
                                          "application/json; charset=latin-1"])
def test_only_json_bodies_are_read(server: ServerThread, content_type: str | None) -> None:
    headers = [] if content_type is None else [("content-type", content_type)]
    reply = request(server, "/v1/chat/completions", headers)
    assert reply.status == 415 and "application/json" in reply.json()["error"]["message"]


def test_listed_hosts_and_origins(make_server: Any) -> None:
    origin = "https://app.example.com"
    host = ("host", "api.example.com")
    with make_server(app_options={"allowed_hosts": ["api.example.com", "*.corp.example"],
                                  "allowed_origins": [origin]}) as s:
        def status(*headers: tuple[str, str]) -> int:
            return int(request(s, "/v1/chat/completions", [*JSON, *headers],
                               [*JSON, host]).status)

        assert status(host) == 200 and status(("host", "gpu.corp.example:443")) == 200
        assert status(("host", "localhost")) == 403 and status(("host", "corp.example")) == 403
        preflight = httpx.options(s.url + "/v1/chat/completions", headers={
            "host": host[1], "origin": origin, "access-control-request-method": "POST",
            "access-control-request-headers": "authorization, content-type"})
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == origin
        reply = httpx.post(s.url + "/v1/chat/completions",
                           json=valid_body("/v1/chat/completions", MODEL),
                           headers={"host": host[1], "origin": origin})
        assert reply.status_code == 200
        assert reply.headers["access-control-allow-origin"] == origin
        assert status(host, ("origin", "https://other.example.com")) == 403


def test_bad_access_options_are_config_errors(make_server: Any) -> None:
    for options in ({"allowed_origins": ["app.example.com"]}, {"allowed_hosts": ["10.0.0.0/33"]},
                    {"api_keys": {"k1": "bad tenant"}}, {"max_body_bytes": 0},
                    {"max_prompt_tokens": -1}, {"allowed_hosts": "localhost"}):
        with pytest.raises(ConfigError):
            make_server(app_options=options)
