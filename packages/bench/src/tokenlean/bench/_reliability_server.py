"""Server reliability scenarios: malformed requests, a large request, tenant isolation.

:func:`run_server_scenarios` starts the real server (``tokenlean.server``) on a
loopback port with two API keys and measures, over real HTTP:

* **malformed requests**: a fixed corpus (lone surrogates wherever text goes,
  huge-digit integers, deep nesting, wrong types, NaN/Infinity, bad
  ``max_tokens``, empty messages, unknown roles, invalid UTF-8, non-object JSON,
  duplicate keys, wrong media types, bad keys, foreign Host/Origin) plus cases
  generated from a seeded RNG (random fields set to random JSON, fields dropped,
  bytes flipped, cut or repeated, odd headers). Each goes out on a keep-alive
  connection followed by a valid request on the *same* connection:
  ``server_5xx`` counts answers >= 500, ``connection_breaks`` the times the
  valid request then failed (the server closed or garbled the connection);
* **responsiveness**: ``/health`` is polled while a 10 MB chat request is being
  parsed and tokenized (``health_p99_ms_during_large_request``);
* **isolation**: tenant B (its own API key) sends the prefix tenant A just
  warmed, also claiming A's tenant in ``x-tokenlean-tenant``;
  ``cross_tenant_hits`` counts the answers that report cached prompt tokens
  (``same_tenant_hits`` is the control: A's own repeats, which must hit).

The keep-alive :class:`Connection`, the corpus (:func:`fixed_cases`) and
:func:`body_bytes` are shared with the server's own tests.
"""

from __future__ import annotations

import json
import random
import socket
import statistics
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["KEY_A", "KEY_B", "PATHS", "Case", "Connection", "Raw", "Reply", "body_bytes",
           "fixed_cases", "generated_cases", "run_server_scenarios", "valid_body"]

KEY_A, KEY_B = "tl-bench-key-a", "tl-bench-key-b"
PATHS = ("/v1/chat/completions", "/v1/completions", "/v1/messages",
         "/v1/messages/count_tokens")
_JSON = (("content-type", "application/json"),)


# -- bodies -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Raw:
    """JSON text put into a body as is (``NaN``, a 5,000-digit integer, ...)."""

    text: str


def body_bytes(value: Any) -> bytes:
    """``value`` as JSON bytes; :class:`Raw` parts go in verbatim, strings keep lone
    surrogates as ``\\ud800`` escapes (what a buggy client or an attacker sends)."""
    raws: list[str] = []

    def swap(obj: Any) -> Any:
        if isinstance(obj, Raw):
            raws.append(obj.text)
            return f"\x00raw{len(raws) - 1}\x00"
        if isinstance(obj, dict):
            return {k: swap(v) for k, v in obj.items()}
        if isinstance(obj, list):
            return [swap(v) for v in obj]
        return obj

    text = json.dumps(swap(value), ensure_ascii=True)
    for i, raw in enumerate(raws):
        text = text.replace(f'"\\u0000raw{i}\\u0000"', raw)
    return text.encode()


def valid_body(path: str, model: str) -> dict[str, Any]:
    """A small valid request for ``path`` (one generated token at most)."""
    chat = [{"role": "user", "content": "Say hi."}]
    if path == "/v1/completions":
        return {"model": model, "prompt": "Hello", "max_tokens": 1, "temperature": 0}
    if path == "/v1/messages":
        return {"model": model, "max_tokens": 1, "messages": chat}
    if path == "/v1/messages/count_tokens":
        return {"model": model, "messages": chat}
    return {"model": model, "max_tokens": 1, "temperature": 0, "messages": chat}


@dataclass(frozen=True)
class Case:
    """One malformed request; ``status`` is the expected 4xx (None: any 4xx)."""

    name: str
    path: str
    body: bytes
    headers: tuple[tuple[str, str], ...] = _JSON
    status: int | None = 400
    auth: bool = True  # send a valid API key


def _with(path: str, model: str, **fields: Any) -> bytes:
    body = valid_body(path, model)
    body.update(fields)
    return body_bytes(body)


def fixed_cases(model: str) -> list[Case]:
    """The corpus of known-bad requests (the probe's findings and their relatives)."""
    chat, comp, msgs, count = PATHS
    lone = "a\ud800b"
    digits = Raw("9" * 5000)
    deep_list = ("[" * 100_000 + "]" * 100_000).encode()
    deep_obj = ('{"a":' * 100_000 + "1" + "}" * 100_000).encode()
    cases = [
        # lone surrogates, wherever text goes
        Case("chat content surrogate", chat, _with(chat, model, messages=[
            {"role": "user", "content": lone}])),
        Case("chat text part surrogate", chat, _with(chat, model, messages=[
            {"role": "user", "content": [{"type": "text", "text": lone}]}])),
        Case("chat role surrogate", chat, _with(chat, model, messages=[
            {"role": lone, "content": "x"}])),
        Case("chat stop surrogate", chat, _with(chat, model, stop=[lone])),
        Case("chat key surrogate", chat, _with(chat, model, **{lone: 1})),
        Case("model surrogate", chat, _with(chat, lone)),
        Case("completion prompt surrogate", comp, _with(comp, model, prompt=lone)),
        Case("messages content surrogate", msgs, _with(msgs, model, messages=[
            {"role": "user", "content": lone}])),
        Case("messages system surrogate", msgs, _with(msgs, model, system=lone)),
        Case("messages system block surrogate", msgs, _with(msgs, model, system=[
            {"type": "text", "text": lone}])),
        Case("count_tokens surrogate", count, _with(count, model, messages=[
            {"role": "user", "content": lone}])),
        Case("count_tokens system surrogate", count, _with(count, model, system=lone)),
        # numbers
        Case("max_tokens 5000 digits", chat, _with(chat, model, max_tokens=digits)),
        Case("messages max_tokens 5000 digits", msgs, _with(msgs, model, max_tokens=digits)),
        Case("temperature 400 digits", chat, _with(chat, model, temperature=Raw("9" * 400))),
        Case("temperature NaN", chat, _with(chat, model, temperature=Raw("NaN"))),
        Case("temperature Infinity", chat, _with(chat, model, temperature=Raw("Infinity"))),
        Case("top_p -Infinity", chat, _with(chat, model, top_p=Raw("-Infinity"))),
        Case("temperature 1e400", chat, _with(chat, model, temperature=Raw("1e400"))),
        Case("seed 40 digits", chat, _with(chat, model, seed=Raw("1" * 40))),
        Case("prompt token id 5000 digits", comp, _with(comp, model, prompt=[1, digits])),
        Case("max_tokens negative", chat, _with(chat, model, max_tokens=-3)),
        Case("max_tokens zero", chat, _with(chat, model, max_tokens=0)),
        Case("max_tokens float", chat, _with(chat, model, max_tokens=1.5)),
        Case("max_tokens string", chat, _with(chat, model, max_tokens="5")),
        Case("max_tokens bool", chat, _with(chat, model, max_tokens=True)),
        Case("max_tokens over context", chat, _with(chat, model, max_tokens=10**30)),
        Case("messages max_tokens zero", msgs, _with(msgs, model, max_tokens=0)),
        Case("messages max_tokens missing", msgs, body_bytes(
            {"model": model, "messages": [{"role": "user", "content": "x"}]})),
        Case("top_p zero", chat, _with(chat, model, top_p=0)),
        Case("temperature too hot", msgs, _with(msgs, model, temperature=1.5)),
        # nesting and shape
        Case("100k nested arrays", chat, deep_list),
        Case("100k nested objects", msgs, deep_obj),
        Case("40 nested lists in content", chat, _with(chat, model, messages=[
            {"role": "user", "content": json.loads("[" * 40 + "]" * 40)}])),
        Case("array body", chat, b"[]"),
        Case("string body", msgs, b'"hello"'),
        Case("number body", comp, b"1"),
        Case("null body", count, b"null"),
        Case("empty body", chat, b""),
        Case("whitespace body", msgs, b"  \n "),
        Case("truncated JSON", chat, _with(chat, model)[:-3]),
        Case("trailing garbage", chat, _with(chat, model) + b" x"),
        Case("duplicate keys", chat, b'{"model": "x", "model": "' + model.encode()
             + b'", "messages": [{"role": "user", "content": "hi"}]}'),
        Case("UTF-8 BOM", chat, b"\xef\xbb\xbf" + _with(chat, model)),
        Case("raw control character", chat, _with(chat, model).replace(b"Say hi.", b"Say\x00hi")),
        # invalid UTF-8
        Case("invalid UTF-8 byte", chat, _with(chat, model).replace(b"Say hi.", b"Say \xff")),
        Case("overlong UTF-8", msgs, _with(msgs, model).replace(b"Say hi.", b"\xc0\xaf")),
        Case("encoded surrogate bytes", chat, _with(chat, model).replace(b"Say hi.",
                                                                          b"\xed\xa0\x80")),
        Case("UTF-16 body", chat, json.dumps(valid_body(chat, model)).encode("utf-16")),
        # wrong types and unsupported values
        Case("messages empty", chat, _with(chat, model, messages=[])),
        Case("messages string", chat, _with(chat, model, messages="hi")),
        Case("messages null", msgs, _with(msgs, model, messages=None)),
        Case("message not an object", chat, _with(chat, model, messages=[1])),
        Case("unknown role", chat, _with(chat, model, messages=[
            {"role": "wizard", "content": "x"}])),
        Case("role number", chat, _with(chat, model, messages=[{"role": 7, "content": "x"}])),
        Case("system role in messages", msgs, _with(msgs, model, messages=[
            {"role": "system", "content": "x"}])),
        Case("content number", chat, _with(chat, model, messages=[
            {"role": "user", "content": 5}])),
        Case("content image part", chat, _with(chat, model, messages=[
            {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}])),
        Case("text part not text", msgs, _with(msgs, model, messages=[
            {"role": "user", "content": [{"type": "text", "text": 5}]}])),
        Case("system number", msgs, _with(msgs, model, system=5)),
        Case("model missing", chat, body_bytes({"messages": [{"role": "user", "content": "x"}]})),
        Case("model number", chat, _with(chat, 5)),  # type: ignore[arg-type]
        Case("model unknown", chat, _with(chat, "gpt-9"), status=404),
        Case("model unknown (anthropic)", msgs, _with(msgs, "claude-9"), status=404),
        Case("stream not bool", chat, _with(chat, model, stream="yes")),
        Case("stream_options list", chat, _with(chat, model, stream_options=[])),
        Case("stop five", chat, _with(chat, model, stop=["a", "b", "c", "d", "e"])),
        Case("stop empty string", chat, _with(chat, model, stop=[""])),
        Case("stop_sequences numbers", msgs, _with(msgs, model, stop_sequences=[1])),
        Case("n two", chat, _with(chat, model, n=2)),
        Case("tools", chat, _with(chat, model, tools=[{"type": "function"}])),
        Case("top_k negative", msgs, _with(msgs, model, top_k=-1)),
        Case("prompt negative id", comp, _with(comp, model, prompt=[-1])),
        Case("prompt float id", comp, _with(comp, model, prompt=[1.5])),
        Case("prompt bool id", comp, _with(comp, model, prompt=[True])),
        Case("prompt id over vocabulary", comp, _with(comp, model, prompt=[10**9])),
        Case("prompt two prompts", comp, _with(comp, model, prompt=[[1, 2], [3]])),
        Case("prompt empty list", comp, _with(comp, model, prompt=[])),
        Case("prompt object", comp, _with(comp, model, prompt={})),
        Case("echo", comp, _with(comp, model, echo=True)),
        # headers
        Case("text/plain (cross-origin form post)", chat, _with(chat, model),
             headers=(("content-type", "text/plain"),), status=415),
        Case("no content type", msgs, _with(msgs, model), headers=(), status=415),
        Case("form content type", comp, _with(comp, model),
             headers=(("content-type", "application/x-www-form-urlencoded"),), status=415),
        Case("UTF-16 charset", chat, _with(chat, model),
             headers=(("content-type", "application/json; charset=utf-16"),), status=415),
        Case("foreign origin", chat, _with(chat, model),
             headers=(*_JSON, ("origin", "https://evil.example")), status=403),
        Case("null origin", msgs, _with(msgs, model),
             headers=(*_JSON, ("origin", "null")), status=403),
        Case("foreign host (DNS rebinding)", chat, _with(chat, model),
             headers=(*_JSON, ("host", "evil.example:8000")), status=403),
        Case("no API key", chat, _with(chat, model), auth=False, status=401),
        Case("no API key (anthropic)", msgs, _with(msgs, model), auth=False, status=401),
        Case("wrong bearer key", chat, _with(chat, model), auth=False, status=401,
             headers=(*_JSON, ("authorization", "Bearer not-a-key"))),
        Case("wrong x-api-key", msgs, _with(msgs, model), auth=False, status=401,
             headers=(*_JSON, ("x-api-key", "not-a-key"))),
        Case("bearer without token", count, _with(count, model), auth=False, status=401,
             headers=(*_JSON, ("authorization", "Bearer "))),
        Case("latin-1 bytes in key", chat, _with(chat, model), auth=False, status=401,
             headers=(*_JSON, ("authorization", "Bearer k\xe9y"))),
    ]
    return cases


# -- generated cases ------------------------------------------------------------------------

_FIELDS = ("model", "messages", "prompt", "system", "max_tokens", "max_completion_tokens",
           "temperature", "top_p", "top_k", "seed", "stop", "stop_sequences", "stream",
           "stream_options", "n", "tools", "logprobs", "echo", "role", "content", "x")
_TEXTS = ("", "hi", "a\ud800b", "\udfff", "\ud83d\ude00", "\x00", "user", "assistant",
          "system", "text", "\u202e", "é" * 50)
_CONTENT_TYPES = ("application/json", "text/plain", "", "application/json; charset=utf-8",
                  "application/json; charset=latin-1", "APPLICATION/JSON", "application/x+json",
                  "multipart/form-data; boundary=x", "application/json;;;", "*/*")


def _random_value(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(12 if depth < 3 else 8)
    if kind == 0:
        return rng.choice([-1, 0, 1, 2, 2**31, 2**63, 10**25, -(10**25)])
    if kind == 1:
        return Raw(rng.choice(["9" * rng.choice([33, 400, 4301, 6000]), "NaN", "Infinity",
                               "-Infinity", "1e400", "-0", "1E-400", "0.5"]))
    if kind == 2:
        return rng.choice([0.0, -0.5, 0.5, 1.5, 2.5, 1e308])
    if kind in (3, 4, 5):
        return rng.choice(_TEXTS) * rng.choice([1, 1, 3])
    if kind == 6:
        return rng.choice([True, False, None])
    if kind == 7:
        return Raw("[" * rng.choice([40, 2000]) + "]" * rng.choice([40, 2000]))
    if kind in (8, 9):
        return [_random_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    if kind == 10:
        return [{"role": rng.choice(_TEXTS), "content": _random_value(rng, depth + 1)}]
    return {rng.choice(_FIELDS): _random_value(rng, depth + 1) for _ in range(rng.randrange(4))}


def _mutate_bytes(rng: random.Random, body: bytes) -> bytes:
    at = rng.randrange(len(body) + 1)
    kind = rng.randrange(5)
    if kind == 0:
        return body[:at]
    if kind == 1:
        return body[:at] + bytes([rng.randrange(256)]) + body[at:]
    if kind == 2 and at < len(body):
        return body[:at] + bytes([body[at] ^ (1 << rng.randrange(8))]) + body[at + 1:]
    if kind == 3:
        return body[:at] + body[at:at + rng.randrange(1, 20)] * 2 + body[at:]
    return body[:at] + rng.choice([b"\xff", b"\xed\xa0\x80", b"\\ud800", b"\x00", b'"',
                                   b"{", b"]", b",", b"NaN"]) + body[at:]


def generated_cases(model: str, rng: random.Random, n: int) -> list[Case]:
    """``n`` malformed requests (expected status: any 4xx) from ``rng``."""
    cases = []
    for i in range(n):
        path = rng.choice(PATHS)
        body = valid_body(path, model)
        for _ in range(rng.randrange(1, 4)):
            if body and rng.random() < 0.2:
                body.pop(rng.choice(sorted(body)))
            else:
                body[rng.choice(_FIELDS)] = _random_value(rng)
        raw = body_bytes(body)
        if rng.random() < 0.3:
            raw = _mutate_bytes(rng, raw)
        headers: tuple[tuple[str, str], ...] = _JSON
        if rng.random() < 0.15:
            headers = (("content-type", rng.choice(_CONTENT_TYPES)),)
        if rng.random() < 0.1:
            headers = (*headers, rng.choice([("x-tokenlean-tenant", "acme"),
                                             ("anthropic-version", "2023-06-01"),
                                             ("origin", "http://localhost:3000"),
                                             ("x-api-key", "wrong"), ("accept", "*/*")]))
        cases.append(Case(f"generated {i}", path, raw, headers, status=None))
    return cases


# -- a keep-alive HTTP/1.1 client ------------------------------------------------------------

class ConnectionBroken(Exception):
    """The server closed the connection (or sent something that is not HTTP)."""


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Connection:
    """One TCP connection, kept alive across requests (what a pooled client sees).

    httpx and requests reconnect silently; this client does not, so a server that
    drops the connection after a bad request shows as :class:`ConnectionBroken`.
    """

    host: str
    port: int
    timeout: float = 120.0
    _sock: socket.socket | None = None
    _buffer: bytes = b""
    requests: int = field(default=0)

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        self._buffer = b""

    @property
    def open(self) -> bool:
        return self._sock is not None

    def request(self, method: str, path: str, body: bytes = b"",
                headers: Iterable[tuple[str, str]] = ()) -> Reply:
        if self._sock is None:
            self._sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
            self._buffer = b""
        headers = list(headers)
        names = {k.lower() for k, _ in headers}
        head = [f"{method} {path} HTTP/1.1"]
        if "host" not in names:
            head.append(f"Host: {self.host}:{self.port}")
        head.extend(f"{k}: {v}" for k, v in headers)
        if method == "POST":
            head.append(f"Content-Length: {len(body)}")
        data = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body
        try:
            self._sock.sendall(data)
            reply = self._read_reply()
        except (OSError, ValueError) as exc:
            self.close()
            raise ConnectionBroken(f"{type(exc).__name__}: {exc}") from None
        self.requests += 1
        if reply.headers.get("connection", "").lower() == "close":
            self.close()
        return reply

    def _recv(self) -> None:
        assert self._sock is not None
        chunk = self._sock.recv(65536)
        if not chunk:
            raise ValueError("the server closed the connection")
        self._buffer += chunk

    def _until(self, marker: bytes) -> bytes:
        while marker not in self._buffer:
            self._recv()
        out, self._buffer = self._buffer.split(marker, 1)
        return out

    def _exactly(self, n: int) -> bytes:
        while len(self._buffer) < n:
            self._recv()
        out, self._buffer = self._buffer[:n], self._buffer[n:]
        return out

    def _read_reply(self) -> Reply:
        lines = self._until(b"\r\n\r\n").decode("latin-1").split("\r\n")
        version, status, *_ = lines[0].split(" ", 2)
        if not version.startswith("HTTP/1."):
            raise ValueError(f"not an HTTP reply: {lines[0][:80]!r}")
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if headers.get("transfer-encoding", "").lower() == "chunked":
            parts = []
            while True:
                size = int(self._until(b"\r\n").split(b";")[0], 16)
                parts.append(self._exactly(size))
                self._exactly(2)
                if size == 0:
                    break
            return Reply(int(status), headers, b"".join(parts))
        return Reply(int(status), headers, self._exactly(int(headers.get("content-length", 0))))


def case_headers(case: Case, key: str | None) -> list[tuple[str, str]]:
    """The case's headers, plus a valid API key unless the case is about keys."""
    headers = list(case.headers)
    if case.auth and key is not None:
        headers.append(("authorization", f"Bearer {key}"))
    return headers


def follow_up(conn: Connection, path: str, model: str, key: str | None) -> Reply:
    """A valid request for ``path`` on the same connection."""
    headers = [*_JSON] + ([("authorization", f"Bearer {key}")] if key else [])
    return conn.request("POST", path, body_bytes(valid_body(path, model)), headers)


# -- the scenarios ------------------------------------------------------------------------

def _percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def _fuzz(url_host: str, port: int, model: str, cases: Sequence[Case]) -> dict[str, Any]:
    statuses: Counter[int] = Counter()
    server_5xx: list[str] = []
    breaks: list[str] = []
    unexpected: list[str] = []
    conn = Connection(url_host, port)
    try:
        for case in cases:
            try:
                reply = conn.request("POST", case.path, case.body, case_headers(case, KEY_A))
            except Exception as exc:
                breaks.append(f"{case.name}: {exc}")
                conn.close()
                continue
            statuses[reply.status] += 1
            if reply.status >= 500:
                server_5xx.append(f"{case.name}: {reply.status} {reply.body[:160]!r}")
            elif case.status is not None and reply.status != case.status:
                unexpected.append(f"{case.name}: {reply.status} (expected {case.status})")
            try:
                ok = follow_up(conn, case.path, model, KEY_A).status == 200
            except Exception as exc:
                ok = False
                conn.close()
                breaks.append(f"{case.name}: {exc}")
                continue
            if not ok:
                breaks.append(f"{case.name}: the valid request after it failed")
    finally:
        conn.close()
    return {"requests": len(cases), "server_5xx": len(server_5xx),
            "connection_breaks": len(breaks), "unexpected_status": len(unexpected),
            "statuses": {str(k): v for k, v in sorted(statuses.items())},
            "examples": {"server_5xx": server_5xx[:5], "connection_breaks": breaks[:5],
                         "unexpected_status": unexpected[:5]}}


def _health_during_large_request(host: str, port: int, model: str, megabytes: float
                                 ) -> dict[str, Any]:
    import httpx

    text = "The quick brown fox jumps over the lazy dog. "
    content = (text * int(megabytes * 1e6 / len(text) + 1))[:int(megabytes * 1e6)]
    body = body_bytes({"model": model, "max_tokens": 1,
                       "messages": [{"role": "user", "content": content}]})
    outcome: dict[str, Any] = {}

    def send() -> None:
        started = time.perf_counter()
        reply = httpx.post(f"http://{host}:{port}/v1/chat/completions", content=body,
                           headers={"content-type": "application/json",
                                    "authorization": f"Bearer {KEY_A}"}, timeout=300)
        outcome["status"], outcome["s"] = reply.status_code, time.perf_counter() - started

    latencies: list[float] = []
    with Connection(host, port) as conn:
        for _ in range(20):  # idle baseline
            started = time.perf_counter()
            conn.request("GET", "/health")
            latencies.append((time.perf_counter() - started) * 1000)
        idle = _percentile(latencies, 0.99)
        latencies.clear()
        sender = threading.Thread(target=send, name="large-request")
        sender.start()
        while sender.is_alive():
            started = time.perf_counter()
            conn.request("GET", "/health")
            latencies.append((time.perf_counter() - started) * 1000)
            time.sleep(0.01)
        sender.join()
    return {"health_p99_ms_during_large_request": round(_percentile(latencies, 0.99), 2),
            "health_p50_ms_during_large_request": round(statistics.median(latencies), 2),
            "health_max_ms_during_large_request": round(max(latencies), 2),
            "health_polls_during_large_request": len(latencies),
            "health_p99_ms_idle": round(idle, 2),
            "large_request_bytes": len(body), "large_request_status": outcome.get("status"),
            "large_request_s": round(outcome.get("s", float("nan")), 2)}


def _cached(reply: Reply) -> int:
    usage = reply.json().get("usage", {})
    if "cache_read_input_tokens" in usage:
        return int(usage["cache_read_input_tokens"] or 0)
    return int((usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0)


def _ask(conn: Connection, model: str, system: str, key: str | None, *,
         anthropic: bool = False, claim: str | None = None) -> Reply:
    """One request with a long shared ``system`` prefix, through either API."""
    headers: list[tuple[str, str]] = [*_JSON]
    if key is not None:
        headers.append(("x-api-key", key) if anthropic else ("authorization", f"Bearer {key}"))
    if claim is not None:
        headers.append(("x-tokenlean-tenant", claim))
    question = f"Question {uuid.uuid4().hex[:8]}?"
    if anthropic:
        body = {"model": model, "max_tokens": 1, "system": system,
                "messages": [{"role": "user", "content": question}]}
        return conn.request("POST", "/v1/messages", body_bytes(body), headers)
    body = {"model": model, "max_tokens": 1, "temperature": 0,
            "messages": [{"role": "system", "content": system},
                         {"role": "user", "content": question}]}
    return conn.request("POST", "/v1/chat/completions", body_bytes(body), headers)


def _tenants(host: str, port: int, model: str, rounds: int) -> dict[str, Any]:
    """Each probe: tenant A sends a fresh prefix twice (the second must hit: the control),
    then tenant B sends it once, plainly or claiming A's tenant, through either API."""
    cross = same = probes = errors = unauthenticated = 0
    variants = [(False, None), (False, "tenant-a"), (True, None), (True, "tenant-a")]
    with Connection(host, port) as conn:
        for r in range(rounds):
            for anthropic, claim in variants:
                system = f"Policy {r} {uuid.uuid4().hex}: answer from the policy text. " * 5
                _ask(conn, model, system, KEY_A)
                same += _cached(_ask(conn, model, system, KEY_A)) > 0
                reply = _ask(conn, model, system, KEY_B, anthropic=anthropic, claim=claim)
                probes += 1
                errors += reply.status != 200
                cross += reply.status == 200 and _cached(reply) > 0
                unauthenticated += _ask(conn, model, system, None,
                                        anthropic=anthropic).status != 401
                unauthenticated += _ask(conn, model, system, "tl-wrong-key",
                                        anthropic=anthropic).status != 401
    return {"cross_tenant_hits": cross, "cross_tenant_probes": probes,
            "same_tenant_hits": same, "same_tenant_probes": probes,
            "tenant_probe_errors": errors, "unauthenticated_accepted": unauthenticated}


def run_server_scenarios(quick: bool, *, model: str | Path | None = None,
                         seed: int = 0) -> dict[str, Any]:
    """Run the scenarios (module docstring) against a real server; one JSON-able dict.

    ``model``: an HF folder (default: SmolLM2-135M-Instruct from its wheel).
    ``quick`` keeps it under a minute on 2 cores: 150 generated cases, one
    10 MB request, 2 isolation rounds (else 2,000 cases, three, and 10).
    """
    from tokenlean.server import (
        Engine,
        PrefixCache,
        ServerThread,
        create_app,
        load_model,
        served_name,
    )

    started = time.perf_counter()
    loaded, tokenizer = load_model(model)
    name = served_name(model)
    engine = Engine(loaded, tokenizer, max_batch=4, max_queue=64,
                    prefix_cache=PrefixCache(capacity_tokens=8192))
    # bodies up to 16 MB, so the 10 MB request is parsed and tokenized, not refused unread
    app = create_app(engine, model_name=name, default_max_tokens=4,
                     api_keys={KEY_A: "tenant-a", KEY_B: "tenant-b"},
                     max_body_bytes=16 * 1024 * 1024)
    rng = random.Random(seed)
    out: dict[str, Any] = {"scenario": "server", "model": name, "quick": quick, "seed": seed}
    with ServerThread(app) as server:
        host, port = str(server.host), int(server.port)
        out["fuzz"] = _fuzz(host, port, name, fixed_cases(name)
                            + generated_cases(name, rng, 150 if quick else 2000))
        out["server_5xx"] = out["fuzz"]["server_5xx"]
        out["connection_breaks"] = out["fuzz"]["connection_breaks"]
        large = [_health_during_large_request(host, port, name, 10.0)
                 for _ in range(1 if quick else 3)]
        worst = max(large, key=lambda r: r["health_p99_ms_during_large_request"])
        out.update(worst)
        out.update(_tenants(host, port, name, 2 if quick else 10))
    out["seconds"] = round(time.perf_counter() - started, 1)
    return out


def _main(argv: Sequence[str] | None = None) -> None:  # pragma: no cover - manual runs
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true")
    parser.add_argument("--model", default=None)
    args = parser.parse_args(argv)
    print(json.dumps(run_server_scenarios(not args.full, model=args.model)))


if __name__ == "__main__":  # pragma: no cover
    _main()
